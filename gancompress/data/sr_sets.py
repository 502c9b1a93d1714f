"""Load a super-resolution evaluation set as aligned (name, LR, HR) triples.

Accepted layouts (checked in this order), so users can point at whatever they downloaded:

1. ``folder/x{scale}/HR`` + ``folder/x{scale}/LR``  (e.g. shared/data/sr/Set5)
2. ``folder/HR`` + ``folder/LR``
3. ``folder/HR`` alone, or ``folder`` itself holding images: HR-only; LR is made with
   `bicubic_downscale` (the standard benchmark degradation).

LR and HR files are paired by file stem. Common suffixes are ignored when pairing, so
``baby_HR.png``/``baby_LR.png``, ``0801.png``/``0801x4.png`` and
``img_001_SRF_4_HR.png``/``img_001_SRF_4_LR.png`` pair up. An LR without HR (or HR without LR),
or a pair whose sizes do not line up (LR * scale != HR cropped to a multiple of scale), is a
`UserError` naming the file: silently dropping or resizing would make PSNR meaningless.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import UserError
from .degrade import bicubic_downscale, crop_to_multiple
from .images import IMAGE_EXTS, list_images, load_folder, load_image


def _min_hr_size(scale: int) -> int:
    # PSNR/SSIM crop `scale` px per side and SSIM needs an 11x11 window in what is left
    return 2 * scale + 11


def _pair_key(stem: str, scale: int) -> str:
    """Stem without the usual HR/LR/scale suffixes, for pairing files across the two folders."""
    key = stem
    key = re.sub(rf"_SRF_{scale}_(HR|LR)$", "", key, flags=re.IGNORECASE)
    key = re.sub(rf"[_-]?(LR|HR)?[_-]?x{scale}$", "", key, flags=re.IGNORECASE)
    key = re.sub(r"[_-](LR|HR)$", "", key, flags=re.IGNORECASE)
    return key or stem


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS
        for p in folder.iterdir()
    )


def _scale_dirs(folder: Path) -> list[int]:
    scales = []
    for p in folder.iterdir():
        m = re.fullmatch(r"[xX](\d+)", p.name)
        if m and p.is_dir():
            scales.append(int(m.group(1)))
    return sorted(scales)


def _index(paths: list[Path], scale: int, folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in paths:
        key = _pair_key(p.stem, scale)
        if key in index:
            raise UserError(
                f"{index[key].name} and {p.name} in {folder} both pair as '{key}'; "
                f"keep one image per name in the folder"
            )
        index[key] = p
    return index


def _load_pairs(hr_dir: Path, lr_dir: Path, scale: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    hint_hr = f"put the high-resolution images in {hr_dir}"
    hint_lr = f"put the x{scale} low-resolution images in {lr_dir}"
    hr_index = _index(list_images(hr_dir, hint=hint_hr), scale, hr_dir)
    lr_index = _index(list_images(lr_dir, hint=hint_lr), scale, lr_dir)
    for key, p in lr_index.items():
        if key not in hr_index:
            raise UserError(
                f"LR image {p} has no HR image with the same name in {hr_dir}; "
                f"add the HR image or remove the LR one"
            )
    for key, p in hr_index.items():
        if key not in lr_index:
            raise UserError(
                f"HR image {p} has no LR image with the same name in {lr_dir}; "
                f"add its x{scale} LR image, remove it, or delete {lr_dir} to make LR by bicubic downscaling"
            )
    out = []
    min_hr = _min_hr_size(scale)
    for key in sorted(hr_index):
        hr_path, lr_path = hr_index[key], lr_index[key]
        hr, lr = load_image(hr_path), load_image(lr_path)
        hr = crop_to_multiple(hr, scale)
        lh, lw = lr.shape[-2:]
        hh, hw = hr.shape[-2:]
        if (lh * scale, lw * scale) != (hh, hw):
            raise UserError(
                f"LR image {lr_path} is {lw}x{lh} px but its HR {hr_path} is {hw}x{hh} after cropping "
                f"to a multiple of {scale} (expected {lw * scale}x{lh * scale}); check --scale "
                f"or regenerate the LR image as an x{scale} downscale of the HR one"
            )
        if min(hh, hw) < min_hr:
            raise UserError(
                f"HR image {hr_path} is {hw}x{hh} px; evaluation at x{scale} needs at least "
                f"{min_hr}x{min_hr} px: use a larger image or remove it"
            )
        out.append((hr_path.stem, lr, hr))
    return out


def _load_hr_only(folder: Path, scale: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    images = load_folder(
        folder, min_size=_min_hr_size(scale), hint="point the evaluation set option at a folder of HR images"
    )
    out = []
    for fname, hr in images:
        hr_c, lr = bicubic_downscale(hr, scale, name=str(folder / fname))
        out.append((Path(fname).stem, lr, hr_c))
    return out


def load_sr_eval_set(
    folder: str | os.PathLike, scale: int
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, lr, hr) for every image of an SR evaluation set, sorted by name; see module doc.

    `hr` is cropped to a multiple of `scale` so that lr.shape * scale == hr.shape exactly.
    """
    folder = Path(folder)
    if int(scale) != scale or scale < 2:
        raise UserError(f"scale must be a whole number >= 2, got {scale}; use e.g. --scale 4")
    scale = int(scale)
    if not folder.exists():
        raise UserError(f"evaluation folder {folder} does not exist; point it at a folder of images or HR/ + LR/")
    if not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder; point the evaluation option at a folder")

    scaled = folder / f"x{scale}"
    if scaled.is_dir():
        hr_dir, lr_dir = scaled / "HR", scaled / "LR"
        if not hr_dir.is_dir():
            raise UserError(f"{scaled} has no HR/ folder; put the high-resolution images in {hr_dir}")
        if lr_dir.is_dir():
            return _load_pairs(hr_dir, lr_dir, scale)
        return _load_hr_only(hr_dir, scale)

    others = _scale_dirs(folder)
    if others:
        have = ", ".join(f"x{s}" for s in others)
        raise UserError(
            f"{folder} has {have} but no x{scale}/ folder; evaluate with --scale "
            f"{' or '.join(str(s) for s in others)}, or add {scaled}/HR and {scaled}/LR"
        )

    hr_dir, lr_dir = folder / "HR", folder / "LR"
    if hr_dir.is_dir() and lr_dir.is_dir():
        return _load_pairs(hr_dir, lr_dir, scale)
    if lr_dir.is_dir() and not hr_dir.is_dir():
        raise UserError(f"{folder} has LR/ but no HR/; put the high-resolution images in {hr_dir}")
    if hr_dir.is_dir():
        return _load_hr_only(hr_dir, scale)
    if not _has_images(folder):
        raise UserError(
            f"no images in {folder} (looked for {' '.join(IMAGE_EXTS)}, HR/ + LR/, or x{scale}/HR + x{scale}/LR); "
            f"point the evaluation option at a folder of HR images"
        )
    return _load_hr_only(folder, scale)
