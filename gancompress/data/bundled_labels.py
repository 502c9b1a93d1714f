"""Label maps made from the bundled photographs: the default data of `--task label2image` and what
the bundled SPADE demo teacher was trained on (no dataset ships or downloads).

How (deterministic, the same on every machine):
1. Every photograph is made a `size` x `size` square (translation's resize policy: shorter side
   resized, centre crop) and smoothed with a 5x5 box filter (so texture does not fragment regions).
2. One colour palette of `classes` centres is fitted by k-means (k-means++ start from seed 0, 30
   Lloyd iterations) to 4096 pixels of each *training* photograph: a class is a colour family
   shared by every image (e.g. "dark blue-grey"), as a semantic class is shared by every scene.
3. Each pixel takes its nearest centre; then a 9x9 majority (mode) filter, twice, merges speckle
   into regions, so the maps look like segmentations rather than posterized photos.

Train maps come from the training photographs, eval maps from the held-out ones (never trained
on; the palette is fitted on training pixels only). Extra views (random crops resized, as
translation's `--views`) are segmented after the crop, so every map is its own image's.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

DEFAULT_CLASSES = 8
_SAMPLES_PER_IMAGE = 4096


def _smooth(img: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(img[None], (2, 2, 2, 2), mode="replicate"), 5, stride=1)[0]


def kmeans(points: torch.Tensor, k: int, seed: int = 0, iters: int = 30) -> torch.Tensor:
    """(k, D) centres of `points` (N, D): k-means++ start, Lloyd iterations."""
    g = torch.Generator().manual_seed(seed)
    centres = [points[torch.randint(len(points), (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d = torch.cdist(points, torch.stack(centres)).min(1).values ** 2
        centres.append(points[torch.multinomial(d / d.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(points, c).argmin(1)
        for j in range(k):
            members = points[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return c


def segment(img: torch.Tensor, centres: torch.Tensor, passes: int = 2, window: int = 9) -> torch.Tensor:
    """(3, H, W) photograph -> (H, W) int64 ids: nearest palette centre, then majority filters."""
    k = len(centres)
    x = _smooth(img)
    ids = torch.cdist(x.flatten(1).T, centres).argmin(1).view(x.shape[-2:])
    for _ in range(passes):
        votes = F.one_hot(ids, k).permute(2, 0, 1).float()[None]
        votes = F.avg_pool2d(F.pad(votes, (window // 2,) * 4, mode="replicate"), window, stride=1)
        ids = votes[0].argmax(0)
    return ids


@functools.lru_cache(maxsize=4)
def bundled_palette(classes: int = DEFAULT_CLASSES, size: int = 256) -> torch.Tensor:
    """The k-means colour centres (classes, 3) fitted on the training photographs."""
    from .bundled import bundled_photographs
    from .translate import square

    g = torch.Generator().manual_seed(0)
    pts = []
    for _, im in bundled_photographs("train"):
        x = _smooth(square(im, size)).flatten(1).T
        pts.append(x[torch.randperm(len(x), generator=g)[:_SAMPLES_PER_IMAGE]])
    return kmeans(torch.cat(pts), classes, seed=0)


def bundled_label_maps(split: str, size: int = 256, classes: int = DEFAULT_CLASSES, views: int = 1,
                       seed: int = 0, with_photos: bool = False):
    """[(name, (H, W) ids)] (or [(name, ids, photo)] with `with_photos`) for the bundled `split`."""
    from .bundled import bundled_photographs
    from .translate import training_views

    centres = bundled_palette(classes, size)
    out = []
    for name, photo in training_views(bundled_photographs(split), size, views, seed):
        ids = segment(photo, centres)
        out.append((name, ids, photo) if with_photos else (name, ids))
    return out


def palette_colours(classes: int) -> torch.Tensor:
    """(classes, 3) display colours in [0, 1] for class ids (the bundled palette's centres when the
    class count matches, else evenly spaced hues): how label maps are drawn in reports."""
    if classes == DEFAULT_CLASSES:
        try:
            return bundled_palette(classes).clamp(0, 1)
        except Exception:  # noqa: BLE001 - drawing must not fail when the photographs are absent
            pass
    h = torch.arange(classes, dtype=torch.float32) / max(1, classes)
    return torch.stack([(0.5 + 0.5 * torch.cos(2 * torch.pi * (h + o))) for o in (0.0, 1 / 3, 2 / 3)], 1)
