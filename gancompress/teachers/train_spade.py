"""`gancompress train-teacher --task label2image`: train a small GauGAN (SPADE) generator.

Pairs: label maps and the photographs they were made from. Without `--labels`/`--photos` folders
these are the bundled training photographs and their k-means label maps (data/bundled_labels.py),
`--views` random crops of each: how the bundled label2image demo teacher was made.

Objective (GauGAN's, without its VGG term, which needs downloaded weights): a conditional
PatchGAN discriminator that sees (one-hot map, image), least-squares GAN loss, and L1 to the
photograph (weight `lambda_l1`); GauGAN's two learning rates (G 1e-4, D 4e-4, Adam betas 0 and
0.9); batch norm in SPADE, as GauGAN's synchronized batch norm; linear decay over the second half.
Crops start on multiples of 32 px, the coarsest grid of a 5-up-sampling generator.

Saved in the public SPADE release's key layout (no spectral norm), so it loads as `spade:PATH`;
the run resumes from `<out>.*.ckpt`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.patches import PatchSampler
from ..distill.gan import PatchDiscriminator, conditional_gan_step
from ..distill.loop import remove_checkpoint, run_loop
from ..errors import UserError
from ..fileio import save_safetensors_atomic
from .zoo_spade import SPADEGenerator


def spade_training_pairs(labels: str | None, photos: str | None, classes: int, size: int, views: int,
                         seed: int, palette: str | None = None):
    """(names, [(one-hot map, photograph in [0, 1])])."""
    from ..data.label_maps import one_hot

    if (labels is None) != (photos is None):
        raise UserError("give both --labels and --photos (label maps and the photographs they label, matched by "
                        "file name), or neither (the bundled photographs and their k-means label maps)")
    if labels is None:
        from ..data.bundled_labels import bundled_label_maps

        items = bundled_label_maps("train", size, classes, views, seed, with_photos=True)
        return [n for n, _, _ in items], [(one_hot(ids, classes), ph) for _, ids, ph in items]
    from ..data.label_maps import load_label_folder
    from ..data.translate import load_square_paths, paired_files

    pairs = paired_files(labels, photos)
    maps = dict(load_label_folder(labels, classes, size, palette, [p for p, _ in pairs]))
    ims = dict(load_square_paths([q for _, q in pairs], size))
    return [p.name for p, _ in pairs], [(maps[p.name], ims[q.name]) for p, q in pairs]


def train_spade_teacher(out: str | os.PathLike, labels: str | None = None, photos: str | None = None,
                        classes: int = 8, ngf: int = 16, hidden: int = 32, steps: int = 3000, size: int = 256,
                        crop: int = 128, batch: int = 4, lr: float = 1e-4, lambda_l1: float = 10.0,
                        views: int = 4, seed: int = 0, device: str = "cpu", palette: str | None = None,
                        quiet: bool = False) -> Path:
    """Train a SPADE generator (ngf, SPADE hidden width) on label map -> photo pairs; write it to `out`."""
    out = Path(out)
    if crop > size or crop % 32 or size % 32:
        raise UserError(f"--crop and --size must be multiples of 32 (the generator's coarsest grid), crop <= size; "
                        f"got crop {crop}, size {size}")
    names, pairs = spade_training_pairs(labels, photos, classes, size, views, seed, palette)
    torch.manual_seed(seed)
    g = SPADEGenerator(classes, ngf, "normal", hidden, 3, "batch").to(device)
    d = PatchDiscriminator(classes + 3, ndf=32).to(device)
    sampler = PatchSampler(pairs, crop, 1, batch, seed, names=names, augment=True, align=32)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=4 * lr, betas=(0.0, 0.9))
    half = steps // 2
    decay = lambda i: 1.0 if i < half else max(0.0, 1.0 - (i - half) / max(1, steps - half))  # noqa: E731
    sch = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_d)]

    def step(i):
        x, y = (t.to(device) for t in sampler.next_batch())
        return conditional_gan_step(g, d, opt_g, opt_d, x, y * 2 - 1, lambda_l1, sch)

    tag = f"spade-c{classes}-ngf{ngf}-h{hidden}-s{steps}-c{crop}-b{batch}-v{views}"
    ckpt = out.with_name(f"{out.name}.{tag}.ckpt")
    g.train()
    d.train()
    run_loop("train teacher", steps, step, {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d, "sch_g": sch[0],
                                             "sch_d": sch[1], "sampler": sampler}, ckpt, ckpt_every=100, quiet=quiet)
    g.eval()
    save_safetensors_atomic(g.state_dict(), out, {"arch": "spade", "ngf": str(ngf), "hidden": str(hidden),
                                                  "classes": str(classes), "steps": str(steps), "seed": str(seed)})
    remove_checkpoint(ckpt)
    return out
