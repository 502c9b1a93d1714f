"""GAN Compression (Li et al., CVPR 2020) as `--method ofa`: once-for-all supernet training with
intermediate-feature distillation, evolutionary search under the MACs budget, fine-tuning.

1. Train the supernet (`WidthSupernet`: the widest student with dynamic layers). Each step runs
   `samples` sub-networks on one batch: with the sandwich rule the widest and the narrowest plus
   random ones, else all random (uniform per position). Each sub-network's loss is
       lambda_recon * L1(student, teacher output)
     + lambda_distill * sum_k MSE(map_k(student feature k), teacher feature k) / mean(teacher feature k^2)
     + lambda_gan * GAN(student output)
   with 1x1 mapping convs (`distill.features`) and a PatchGAN trained alongside (real: the
   teacher's outputs, or for SR the HR photographs, i.e. the ground truth of the paired case).
2. Evolve sub-networks under the budget (`methods.evolution`), scoring each on held-out training
   images (never the evaluation images): PSNR of its output to the teacher's ("psnr"), or for SR
   PSNR-Y to the HR photographs ("psnr-y"). BatchNorm statistics, where a student has them, are
   recalibrated per candidate before scoring.
3. Fine-tune the chosen sub-network, extracted as a plain student with the supernet's weights,
   with the same objective; then it is evaluated and exported like every other student.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..arch.dynamic import recalibrate_batchnorm
from ..distill.features import (FeatureMapper, FeatureTaps, match_points, probe_features, same_name_layers,
                                student_points, usable_teacher_layers)
from ..distill.gan import discriminator_step, distill_discriminator, g_loss
from ..distill.loop import Diverged, run_loop
from ..distributed import average_gradients, broadcast_parameters, is_main
from ..distill.train import CosineLR
from ..errors import UserError
from .evolution import EvolutionConfig, evolve
from .space import WidthSpace, WidthSupernet
from ..log import info

SCORES = ("psnr", "psnr-y")
# The GAN term's default weight per task. SR: off. Measured on SRGAN x4 at 1/10 (BENCHMARKS.md):
# lambda_gan 0.1 cost 0.83 dB Set5 PSNR-Y (29.35 vs 30.18) and took 1.4x the fine-tuning time.
# Translation: on, as GAN Compression trains its CycleGAN students.
GAN_DEFAULT = {"sr": 0.0, "translate": 0.1, "label2image": 0.0}  # label2image: not measured yet, off


# the feature term while fine-tuning the chosen sub-network; None: --lambda-distill. SR: off, measured
# on SRGAN 1/10 at equal training (BENCHMARKS.md, "GAN Compression against the uniform baseline at
# equal training"): with it the student was 0.47 dB further from the teacher than the uniform
# baseline, without it (the supernet keeping it) 0.26 dB closer; the L1 to the teacher's output is
# a dense pixel target there
FINETUNE_DISTILL_DEFAULT = {"sr": 0.0, "translate": None, "label2image": None}


def resolved(cfg: "OFAConfig", task: str) -> "OFAConfig":
    """`cfg` with the task's defaults filled in where the user left lambda_gan / finetune_distill unset."""
    from dataclasses import replace

    if cfg.lambda_gan is None:
        cfg = replace(cfg, lambda_gan=GAN_DEFAULT[task])
    if cfg.finetune_distill is None:
        ft = FINETUNE_DISTILL_DEFAULT[task]
        cfg = replace(cfg, finetune_distill=cfg.lambda_distill if ft is None else ft)
    return cfg


def _layer_list(text: str) -> tuple:
    return tuple(x.strip() for x in text.split(",") if x.strip())


