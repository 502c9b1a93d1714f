"""Real photographs that ship inside installed wheels, used as default data.

A user with no data of their own can still compress a super-resolution generator: the
scikit-image wheel contains a set of test photographs (`skimage/data/`) and scikit-learn ships
two more (`sklearn/datasets/images/`). They are read straight from the installed packages:
no download, no pooch, works offline.

Only natural photographs are used (camera, microscope, telescope). Left out:

* synthetic images: chessboard_GRAY, chessboard_RGB, color, phantom, logo, horse (a
  silhouette), text, page (scanned text), and the non-image files;
* clock_motion (deliberately motion-blurred: it would teach an SR model to keep blur) and cell
  (almost featureless background): poor training signal for super-resolution;
* microaneurysms (102x102 px, too small for patches).

Fixed split (deterministic, by name; the held-out images are never used for training):

* train (13): astronaut, brick, coffee, coins, flower, grass, hubble_deep_field, ihc,
  moon, motorcycle_left, motorcycle_right, retina, rocket
* eval (4): camera (grayscale street scene), chelsea (cat: fur and eyes), china (building,
  foliage and sky), gravel (dense fine texture) -- chosen to be varied; the near-duplicate
  motorcycle pair is kept together in train so eval has no near-copy of a training image.

Grayscale originals (brick, camera, coins, grass, gravel, moon) are returned as RGB with
three equal channels, like every image in the package.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from ..errors import UserError, warn
from .images import load_image

TRAIN_NAMES = (
    "astronaut",
    "brick",
    "coffee",
    "coins",
    "flower",
    "grass",
    "hubble_deep_field",
    "ihc",
    "moon",
    "motorcycle_left",
    "motorcycle_right",
    "retina",
    "rocket",
)
EVAL_NAMES = ("camera", "chelsea", "china", "gravel")

# name -> (package, path relative to the package folder)
_FILES = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "brick": ("skimage", "data/brick.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "coins": ("skimage", "data/coins.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "moon": ("skimage", "data/moon.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}

# images used by bundled_tiny, in order: textured, colourful crops from the train split
_TINY_ORDER = ("astronaut", "coffee", "motorcycle_left", "flower", "rocket", "ihc")

_INSTALL_FIX = "pip install scikit-image scikit-learn"


def _package_dir(package: str) -> Path | None:
    try:
        if package == "skimage":
            import skimage as mod
        elif package == "sklearn":
            import sklearn as mod
        else:  # pragma: no cover - only the two above are listed
            return None
    except ImportError:
        return None
    return Path(os.path.dirname(mod.__file__))


def bundled_path(name: str) -> Path | None:
    """Where the named bundled photograph lives in the installed wheel, or None if absent."""
    package, rel = _FILES[name]
    root = _package_dir(package)
    if root is None:
        return None
    path = root / rel
    return path if path.is_file() else None


@functools.lru_cache(maxsize=None)
def _load_cached(path: str) -> torch.Tensor:
    return load_image(path)


def _names_for(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_NAMES
    if split == "eval":
        return EVAL_NAMES
    if split == "all":
        return TRAIN_NAMES + EVAL_NAMES
    raise UserError(f"unknown bundled split {split!r}; use 'train', 'eval' or 'all'")


def bundled_photographs(split: str = "all") -> list[tuple[str, torch.Tensor]]:
    """The bundled photographs of `split` ("train", "eval" or "all") as (name, RGB tensor).

    A photograph missing from the installed wheel (older/newer version) is skipped with a
    warning; if none is found, `UserError` says how to install them. Tensors are fresh copies,
    safe to modify.
    """
    names = _names_for(split)
    out: list[tuple[str, torch.Tensor]] = []
    missing: list[str] = []
    for name in names:
        path = bundled_path(name)
        if path is None:
            missing.append(name)
            continue
        out.append((name, _load_cached(str(path)).clone()))
    if not out:
        raise UserError(
            f"none of the bundled {split} photographs ({', '.join(names)}) were found in the "
            f"installed scikit-image/scikit-learn; run `{_INSTALL_FIX}` or pass your own image folder"
        )
    for name in missing:
        package, rel = _FILES[name]
        warn(f"bundled photograph {name} ({package}/{rel}) is not in the installed {package}; skipping it")
    return out


def bundled_tiny(n: int = 2, size: int = 96) -> list[tuple[str, torch.Tensor]]:
    """`n` small centre crops (size x size) of training photographs, for fast tests and smoke runs.

    Deterministic: always the same images and crops.
    """
    if n < 1 or size < 1:
        raise UserError(f"bundled_tiny needs n >= 1 and size >= 1, got n={n}, size={size}")
    out: list[tuple[str, torch.Tensor]] = []
    for name in _TINY_ORDER:
        if len(out) == n:
            break
        path = bundled_path(name)
        if path is None:
            continue
        img = _load_cached(str(path))
        h, w = img.shape[-2:]
        if min(h, w) < size:
            continue
        top, left = (h - size) // 2, (w - size) // 2
        out.append((f"{name}_{size}", img[:, top : top + size, left : left + size].clone()))
    if len(out) < n:
        raise UserError(
            f"only {len(out)} of {n} bundled photographs of at least {size}px were found; "
            f"run `{_INSTALL_FIX}`, or ask for fewer/smaller crops"
        )
    return out
