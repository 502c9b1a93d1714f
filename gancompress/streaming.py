"""Big images with bounded memory: `gancompress upscale` / `apply` read the input as 8 bits, run an
SR student tile by tile (the same tiles as `evaluate.predict_tiled`) and stream each finished row
of tiles into a PNG file, so no full-size float output ever exists. A 10000x10000 x4 upscale peaks
under 1 GB of RSS (BENCHMARKS.md, "Reliability"); the float output alone would be 19 GB.

A translation student runs on the whole image (its instance norm makes tiles differ from the
whole), so its input size is capped by `max_pixels` instead (one-line error above it).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

SR_MAX_PIXELS = 16384 * 16384  # input pixels; memory grows with the input (3 bytes a pixel), not the output
TRANSLATE_MAX_PIXELS = 3072 * 3072  # whole-image inference: activations grow with the image (BENCHMARKS.md)


# ---- reading ----------------------------------------------------------------------------------
def load_image_u8(path: str | Path, max_pixels: float, what: str = "") -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array, converted exactly as `data.images.load_image`
    does (EXIF orientation, transparency on white, 16-bit rescaled), refused above `max_pixels`
    before it is decoded."""
    from PIL import Image, ImageOps

    from .data.images import to_rgb

    path = Path(path)
    if not path.is_file():
        raise UserError(f"input image {path} not found")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces PIL's decompression-bomb check
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise UserError(f"image {path} is {w}x{h} = {w * h} pixels, above --max-pixels {max_pixels:.0f}"
                                f"{what}; downscale or crop it, or raise --max-pixels if the memory is there")
            im.load()
            if im.getexif().get(0x0112, 1) != 1:  # rotate as load_image does (exif_transpose copies even when
                im = ImageOps.exif_transpose(im)  # there is nothing to do: a whole image more in memory)
            arr = np.asarray(to_rgb(im), dtype=np.uint8)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"not enough memory to read image {path}; lower --max-pixels or downscale it") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files raise OSError, SyntaxError, EOFError, zlib.error...
        raise UserError(f"cannot read image {path} ({type(exc).__name__}: {exc}); the file is corrupt or not "
                        "an image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return arr


def to_float(arr: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 -> (1, 3, h, w) float32 in [0, 1] (as data.images.from_pil)."""
    # np.array copies (the decoded image is read-only, which torch warns about): a tile, or a translation input
    return torch.from_numpy(np.array(arr, dtype=np.uint8, order="C")).permute(2, 0, 1).contiguous().float().div_(255.0)[None]


def to_u8_rows(img: torch.Tensor) -> np.ndarray:
    """(3, h, w) float in [0, 1] -> (h, w, 3) uint8, rounded as data.images.to_uint8_tensor."""
    from .data.images import to_uint8_tensor

    return to_uint8_tensor(img).permute(1, 2, 0).numpy()


# ---- writing ----------------------------------------------------------------------------------
class PngStreamWriter:
    """An 8-bit RGB PNG written row band by row band into an open binary file (every row with the
    'Up' filter, one zlib stream split into IDAT chunks)."""

    def __init__(self, f, width: int, height: int, level: int | None = None, chunk: int = 1 << 20):
        if level is None:  # zlib 1 is 4x faster than 6 and ~6 % larger (BENCHMARKS.md): for huge outputs
            level = 6 if width * height <= 1 << 24 else 1
        if not (0 < width < 2 ** 31 and 0 < height < 2 ** 31):
            raise UserError(f"an output of {width}x{height} pixels cannot be stored as PNG (at most 2^31-1 a side)")
        self.f, self.width, self.height, self.chunk = f, width, height, chunk
        self.rows = 0
        self.z = zlib.compressobj(level)
        self.prev = np.zeros(3 * width, np.uint8)  # the row above the next one (zeros above the first)
        self.pending = bytearray()
        f.write(b"\x89PNG\r\n\x1a\n")
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self.f.write(struct.pack(">I", len(data)) + kind)
        self.f.write(data)
        self.f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))

    def _emit(self, data: bytes, final: bool = False) -> None:
        self.pending += data
        while len(self.pending) >= self.chunk or (final and self.pending):
            part, self.pending = bytes(self.pending[:self.chunk]), self.pending[self.chunk:]
            self._chunk(b"IDAT", part)

    def write_rows(self, rows: np.ndarray) -> None:
        """rows: (n, width, 3) uint8."""
        n = rows.shape[0]
        if rows.shape[1:] != (self.width, 3) or rows.dtype != np.uint8:
            raise ValueError(f"rows of shape {rows.shape} {rows.dtype} for a {self.width} px wide RGB PNG")
        if self.rows + n > self.height:
            raise ValueError("more rows than the PNG's height")
        flat = rows.reshape(n, -1)
        lines = np.empty((n, 1 + 3 * self.width), np.uint8)
        lines[:, 0] = 2  # filter 'Up': each byte minus the one above it, modulo 256
        np.subtract(flat[0], self.prev, out=lines[0, 1:])
        np.subtract(flat[1:], flat[:-1], out=lines[1:, 1:])
        self.prev = flat[-1].copy()
        self._emit(self.z.compress(lines))
        self.rows += n

    def close(self) -> None:
        if self.rows != self.height:
            raise ValueError(f"PNG closed after {self.rows} of {self.height} rows")
        self._emit(self.z.flush(), final=True)
        self._chunk(b"IEND", b"")


# ---- running ----------------------------------------------------------------------------------
def tile_grid(h: int, w: int, tile: int, overlap: int):
    """Row bands of tiles, as evaluate.predict_tiled cuts them: yields (y0, y1, [(x0, x1, ya, yb, xa, xb)])
    where [y0, y1) x [x0, x1) is the part of the input a tile owns and [ya, yb) x [xa, xb) what it reads."""
    step = tile - 2 * overlap
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        ya, yb = max(0, y0 - overlap), min(h, y0 + step + overlap)
        row = []
        for x0 in range(0, w, step):
            x1 = min(w, x0 + step)
            row.append((x0, x1, ya, yb, max(0, x0 - overlap), min(w, x0 + step + overlap)))
        yield y0, y1, row


@torch.no_grad()
def sr_to_png(fn, img: np.ndarray, scale: int, f, tile: int = 256, overlap: int = 16,
              level: int | None = None) -> tuple:
    """Super-resolve an (h, w, 3) uint8 image with `fn` tile by tile into a PNG written to `f`.
    The pixels equal those of `evaluate.predict_tiled` with the same tile and overlap, saved as PNG.
    Returns the output (height, width)."""
    from .arch.cost import module_device

    dev = module_device(fn)
    run = (lambda t: fn(t.to(dev)).cpu()) if dev.type != "cpu" else fn
    h, w = img.shape[:2]
    out = PngStreamWriter(f, w * scale, h * scale, level)
    if h <= tile and w <= tile:  # one piece, as predict_tiled
        out.write_rows(to_u8_rows(run(to_float(img)).clamp_(0, 1)[0]))
    else:
        for y0, y1, row in tile_grid(h, w, tile, overlap):
            band = np.empty(((y1 - y0) * scale, w * scale, 3), np.uint8)
            for x0, x1, ya, yb, xa, xb in row:
                piece = run(to_float(img[ya:yb, xa:xb])).clamp_(0, 1)
                oy, ox = (y0 - ya) * scale, (x0 - xa) * scale
                band[:, x0 * scale:x1 * scale] = to_u8_rows(
                    piece[0, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale])
            out.write_rows(band)
    out.close()
    return h * scale, w * scale


def image_to_png(img: torch.Tensor, f, level: int | None = None) -> None:
    """A (3, h, w) float image in [0, 1] as PNG into `f` (the pixels data.images.save_image writes)."""
    rows = to_u8_rows(img)
    out = PngStreamWriter(f, rows.shape[1], rows.shape[0], level)
    out.write_rows(rows)
    out.close()