@dataclass
class OFAConfig:
    op: str = field(default="conv3x3", metadata={"flag": "--ofa-op", "help": "the operator of every cell layer"})
    steps: int = field(default=500, metadata={  # each step runs `samples` sub-networks
        "flag": "--ofa-steps", "help": "once-for-all supernet training steps"})
    samples: int = field(default=4, metadata={"flag": "--ofa-samples", "help": "sub-networks per training step"})
    sandwich: bool = field(default=True, metadata={
        "help": "sample every sub-network at random (default: the widest and narrowest are always in)"})
    lr: float = field(default=1e-3, metadata={"cli": False})
    lr_d: float = field(default=2e-4, metadata={"cli": False})
    lambda_recon: float = field(default=10.0, metadata={"help": "weight of L1 to the teacher's output"})
    lambda_distill: float = field(default=0.1, metadata={  # on relative MSE (distill.features.FeatureMapper.loss)
        "help": "weight of the intermediate-feature term"})
    finetune_distill: float | None = field(default=None, metadata={  # None: FINETUNE_DISTILL_DEFAULT
        "type": float, "help": "weight of the intermediate-feature term while fine-tuning the chosen sub-network "
                               "(default: 0 for sr, --lambda-distill for translate and label2image)"})
    lambda_gan: float | None = field(default=None, metadata={  # None: the task's default, GAN_DEFAULT
        "type": float, "help": "weight of the GAN term; 0 turns the discriminator off (default: ofa 0 for sr, "
                               "0.1 for translate; slim 0.1)"})
    gan_loss: str = field(default="lsgan", metadata={"choices": ["lsgan", "hinge"], "help": "GAN loss"})
    teacher_layers: tuple = field(default=(), metadata={  # module paths inside the teacher
        "parse": _layer_list, "metavar": "PATH[,PATH...]",
        "help": "teacher module names for feature distillation (default: a zoo teacher's named layers)"})
    config: str = field(default="", metadata={  # config.json keeps the field's name
        "flag": "--subnet", "aliases": ("--config",), "metavar": "W_W_..._W",
        "help": "use this sub-network (widths joined by _) instead of the evolutionary search; --config is its "
                "old, deprecated name (default: search)"})
    score: str = field(default="psnr", metadata={
        "flag": "--ofa-score", "choices": list(SCORES),
        "help": "candidate score on held-out training images: psnr (to the teacher) or, for sr, psnr-y (to "
                "the HR photographs)"})
    holdout: float = field(default=0.15, metadata={"cli": False})  # training images held out to score candidates
    score_crops: int = field(default=16, metadata={"cli": False})
    translate_score_px: int = field(default=64, metadata={"cli": False})  # translation: held-out strip and crop
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig, metadata={"nested": True})

    def to_dict(self):
        d = asdict(self)
        d["teacher_layers"] = list(self.teacher_layers)
        if d["finetune_distill"] is None:  # unset: left out, so runs made before the option still resume
            del d["finetune_distill"]
        return d


def validate(cfg: OFAConfig, task: str) -> None:
    from ..arch.ops import OPS
    from ..distill.gan import GAN_LOSSES

    if cfg.op not in OPS:
        raise UserError(f"--ofa-op {cfg.op!r} is unknown; choose one of {', '.join(sorted(OPS))}")
    if cfg.gan_loss not in GAN_LOSSES:
        raise UserError(f"--gan-loss {cfg.gan_loss!r} is unknown; choose one of {', '.join(GAN_LOSSES)}")
    if cfg.score not in SCORES or (cfg.score == "psnr-y" and task != "sr"):
        raise UserError(f"--ofa-score {cfg.score!r} is not available for --task {task}; use psnr"
                        + (" or psnr-y" if task == "sr" else ""))
    for name, v in (("--lambda-recon", cfg.lambda_recon), ("--lambda-distill", cfg.lambda_distill),
                    ("--finetune-distill", cfg.finetune_distill or 0.0),
                    ("--lambda-gan", cfg.lambda_gan or 0.0), ("--ofa-steps", cfg.steps)):
        if v < 0:
            raise UserError(f"{name} must be >= 0, got {v}")
    if cfg.samples < 1 or (cfg.sandwich and cfg.samples < 2):
        raise UserError(f"--ofa-samples must be >= 1 (>= 2 with the sandwich rule), got {cfg.samples}")
    e = cfg.evolution
    if e.population < 2 or e.generations < 1:
        raise UserError(f"--population must be >= 2 and --generations >= 1, got {e.population}, {e.generations}")
    for name, v in (("--mutate-prob", e.mutate_prob), ("--mutation-frac", e.mutation_frac),
                    ("--parent-frac", e.parent_frac)):
        if not 0 <= v <= 1:
            raise UserError(f"{name} must be in [0, 1], got {v}")
    if not 0 < cfg.holdout < 1:
        raise UserError(f"--holdout must be in (0, 1), got {cfg.holdout}")


