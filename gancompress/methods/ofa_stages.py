"""The `search` and `retrain` stages of a run for `--method ofa` (GAN Compression), in the run
directory layout every method shares:

  search/supernet.ckpt       once-for-all training checkpoint (resumable)
  search/evolution.json      evolutionary search state and score cache (resumable)
  search/spec.json           the chosen sub-network; search/init.safetensors its supernet weights
  search/ofa_aux.safetensors the mapping convs and discriminator, carried into fine-tuning
  retrain.ckpt               fine-tuning checkpoint
"""

from __future__ import annotations

import json
import time

import torch

from ..arch.build import build_student
from ..arch.cost import fmt_macs, spec_macs
from ..arch.spec import ArchSpec
from ..distill.loop import is_main
from ..fileio import atomic_write_text, load_run_tensors, save_safetensors_atomic
from . import ofa
from .stage_base import MethodStages


def with_ground_truth(cfg, images, pairs):
    """SR pairs whose target carries the HR photograph as 3 more channels (the paired case's
    'real' images for the discriminator, and PSNR-Y scoring): (lr, cat(teacher(lr), hr))."""
    from ..data.degrade import bicubic_downscale

    out = []
    for (name, hr), (lr, t) in zip(images, pairs):
        hr_c, _ = bicubic_downscale(hr, cfg.scale, name=name)
        out.append((lr, torch.cat([t, hr_c], 0)))
    return out


def usable_feature_layers(cfg, teacher, layers: dict) -> tuple[dict, str]:
    """The teacher layers that can be matched to the student's trunk (same resolution), checked
    with one probe pass; an explicitly requested layer that cannot is an error."""
    from ..compress import ofa_space
    from ..distill.features import probe_features, student_points, usable_teacher_layers

    space = ofa_space(cfg)
    widest = build_student(space.spec(space.max_config())).to(cfg.device)
    p = cfg.search.patch
    probe = torch.rand(1, 3, p, p, device=cfg.device)
    first = student_points(cfg.task, cfg.search.n_cells)[0]
    hw = probe_features(widest, [first], probe)[first][1:]
    keep, note = usable_teacher_layers(teacher, layers, probe, hw, explicit=bool(cfg.ofa.teacher_layers))
    by_path = {v: k for k, v in layers.items()}
    return {by_path[p]: p for p in keep}, note


