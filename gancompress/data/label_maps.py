"""Semantic label maps, the input of label -> image generators (GauGAN / SPADE; issue 17).

A label map on disk is a PNG of class ids: greyscale (8 or 16 bit) or palette-indexed (the index
is the id), or a colour-coded RGB image with a palette file that names each colour's class. The
network reads it one-hot: `--classes N` channels, plus GauGAN's instance-edge channel when an
instance map is given (a pixel is an edge where its instance differs from a 4-neighbour's).
Every problem with a file is one line naming the file and the fix; crops and resizes are
nearest-neighbour, so ids are never blended.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import UserError


def load_palette(path) -> dict[tuple[int, int, int], int]:
    """Colour -> class id, from JSON ({"0": [r, g, b], ...} or [[r, g, b], ...] in id order) or text
    (one `r g b` per line, in id order)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise UserError(f"palette file {p} cannot be read ({e.strerror}); give a JSON or text palette") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
    items = list(data.items()) if isinstance(data, dict) else list(enumerate(data))
    palette: dict[tuple[int, int, int], int] = {}
    for k, colour in items:
        try:
            cid = int(k)
            rgb = tuple(int(c) for c in colour)
        except (TypeError, ValueError):
            raise UserError(f"palette {p}: entry {k!r} is not 'id: [r, g, b]'; write JSON like "
                            '{"0": [128, 64, 128]} or one "r g b" line per class') from None
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise UserError(f"palette {p}: class {cid} has colour {list(rgb)}; give three values in 0..255")
        if rgb in palette:
            raise UserError(f"palette {p}: colour {list(rgb)} is given to classes {palette[rgb]} and {cid}; "
                            "each colour must name one class")
        palette[rgb] = cid
    if not palette:
        raise UserError(f"palette {p} names no colours")
    return palette


def _open_map(p: Path, what: str):
    """The PIL image of a label or instance map, or a one-line error naming the file."""
    try:
        im = Image.open(p)
        im.load()
    except (OSError, ValueError) as e:
        raise UserError(f"{what} map {p} cannot be read as an image ({e}); give PNGs of {what} ids") from None
    return im


def load_label_map(path, classes: int, palette: dict | None = None) -> torch.Tensor:
    """(H, W) int64 class ids in [0, classes) from a PNG of ids, or of colours with `palette`."""
    p = Path(path)
    im = _open_map(p, "label")
    if palette is not None:
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        lut = {(r << 16) | (g << 8) | b: cid for (r, g, b), cid in palette.items()}
        colours, inverse = np.unique(code, return_inverse=True)
        unknown = [int(c) for c in colours if int(c) not in lut]
        if unknown:
            c = unknown[0]
            n = int((code == c).sum())
            raise UserError(f"label map {p} has colour {[c >> 16, (c >> 8) & 255, c & 255]} ({n} pixels) that the "
                            f"palette does not name ({len(unknown)} unknown colour(s)); fix the palette or the map")
        ids = np.asarray([lut[int(c)] for c in colours], dtype=np.int64)[inverse].reshape(code.shape)
    elif im.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        ids = np.asarray(im).astype(np.int64)  # P: the palette index is the id
    elif im.mode in ("RGB", "RGBA", "LA"):
        a = np.asarray(im.convert("RGB"))
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            raise UserError(f"label map {p} is a colour image where class ids are expected; save ids as a "
                            "greyscale or indexed PNG, or give the palette that maps its colours to classes "
                            "(--palette)")
        ids = a[..., 0].astype(np.int64)  # grey values saved as RGB
    else:
        raise UserError(f"label map {p} has image mode {im.mode}; give a greyscale, indexed or RGB PNG")
    ids = torch.from_numpy(np.ascontiguousarray(ids))
    top = int(ids.max())
    if top >= classes or int(ids.min()) < 0:
        n = int((ids >= classes).sum())
        raise UserError(f"label map {p} has class id {top} ({n} pixels at or above {classes}) but --classes is "
                        f"{classes}; give --classes {top + 1} or fix the map")
    return ids


def label_channels(cfg) -> int:
    """The one-hot input channels of a run's label2image network: the classes, plus GauGAN's
    instance-edge channel when the run has instance maps."""
    return (getattr(cfg, "classes", 0) or 0) + (1 if getattr(cfg, "train_instances", None) else 0)


def load_instance_map(path) -> torch.Tensor:
    """(H, W) int64 instance ids from a PNG (greyscale 8/16 bit, indexed, or colours: only where
    ids differ matters, so an RGB colour is one id)."""
    im = _open_map(Path(path), "instance")
    if im.mode in ("RGB", "RGBA", "LA"):
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
        ids = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    else:
        ids = np.asarray(im).astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(ids))