def holdout_split(pairs, names, frac: float, seed: int, strip_px: int | None = None, grid: int = 1):
    """(train pairs, train names, held-out pairs) for scoring candidates.

    Default (SR): a few whole images held out (one image: its right quarter). With `strip_px`
    (translation): the right strip of *every* image, at least `strip_px` wide, so the held-out crops
    look like the training data. Whole images failed there: the two held out of the 13 bundled
    photographs were the Hubble deep field and the rocket, on which every student scored 9-12 dB
    and the search chose by noise. `grid`: the cut falls on a multiple of it (label2image: 32, so
    both parts keep the whole map's coarsest grid)."""
    if strip_px:
        train, held = [], []
        for lr, t in pairs:
            s = t.shape[-1] // lr.shape[-1]
            cut = (lr.shape[-1] - max(strip_px, int(round(frac * lr.shape[-1])))) // grid * grid
            train.append((lr[..., :cut], t[..., :cut * s]))
            held.append((lr[..., cut:], t[..., cut * s:]))
        return train, list(names), held
    if len(pairs) == 1:
        lr, t = pairs[0]
        s = t.shape[-1] // lr.shape[-1]
        cut = (3 * lr.shape[-1]) // 4
        return [(lr[..., :cut], t[..., :cut * s])], names, [(lr[..., cut:], t[..., cut * s:])]
    order = random.Random(seed).sample(range(len(pairs)), len(pairs))
    n_out = min(len(pairs) - 1, max(1, int(round(frac * len(pairs)))))
    out, keep = sorted(order[:n_out]), sorted(order[n_out:])
    return [pairs[i] for i in keep], [names[i] for i in keep], [pairs[i] for i in out]


class Objective:
    """recon + feature distillation + GAN, for the supernet and for the fine-tuned student alike."""

    def __init__(self, cfg: OFAConfig, recon_loss, teacher, teacher_layers: dict, student, task: str,
                 n_cells: int, probe: torch.Tensor, out_size: int, device):
        self.cfg, self.recon, self.teacher = cfg, recon_loss, teacher
        self.use_features = bool(teacher_layers) and cfg.lambda_distill > 0
        self.note = ""
        self.t_paths, self.s_paths, self.mapper = [], [], None
        if self.use_features:
            points = student_points(task, n_cells)
            if task == "label2image":  # student blocks carry the teacher's names: matched by name
                self.t_paths, self.s_paths, self.note = same_name_layers(teacher, teacher_layers, student, probe,
                                                                         explicit=bool(cfg.teacher_layers))
            else:
                s_shape = probe_features(student, points[:1], probe)[points[0]]
                self.t_paths, self.note = usable_teacher_layers(teacher, teacher_layers, probe, s_shape[1:],
                                                                explicit=bool(cfg.teacher_layers))
                self.s_paths = match_points(len(self.t_paths), points)
            self.use_features = bool(self.t_paths)
        if self.use_features:
            t_w = [sh[0] for sh in probe_features(teacher.model, self.t_paths, probe, forward=teacher).values()]
            s_w = [probe_features(student, [p], probe)[p][0] for p in self.s_paths]
            self.mapper = FeatureMapper(s_w, t_w).to(device)
        self.disc = None
        if cfg.lambda_gan > 0:
            self.disc = distill_discriminator(out_size).to(device)
        self.t_taps = FeatureTaps(teacher.model, self.t_paths) if self.use_features else None

    def attach(self, student):
        """Hooks on the student's feature points (the supernet during training, the plain student
        while fine-tuning: same module names)."""
        return FeatureTaps(student, self.s_paths) if self.use_features else None

    def teacher_features(self, lr):
        if not self.use_features:
            return None
        with torch.no_grad():
            return self.t_taps.run_until_taps(self.teacher, lr)

    def generator_loss(self, out, tgt, s_taps, t_feats) -> tuple[torch.Tensor, dict]:
        c = self.cfg
        logs = {}
        loss = c.lambda_recon * self.recon(out, tgt)
        logs["recon"] = loss.item()
        if self.use_features:
            fl = c.lambda_distill * self.mapper.loss(s_taps.take(), t_feats)
            loss = loss + fl
            logs["feat"] = fl.item()
        if self.disc is not None:
            gl = c.lambda_gan * g_loss(c.gan_loss, self.disc(out))
            loss = loss + gl
            logs["gan"] = gl.item()
        return loss, logs

    def g_params(self):
        return list(self.mapper.parameters()) if self.mapper is not None else []

    def close(self):
        if self.t_taps is not None:
            self.t_taps.close()


