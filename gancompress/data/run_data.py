"""A run's images: the training photographs, the held-out evaluation set, and the teacher's
outputs on the training images (cached in the run directory). `cfg` is the run's CompressConfig
(or anything with its task, data, size, views and patch fields)."""

from __future__ import annotations

import json

from ..distributed import is_main
from ..errors import UserError
from ..fileio import atomic_write_text, load_run_tensors, save_safetensors_atomic
from ..log import info


def _square_images(folder, bundled_split: str, size: int, hint: str, views: int = 1, seed: int = 0,
                   colour: bool = False):
    """Translation images, size x size: the user's folder, else the bundled split; `views` of each
    (1: its centre square; data/translate.py: training_views)."""
    from .bundled import bundled_photographs
    from .translate import load_warned_folder, training_views

    raw = load_warned_folder(folder, size, hint=hint) if folder else bundled_photographs(bundled_split)
    return training_views(raw, size, views, seed, colour)


def _label_maps(cfg, folder, split: str, hint: str):
    """label2image inputs: (name, one-hot (classes [+1 instance edges], size, size)) from the user's
    folder of label maps (and instance maps), else the bundled photographs' k-means maps
    (data/bundled_labels.py)."""
    from .label_maps import load_label_folder, one_hot

    if folder:
        instances = getattr(cfg, "train_instances" if split == "train" else "eval_instances", None)
        return load_label_folder(folder, cfg.classes, cfg.size, cfg.palette, hint=hint, instances=instances)
    from .bundled_labels import DEFAULT_CLASSES, bundled_label_maps

    if cfg.classes != DEFAULT_CLASSES:
        raise UserError(f"the bundled label maps have {DEFAULT_CLASSES} classes but this teacher reads {cfg.classes}; "
                        f"give --train-data and --eval-data folders of label maps with {cfg.classes} classes")
    views = BUNDLED_LABEL_VIEWS[split]
    return [(name, one_hot(ids, cfg.classes)) for name, ids in bundled_label_maps(split, cfg.size, cfg.classes, views)]


# views per bundled photograph (its whole square + random crops, each segmented): 52 training maps
# (those the demo teacher was trained on) and 52 held-out maps, enough for FID (>= 50)
BUNDLED_LABEL_VIEWS = {"train": 4, "eval": 13}


def training_images(cfg):
    from .bundled import bundled_photographs
    from .images import load_folder

    if cfg.task == "label2image":
        return _label_maps(cfg, cfg.train_data, "train", "point --train-data at a folder of label-map PNGs")
    if cfg.task == "translate":
        return _square_images(cfg.train_data, "train", cfg.size, "point --train-data at a folder of input-domain images",
                              cfg.views, cfg.seed, cfg.view_colour)
    min_side = cfg.scale * max(cfg.search.patch, cfg.retrain.patch)
    if cfg.train_data:
        return load_folder(cfg.train_data, min_size=min_side, hint="point --train-data at a folder of HR images")
    return [(n, im) for n, im in bundled_photographs("train") if min(im.shape[-2:]) >= min_side]


def eval_set(cfg):
    from .bundled import bundled_photographs
    from .degrade import bicubic_downscale
    from .sr_sets import load_sr_eval_set

    if cfg.task == "label2image":
        return _label_maps(cfg, cfg.eval_data, "eval", "point --eval-data at a folder of held-out label-map PNGs")
    if cfg.task == "translate":
        return _square_images(cfg.eval_data, "eval", cfg.size,
                              "point --eval-data at a folder of held-out input-domain images")
    if cfg.eval_data:
        return load_sr_eval_set(cfg.eval_data, cfg.scale)
    out = []
    for name, hr in bundled_photographs("eval"):
        hr_c, lr = bicubic_downscale(hr, cfg.scale, name=name)
        out.append((name, lr, hr_c))
    return out


def teacher_targets(cfg, run, teacher, images, log=info):
    """(names, [(lr, teacher(lr))]) for the training images, cached in the run directory."""
    from ..arch.cost import module_device
    from .degrade import bicubic_downscale
    from ..evaluate import predict_tiled

    path = run / "teacher_targets.safetensors"
    if path.is_file():
        try:  # a cache: a damaged copy is said and recomputed, never a traceback
            d = load_run_tensors(path)
            names = json.loads((run / "teacher_targets.json").read_text())
            return names, [(_stored_input(d, i), d[f"{i}.t"]) for i in range(len(names))]
        except (UserError, KeyError, ValueError, OSError) as e:
            log(f"note: {path} or teacher_targets.json is damaged or incomplete ({str(e)[:120]}); "
                      "recomputing the teacher targets")
    from tqdm.auto import tqdm

    names, pairs = [], []
    for name, hr in tqdm(images, desc="teacher targets", disable=cfg.quiet or not is_main()):
        if cfg.task != "sr":  # whole images: instance norm makes tiles differ from the whole
            pairs.append((hr, teacher.predict(hr[None].to(module_device(teacher))).cpu()[0]))
        else:
            _, lr = bicubic_downscale(hr, cfg.scale, name=name)
            pairs.append((lr, predict_tiled(teacher, lr, cfg.scale)))
        names.append(name)
    from ..distill.guard import check_finite_targets
    check_finite_targets(names, pairs, cfg.teacher)  # a NaN teacher is refused here, naming the images
    if is_main():
        tensors = {}
        for i, (lr, t) in enumerate(pairs):
            tensors.update(_input_to_store(i, lr))
            tensors[f"{i}.t"] = t
        atomic_write_text(run / "teacher_targets.json", json.dumps(names))  # names first: the
        save_safetensors_atomic(tensors, path)  # tensors file's presence marks the cache complete
    return names, pairs


def _input_to_store(i: int, x) -> dict:
    """A one-hot label map is stored as its class ids (uint8 or int16) with its class count (and
    its instance-edge channel as uint8): 52 bundled maps of 8 classes are 3.4 MB instead of 109 MB
    of floats. Anything else as is."""
    import torch

    if x.dim() == 3 and x.shape[0] > 1 and bool(((x == 0) | (x == 1)).all()):
        for classes in (x.shape[0], x.shape[0] - 1):  # plain one-hot, or one-hot + an edge channel
            if classes > 1 and bool((x[:classes].sum(0) == 1).all()):
                ids = x[:classes].argmax(0).to(torch.uint8 if classes <= 256 else torch.int16)
                out = {f"{i}.ids": ids, f"{i}.classes": torch.tensor(classes)}
                if classes < x.shape[0]:
                    out[f"{i}.edges"] = x[classes].to(torch.uint8)
                return out
    return {f"{i}.lr": x}


def _stored_input(d: dict, i: int):
    if f"{i}.ids" in d:
        import torch

        from .label_maps import one_hot

        x = one_hot(d[f"{i}.ids"].long(), int(d[f"{i}.classes"]))
        return torch.cat([x, d[f"{i}.edges"].float()[None]]) if f"{i}.edges" in d else x
    return d[f"{i}.lr"]