class OFARun(MethodStages):
    def __init__(self, cfg, run, teacher, feature_layers, images, names, pairs, perceptual):
        from ..compress import _distill_loss, ofa_space

        self.layers = feature_layers
        self.space = ofa_space(cfg)
        self.o = o = ofa.resolved(cfg.ofa, cfg.task)
        self.has_gt = cfg.task == "sr" and (o.lambda_gan > 0 or o.score == "psnr-y")
        pairs = with_ground_truth(cfg, images, pairs) if self.has_gt else pairs
        strip = min(o.translate_score_px, cfg.size // 4) if cfg.task == "translate" else None  # a quarter at most
        self.score_px = min(cfg.retrain.patch, strip) if strip else cfg.retrain.patch
        train_pairs, train_names, self.held = ofa.holdout_split(pairs, names, o.holdout, cfg.seed, strip)
        super().__init__(cfg, run, train_pairs, train_names, teacher)
        self.recon = _distill_loss(perceptual, cfg)

    def _held_batch(self):
        """The fixed held-out crops that score candidates in the search and track the fine-tune
        (the same seed, so both stages see the same crops)."""
        from ..compress import make_sampler

        cfg = self.cfg
        return make_sampler(cfg, self.held, None, self.score_px, self.o.score_crops, cfg.seed + 3, self.teacher,
                            fixed=True, split=False).next_batch()

    def _objective(self):
        """The objective with mapping convs sized for the widest sub-network (narrower ones use a
        slice), so the supernet's mapping layers carry over to fine-tuning."""
        cfg = self.cfg
        widest = build_student(self.space.spec(self.space.max_config())).to(cfg.device)
        p = min(cfg.search.patch, cfg.retrain.patch)  # the discriminator must fit both stages' patches
        probe = torch.rand(1, 3, p, p, device=cfg.device)
        obj = ofa.Objective(self.o, self.recon, self.teacher, self.layers, widest, cfg.task, cfg.search.n_cells,
                            probe, p * cfg.scale, cfg.device)
        if obj.use_features:
            self._log("feature distillation: " + ", ".join(f"{t} -> {s}" for t, s in zip(obj.t_paths, obj.s_paths)))
        return obj

    def search(self, budget: int):
        cfg, run, o = self.cfg, self.run, self.o
        spec_path, init_path = run / "search" / "spec.json", run / "search" / "init.safetensors"
        if run.done("search"):
            return ArchSpec.load(spec_path), load_run_tensors(init_path)
        (run / "search").mkdir(exist_ok=True)
        s = cfg.search
        obj = self._objective()
        sampler = self._sampler(s.patch, s.batch, cfg.seed)
        t0 = time.perf_counter()
        net = ofa.train_supernet(o, self.space, obj, sampler, self.has_gt, run / "search", cfg.device,
                                 cfg.quiet, cfg.seed)
        t_train = time.perf_counter() - t0
        held = self._held_batch()
        calib = [self._sampler(s.patch, s.batch, cfg.seed + 5).next_batch()[0] for _ in range(2)]
        t0 = time.perf_counter()
        if o.config:
            best, result = self.space.parse(o.config), {"history": [], "cache": {}}
            self._log(f"using --config {o.config} (no evolutionary search)")
        else:
            result = ofa.evolutionary_search(o, net, self.space, budget, held, calib, run / "search", cfg.device,
                                             cfg.quiet)
            best = result["best"]
        t_evo = time.perf_counter() - t0
        key = self.space.format(best)
        spec = self.space.spec(best, meta={"method": "ofa", "config": key, "budget_macs": int(budget),
                                           "macs": int(spec_macs(self.space.spec(best))),
                                           "score": result["cache"].get(key), "score_kind": o.score})
        init_state = {k: v.contiguous() for k, v in net.extract(best).state_dict().items()}
        n = len(result["cache"])
        info = {"config": key, "candidates": n, "supernet_seconds": t_train, "evolution_seconds": t_evo,
                "candidates_per_minute": 60.0 * n / max(t_evo, 1e-9) if n else None,
                "history": result["history"]}
        self._log(f"OFA sub-network {key}: {fmt_macs(spec.meta['macs'])} MACs; {n} candidates scored in "
                  f"{t_evo:.0f} s")
        if is_main():
            save_safetensors_atomic(init_state, init_path)
            aux = {}
            if obj.mapper is not None:
                aux.update({f"mapper.{k}": v for k, v in obj.mapper.state_dict().items()})
            if obj.disc is not None:
                aux.update({f"disc.{k}": v for k, v in obj.disc.state_dict().items()})
            if aux:
                save_safetensors_atomic(aux, run / "search" / "ofa_aux.safetensors")
            atomic_write_text(run / "search" / "ofa.json", json.dumps(info, indent=1))
            spec.save(spec_path)
            run.mark("search", {"macs": spec_macs(spec), "config": key})
        obj.close()
        return spec, init_state

    def finetune(self, spec, init_state):
        from ..compress import student_to_retrain
        from ..export.student import save_student

        cfg, run = self.cfg, self.run
        done, student = student_to_retrain(cfg, run, spec, init_state)
        if done is not None:
            return done
        obj = self._objective()
        aux_path = run / "search" / "ofa_aux.safetensors"
        if aux_path.is_file():
            aux = load_run_tensors(aux_path)
            if obj.mapper is not None:
                obj.mapper.load_state_dict({k[7:]: v for k, v in aux.items() if k.startswith("mapper.")})
            if obj.disc is not None:
                obj.disc.load_state_dict({k[5:]: v for k, v in aux.items() if k.startswith("disc.")})
        r = cfg.retrain
        sampler = self._sampler(r.patch, r.batch, cfg.seed + 11)
        val = self._held_batch()
        ofa.finetune(self.o, student, obj, sampler, self.has_gt, r.steps, r.lr, run / "retrain.ckpt",
                     cfg.device, cfg.quiet, val, self._log)
        if is_main():
            atomic_write_text(run / "finetune_val.json", json.dumps(student.finetune_val))
        obj.close()
        student = student.cpu().eval()
        if is_main():
            save_student(student, spec, run / "student")
            run.mark("retrain")
        return student