def _split_target(tgt, has_gt: bool):
    return (tgt[:, :3], tgt[:, 3:]) if has_gt else (tgt, tgt)


def train_supernet(cfg: OFAConfig, space: WidthSpace, obj: Objective, sampler, has_gt: bool, work_dir: Path,
                   device, quiet=False, seed: int = 0) -> WidthSupernet:
    """Once-for-all training; resumable from work_dir/supernet.ckpt."""
    torch.manual_seed(seed)
    net = WidthSupernet(space).to(device)
    params, opt, sched, opt_d, stateful = _optimizers(cfg, obj, "supernet", net, sampler, cfg.lr, cfg.steps,
                                                      cfg.lr * 0.01)
    taps = obj.attach(net.net)
    rng = random.Random(seed)
    extra = {"rng": None}  # restored by run_loop on resume: the same sequence of sub-networks
    restored = [False]

    def configs():
        if not restored[0]:
            restored[0] = True
            if extra["rng"]:
                rng.setstate((extra["rng"][0], tuple(extra["rng"][1]), extra["rng"][2]))
        fixed = [space.max_config(), space.min_config()] if cfg.sandwich else []
        return fixed + [space.sample(rng) for _ in range(cfg.samples - len(fixed))]

    def step(i):
        net.train()
        lr_b, tgt = sampler.next_batch()
        lr_b, tgt = lr_b.to(device), tgt.to(device)
        tgt, real = _split_target(tgt, has_gt)
        t_feats = obj.teacher_features(lr_b)
        opt.zero_grad(set_to_none=True)
        fakes, logs = [], {}
        for c in configs():
            net.set_config(c)
            out = net(lr_b)
            loss, lg = obj.generator_loss(out, tgt, taps, t_feats)
            (loss / cfg.samples).backward()
            fakes.append(out.detach())
            for k, v in lg.items():
                logs[k] = logs.get(k, 0.0) + v / cfg.samples
        average_gradients(params)
        opt.step()
        sched.step()
        if obj.disc is not None:
            logs["d"] = discriminator_step(obj.disc, opt_d, real, torch.cat(fakes), cfg.gan_loss)
        v, st, g = rng.getstate()
        extra["rng"] = [v, list(st), g]
        return logs

    run_loop("OFA supernet", cfg.steps, step, stateful,
             Path(work_dir) / "supernet.ckpt", ckpt_every=25, quiet=quiet, extra_state=extra)
    if taps is not None:
        taps.close()
    return net