def paired_instance_map(folder, label_path, ids: torch.Tensor) -> torch.Tensor:
    """The instance ids of the map named as `label_path` in `folder`, checked to be the size of its
    label map `ids`."""
    q = instance_file(folder, label_path)
    inst = load_instance_map(q)
    if inst.shape != ids.shape:
        raise UserError(f"instance map {q} is {tuple(inst.shape)} but label map {label_path} is "
                        f"{tuple(ids.shape)}; give the instance map of the same size")
    return inst


def instance_file(folder, label_path) -> Path:
    """The instance map that pairs with a label map: the file of the same stem in `folder`."""
    from .images import list_images

    stem = Path(label_path).stem
    hits = [Path(f) for f in list_images(folder, hint="point --train-instances / --eval-instances at a folder "
                                                      "of instance-map PNGs") if Path(f).stem == stem]
    if not hits:
        raise UserError(f"no instance map for label map {Path(label_path).name} in {folder}: each label map needs "
                        f"the instance map of the same name ({stem}.png)")
    return hits[0]


def instance_edges(inst: torch.Tensor) -> torch.Tensor:
    """(H, W) float: 1 where a pixel's instance id differs from a 4-neighbour's (GauGAN's edge map)."""
    e = torch.zeros(inst.shape, dtype=torch.bool)
    dx = inst[:, 1:] != inst[:, :-1]
    dy = inst[1:, :] != inst[:-1, :]
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    e[1:, :] |= dy
    e[:-1, :] |= dy
    return e.float()


def one_hot(ids: torch.Tensor, classes: int, instance: torch.Tensor | None = None) -> torch.Tensor:
    """(classes [+1], H, W) float: one channel per class, then the instance-edge channel if given."""
    x = F.one_hot(ids, classes).permute(2, 0, 1).float()
    if instance is not None:
        if instance.shape != ids.shape:
            raise UserError(f"instance map {tuple(instance.shape)} and label map {tuple(ids.shape)} differ in size")
        x = torch.cat([x, instance_edges(instance)[None]])
    return x


def resize_labels(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an id map (ids are never blended)."""
    return F.interpolate(ids[None, None].float(), size=size, mode="nearest")[0, 0].long()


def square_labels(ids: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) ids -> (size, size): translation's policy (shorter side resized to `size`, centre
    crop), nearest-neighbour so ids are never blended."""
    h, w = ids.shape
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        ids = resize_labels(ids, (nh, nw))
    top, left = (nh - size) // 2, (nw - size) // 2
    return ids[top:top + size, left:left + size].contiguous()


def load_label_folder(folder, classes: int, size: int, palette=None, paths=None,
                      hint: str = "point --train-data / --eval-data at a folder of label-map PNGs", instances=None):
    """[(file name, one-hot (classes [+1], size, size))] for every image of `folder` (or `paths`);
    `palette`: a palette file for colour-coded maps; `instances`: a folder of instance maps named
    as the label maps, for GauGAN's instance-edge channel (edges found after the crop)."""
    from .images import list_images

    pal = load_palette(palette) if palette else None
    if pal is not None and max(pal.values()) >= classes:
        raise UserError(f"palette {palette} names class {max(pal.values())} but the maps have {classes} classes "
                        f"(--classes); fix the palette or give --classes {max(pal.values()) + 1}")
    files = list(paths) if paths is not None else list_images(folder, hint=hint)
    out = []
    for p in files:
        ids = load_label_map(p, classes, pal)
        inst = square_labels(paired_instance_map(instances, p, ids), size) if instances else None
        out.append((Path(p).name, one_hot(square_labels(ids, size), classes, inst)))
    return out


def colourize(x: torch.Tensor, classes: int | None = None) -> torch.Tensor:
    """A one-hot label map (C, H, W) (the first `classes` channels are the classes; an instance-edge
    channel after them is drawn black) -> RGB (3, H, W) in [0, 1] for reports and crop sheets."""
    from .bundled_labels import palette_colours

    c = classes or x.shape[0]
    ids = x[:c].argmax(0)
    rgb = palette_colours(c)[ids].permute(2, 0, 1)
    if x.shape[0] > c:
        rgb = rgb * (1 - x[c:c + 1].clamp(0, 1))
    return rgb.contiguous()


def save_label_map(x: torch.Tensor, path, classes: int | None = None) -> None:
    """Write a one-hot map's class ids as a greyscale PNG (what load_label_map reads back)."""
    c = classes or x.shape[0]
    ids = x[:c].argmax(0).to(torch.uint8).numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids, mode="L").save(path)
