"""Reading and writing images as the package's one image type.

Inside the package an image is a torch float32 tensor, RGB, shape (3, H, W), values in [0, 1].
Everything that comes from disk goes through `load_image`, so grayscale, palette, 16-bit and
transparent files all arrive in that one form, and every unreadable file becomes a `UserError`
that names it instead of a PIL traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import UserError, warn

#: File extensions treated as images (compared case-insensitively).
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_EXTS_TEXT = " ".join(IMAGE_EXTS)
_DEFAULT_HINT = "pass a folder that contains images"


# ----------------------------------------------------------------------------- conversion


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Snap to the 256 levels a saved 8-bit image can hold: round(clamp(img, 0, 1) * 255) / 255.

    Metrics quantize first so that a number measured in memory equals the one measured on the
    PNG the user gets.
    """
    return torch.round(img.detach().float().clamp(0.0, 1.0) * 255.0) / 255.0


def to_uint8_tensor(img: torch.Tensor) -> torch.Tensor:
    """(C, H, W) float in [0, 1] -> (C, H, W) uint8, clamped and rounded (not truncated)."""
    return torch.round(img.detach().float().clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, H, W) float tensor in [0, 1] -> 8-bit PIL image (RGB or L)."""
    if img.dim() == 4 and img.shape[0] == 1:
        img = img[0]
    if img.dim() == 2:
        img = img.unsqueeze(0)
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor of shape (3,H,W) or (1,H,W), got {tuple(img.shape)}")
    arr = to_uint8_tensor(img.cpu()).permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def from_pil(im: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (3, H, W) float32 tensor in [0, 1]."""
    if im.mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB.

    Transparent images (RGBA, LA, PA, P with a transparency entry) are alpha-composited on a
    WHITE background, so transparent areas come out white (as a viewer would show them)
    rather than as whatever colour happens to be stored under alpha 0.
    16-bit and 32-bit integer images (I;16, I) are scaled down to 8 bits by their bit depth,
    instead of PIL's default clipping, which would turn most of a 16-bit photo white.
    Float images (F) are taken as [0, 1] if their maximum is <= 1, else as [0, 255].
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        peak = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im).astype(np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        arr = np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


# ----------------------------------------------------------------------------- loading


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read one image file as a (3, H, W) float32 RGB tensor in [0, 1].

    Any PIL mode is converted to RGB (see `to_rgb`: transparency is composited on white,
    16-bit is rescaled). The EXIF orientation tag is applied, so phone photos come out upright.
    A missing, unreadable or corrupt file raises `UserError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist or is not a file; check the path")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = to_rgb(im)
            return from_pil(rgb)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt files raise OSError, SyntaxError, EOFError, zlib.error...
        raise UserError(
            f"cannot read image {path} ({type(exc).__name__}: {exc}); "
            f"the file is corrupt or not an image: replace it or remove it from the folder"
        ) from None


def list_images(folder: str | os.PathLike, hint: str | None = None) -> list[Path]:
    """Image files directly inside `folder` (not recursive), sorted by name.

    Matched by extension (IMAGE_EXTS, case-insensitive); hidden files such as macOS `._x.png`
    are ignored because they are not images. `hint` is the fix appended to error messages
    (e.g. "point --train-data at a folder of images").
    """
    hint = hint or _DEFAULT_HINT
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"folder {folder} does not exist; {hint}")
    if not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder; {hint}")
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    if not entries:
        raise UserError(f"folder {folder} is empty (looked for {_EXTS_TEXT}); {hint}")
    images = [
        p
        for p in entries
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS
    ]
    if not images:
        raise UserError(f"no images in {folder} (looked for {_EXTS_TEXT}); {hint}")
    return images


def load_folder(
    folder: str | os.PathLike, min_size: int = 0, hint: str | None = None
) -> list[tuple[str, torch.Tensor]]:
    """Load every image in `folder` as (file name, tensor), sorted by name.

    A corrupt image or one with min(H, W) < `min_size` is skipped with a warning naming it, so
    one bad file does not stop a run; if nothing usable remains, `UserError` explains why.
    """
    hint = hint or _DEFAULT_HINT
    folder = Path(folder)
    paths = list_images(folder, hint=hint)
    loaded: list[tuple[str, torch.Tensor]] = []
    corrupt: list[tuple[Path, UserError]] = []
    small: list[str] = []
    for p in paths:
        try:
            img = load_image(p)
        except UserError as exc:
            corrupt.append((p, exc))
            continue
        h, w = img.shape[-2:]
        if min(h, w) < min_size:
            small.append(f"{p} ({w}x{h})")
            continue
        loaded.append((p.name, img))
    if not loaded:
        if corrupt and not small:
            if len(corrupt) == 1:
                raise corrupt[0][1]
            raise UserError(
                f"none of the {len(corrupt)} images in {folder} could be read "
                f"(first: {corrupt[0][1]}); {hint}"
            )
        reasons = []
        if small:
            reasons.append(
                f"{len(small)} smaller than {min_size} px on the short side ({', '.join(small[:3])}"
                f"{', ...' if len(small) > 3 else ''})"
            )
        if corrupt:
            reasons.append(f"{len(corrupt)} unreadable")
        raise UserError(
            f"no usable images in {folder}: {'; '.join(reasons)}; "
            f"use images at least {min_size}x{min_size} px, or {hint}"
        )
    for p, exc in corrupt:
        warn(f"skipping {p.name} ({len(loaded)} other images remain): {exc}")
    for s in small:
        warn(f"skipping {s}: smaller than {min_size} px on the short side (need at least {min_size}x{min_size})")
    return loaded


# ----------------------------------------------------------------------------- saving


def save_image(tensor: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a (3, H, W) (or (1, H, W)) tensor in [0, 1] as an 8-bit PNG, creating parent folders.

    Values are clamped and rounded (not truncated), so save -> load returns `quantize(tensor)`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(tensor).save(path, format="PNG")
    return path