def _optimizers(cfg: OFAConfig, obj: Objective, name: str, module, sampler, lr: float, steps: int, min_lr: float):
    """Adam with cosine decay over `module` and the mapping convs, Adam for the discriminator,
    every rank starting from rank 0's weights; and what a checkpoint must hold (`name`: the
    module's key). Shared by the supernet training and the fine-tuning."""
    params = list(module.parameters()) + obj.g_params()
    broadcast_parameters(params)
    opt = torch.optim.Adam(params, lr=lr)
    sched = CosineLR(opt, steps, lr, min_lr)
    stateful = {name: module, "opt": opt, "sched": sched, "sampler": sampler}
    opt_d = None
    if obj.mapper is not None:
        stateful["mapper"] = obj.mapper
    if obj.disc is not None:
        broadcast_parameters(obj.disc.parameters())
        opt_d = torch.optim.Adam(obj.disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        stateful.update(disc=obj.disc, opt_d=opt_d)
    return params, opt, sched, opt_d, stateful


def psnr_batch(out: torch.Tensor, ref: torch.Tensor) -> float:
    mse = ((out.clamp(0, 1) - ref) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def make_scorer(net: WidthSupernet, held_batch, score: str, calib_batches, device):
    """config -> score on the held-out crops (higher is better)."""
    from ..metrics.sr import psnr_y

    lr_b, tgt = held_batch
    lr_b, tgt = lr_b.to(device), tgt.to(device)
    has_gt = tgt.shape[1] == 6
    tgt, gt = _split_target(tgt, has_gt)
    calib = [b.to(device) for b in calib_batches]  # once, not per candidate

    @torch.no_grad()
    def score_fn(config):
        net.set_config(config)
        recalibrate_batchnorm(net, calib)
        net.eval()
        out = net(lr_b).clamp(0, 1)
        if score == "psnr-y":
            return psnr_y(out.cpu(), gt.cpu())
        return psnr_batch(out, tgt)
    return score_fn


def evolutionary_search(cfg: OFAConfig, net: WidthSupernet, space: WidthSpace, budget, held_batch,
                        calib_batches, work_dir: Path, device, quiet=False, log=info, spend_capacity=False,
                        band: float | None = None) -> dict:
    """`evolve` over the space within the budget. With `spend_capacity` under a latency budget the
    winner is then widened for the most MACs per millisecond up to the budget (AGD's
    --spend-capacity, on widths): the evolution's random draws and local moves rarely reach the
    budget's edge in MACs, and the supernet's held-out score does not tell capacity apart (SRGAN x4
    at 1/32:ms it ranked 2.0 G configs within 0.1 dB of each other and of wider ones). Under a MACs
    or size budget, with `band`, a winner below band x budget is widened into the band, each step
    the widening the supernet scores best (`WidthSpace.fill_to`; AGD's fill_to_band): where the
    whole space fits, the evolution does not climb out of the middle of it. The widened
    config is scored too; `res["capacity"]` says what moved, `res["probes"]` how many of the configs
    in `res["cache"]` the widening scored (the rest are the evolution's candidates)."""
    from tqdm.auto import tqdm

    e = cfg.evolution
    score_fn = make_scorer(net, held_batch, cfg.score, calib_batches, device)
    bar = tqdm(total=e.population * e.generations, desc="OFA evolution", disable=quiet or not is_main(),
               dynamic_ncols=True, mininterval=2.0)
    state_path = Path(work_dir) / "evolution.json" if is_main() else None
    costs: dict = {}

    def cost(c):
        if c not in costs:
            costs[c] = budget.cost(space.spec(c))
        return costs[c]

    if budget.unit == "ms":  # every piece a candidate can have, timed before the search (cached)
        budget.table.ensure(space.pieces(budget.hw), "latency table (width space)")
    res = evolve(space, score_fn, lambda c: cost(c) <= budget.limit, e, state_path, progress=bar.update,
                 log=None if quiet else (lambda m: bar.write(m) if is_main() else None),
                 repair=(lambda c: space.widen_free(c, cost)) if budget.unit == "ms" else None)
    bar.close()

    def scored(c):
        k = space.format(c)
        if k not in res["cache"]:
            res["cache"][k] = float(score_fn(c))
        return res["cache"][k]

    evolved = len(res["cache"])  # what the evolution scored; the fill's probes are counted apart
    if spend_capacity:
        best = tuple(res["best"])
        if budget.unit == "ms":
            spent = space.spend_on_capacity(best, cost, budget.limit)
        else:
            spent = space.fill_to(best, cost, band * budget.limit, budget.limit, scored) if band else best
        if spent != best:
            k = space.format(spent)
            res["capacity"] = {"from": space.format(best), "score_from": res["best_score"], "to": k,
                               "score_to": scored(spent)}
            res["best"], res["best_score"] = spent, res["cache"][k]
    res["probes"] = len(res["cache"]) - evolved
    return res


def finetune(cfg: OFAConfig, student, obj: Objective, sampler, has_gt: bool, steps: int, lr: float,
             ckpt: Path, device, quiet=False, val_batch=None, log=info):
    """Fine-tune a plain (extracted) student with the supernet's objective; resumable.

    With `val_batch` (held-out training crops), PSNR to the teacher is measured at every checkpoint
    and the best weights are kept: if the run ends clearly worse than its best (a diverged run:
    one SRGAN fine-tune at lr 2e-3 without the GAN term blew up to outputs of 1e5), the best
    weights are restored and the run says so. A collapse of more than EXPLODED_DB during the run
    rolls back to the last checkpoint with the learning rate halved (run_loop's guard) instead of
    training on from exploded weights. The history is returned (`val`)."""
    from dataclasses import replace

    student.to(device).train()
    ft = cfg.lambda_distill if cfg.finetune_distill is None else cfg.finetune_distill
    obj.cfg = replace(obj.cfg, lambda_distill=ft)
    if ft == 0:  # no feature term: neither the teacher's trunk nor the student's taps are run
        obj.use_features = False
    params, opt, sched, opt_d, stateful = _optimizers(cfg, obj, "model", student, sampler, lr, steps, 1e-6)
    taps = obj.attach(student)

    def step(i):
        lr_b, tgt = sampler.next_batch()
        lr_b, tgt = lr_b.to(device), tgt.to(device)
        tgt, real = _split_target(tgt, has_gt)
        t_feats = obj.teacher_features(lr_b)
        out = student(lr_b)
        loss, logs = obj.generator_loss(out, tgt, taps, t_feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params)
        opt.step()
        sched.step()
        if obj.disc is not None:
            logs["d"] = discriminator_step(obj.disc, opt_d, real, out.detach(), cfg.gan_loss)
        return logs

    every = max(50, steps // 20)
    extra = {"val": [], "best_psnr": None, "best_state": None}

    def step_and_validate(i):
        logs = step(i)
        if val_batch is not None and ((i + 1) % every == 0 or i + 1 == steps):
            p = _val_psnr(student, val_batch, device)
            if extra["best_psnr"] is not None and p < extra["best_psnr"] - EXPLODED_DB:
                # roll back to the last checkpoint (validated, good) at half the learning rate
                raise Diverged(f"held-out PSNR to the teacher fell to {p:.2f} dB from {extra['best_psnr']:.2f}")
            extra["val"].append([i + 1, p])
            if extra["best_psnr"] is None or p > extra["best_psnr"]:
                extra["best_psnr"] = p
                extra["best_state"] = {k: v.detach().clone() for k, v in student.state_dict().items()}
            logs["val psnr"] = p
        return logs

    run_loop("OFA fine-tune", steps, step_and_validate, stateful, ckpt, ckpt_every=every, quiet=quiet,
             extra_state=extra)
    if taps is not None:
        taps.close()
    if extra["val"] and extra["best_state"] is not None and extra["val"][-1][1] < extra["best_psnr"] - DIVERGED_DB:
        at = max(extra["val"], key=lambda v: v[1])[0]
        log(f"warning: fine-tuning ended at {extra['val'][-1][1]:.2f} dB PSNR to the teacher on held-out crops, "
            f"{extra['best_psnr']:.2f} dB at step {at}; restoring the step-{at} weights")
        student.load_state_dict(extra["best_state"])
    student.eval()
    student.finetune_val = extra["val"]
    return student


DIVERGED_DB = 1.0  # a final held-out PSNR this far below the best means the run went wrong
# a held-out PSNR this far below the best during the run is an explosion (an SRGAN fine-tune at lr
# 2e-3 fell from 30.4 to 2.9 dB between two validations and never came back): roll back at once
EXPLODED_DB = 6.0


@torch.no_grad()
def _val_psnr(student, val_batch, device) -> float:
    lr_b, tgt = val_batch
    was = student.training
    student.eval()
    out = student(lr_b.to(device))
    student.train(was)
    return psnr_batch(out, tgt[:, :3].to(device))
