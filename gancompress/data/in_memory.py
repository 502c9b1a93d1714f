"""Training or evaluation images handed over as Python objects (`compress(train_data=[...])`).

A run reads its images from a folder named in config.json, so a resume, `gancompress export
--int8` (calibration) and `eval` find them again from any process. Images given in memory are
therefore written once, as 8-bit PNGs, into a folder named by a fingerprint of their pixels under
the cache (fileio.cache_root()/images/<fingerprint>/): the same images give the same folder (the
run resumes), different images give a different one (the run refuses the changed config).
Float images are rounded to 8 bits on the way, as every photograph on disk already is.

Accepted items: a (3, H, W) or (H, W, 3) tensor or array, float in [0, 1] or uint8; a (1, H, W) or
(H, W) grey one; a PIL image; a (name, image) pair; a torch Dataset or any iterable of these; a
Dataset whose items are (image, label) tuples gives its images.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..fileio import atomic_writer, cache_root


def is_in_memory(data) -> bool:
    """True for anything that is not a folder path (str / PathLike) or None."""
    return data is not None and not isinstance(data, (str, os.PathLike))


def _items(data):
    if isinstance(data, torch.Tensor) and data.dim() == 4:  # a batch
        return list(data)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (list, tuple)):
        return [data[i] for i in range(len(data))]  # a map-style Dataset
    try:
        return list(data)
    except TypeError:
        raise UserError(f"train/eval data must be a folder path or an iterable of images, got "
                        f"{type(data).__name__}") from None


def _to_hwc_u8(img, where: str) -> np.ndarray:
    from PIL import Image

    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"))
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(np.ascontiguousarray(img))
    if not isinstance(img, torch.Tensor):
        raise UserError(f"{where} is a {type(img).__name__}; give a tensor, a numpy array or a PIL image")
    t = img.detach().cpu()
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise UserError(f"{where} has shape {tuple(t.shape)}; give one image as (3, H, W) or (H, W, 3)")
    if t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3):  # channels last
        t = t.permute(2, 0, 1)
    if t.shape[0] not in (1, 3):
        raise UserError(f"{where} has shape {tuple(t.shape)}: 1 or 3 channels expected")
    if t.dtype == torch.uint8:
        u8 = t
    elif t.is_floating_point():
        if not torch.isfinite(t).all():
            raise UserError(f"{where} holds NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise UserError(f"{where} has values in [{lo:.3g}, {hi:.3g}]; float images must be in [0, 1] "
                            "(divide 8-bit images by 255)")
        u8 = torch.round(t.float().clamp(0, 1) * 255).to(torch.uint8)
    else:
        raise UserError(f"{where} has dtype {t.dtype}; give float in [0, 1] or uint8")
    if u8.shape[0] == 1:
        u8 = u8.expand(3, -1, -1)
    return u8.permute(1, 2, 0).contiguous().numpy()


def data_ref(data, what: str) -> str:
    """A data argument as a run's config names it: a folder as given, images in memory by the
    fingerprint folder they are written to."""
    return str(images_to_folder(data, what) if is_in_memory(data) else data)


def images_to_folder(data, what: str = "train_data") -> Path:
    """Write in-memory images as PNGs into their fingerprint folder (once) and return the folder."""
    from PIL import Image

    items = _items(data)
    if not items:
        raise UserError(f"{what} is empty; give at least one image")
    named, seen = [], set()
    for i, item in enumerate(items):
        name = f"{i:05d}"
        if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            name, item = item
        elif isinstance(item, (tuple, list)) and item:  # (image, label) from a Dataset
            item = item[0]
        name = Path(str(name)).stem or f"{i:05d}"
        if name in seen:
            name = f"{name}_{i:05d}"
        seen.add(name)
        named.append((name, _to_hwc_u8(item, f"{what}[{i}]")))
    h = hashlib.sha256()
    for name, a in named:
        h.update(f"{name}:{a.shape}".encode())
        h.update(a.tobytes())
    folder = cache_root() / "images" / h.hexdigest()[:16]
    done = folder / ".complete"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name, a in named:
            with atomic_writer(folder / f"{name}.png", 0o644) as f:
                Image.fromarray(a).save(f, format="PNG")
        done.write_text(f"{len(named)}\n")
    return folder
