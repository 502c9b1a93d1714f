"""The `search` and `retrain` stages of a run for `--method slim` (GAN Slimming):

  search/slim.ckpt          the joint distillation + pruning (+ QAT) optimization (resumable)
  search/spec.json          the extracted network; search/init.safetensors its weights
  search/slim.json          threshold, widths per position, gate sparsity
  retrain.ckpt              fine-tuning by distillation (with fake quantization for GS-8)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace


from ..arch.cost import fmt_macs, spec_macs
from ..arch.spec import ArchSpec
from ..distill.loop import is_main
from ..fileio import atomic_write_text, load_run_tensors, save_safetensors_atomic
from . import slim
from .stage_base import MethodStages


def slim_space(cfg, start=None):
    """The widths GAN Slimming prunes: around the teacher's own layout when it starts from the teacher
    (`start`: its ArchSpec), else the GAN Compression space of the run's options."""
    from ..compress import frame_template
    from .ofa_space import OFASpace

    s = cfg.search
    if start is not None:
        return OFASpace(start, len(start.cells), len(start.cells[0]), start.cells[0][0].op, s.width_ratios)
    return OFASpace(frame_template(s, cfg.task, cfg.scale), s.n_cells, s.n_layers, cfg.slim.op, s.width_ratios)


def slim_start(cfg, teacher, log):
    """(cfg, (spec, weights) of the teacher as a student, or None). With --slim-init teacher and a
    teacher whose layout is not expressible, the run says so and slims the space network instead
    (its config records init "space")."""
    if cfg.method != "slim" or cfg.slim.init != "teacher":
        return cfg, None
    from ..teachers.as_student import teacher_as_student

    start = teacher_as_student(teacher)
    if start is None:
        log(f"note: GAN Slimming cannot start from teacher {cfg.teacher} (only an instance-norm cyclegan-resnet "
            "layout is expressible as a student); slimming the widest network of the space instead")
        return replace(cfg, slim=replace(cfg.slim, init="space")), None
    return cfg, start


class SlimRun(MethodStages):
    def __init__(self, cfg, run, names, pairs, perceptual, teacher, start=None):
        from ..compress import _distill_loss

        super().__init__(cfg, run, pairs, names, teacher)
        self.perceptual, self.start = perceptual, start
        self.space = slim_space(cfg, start[0] if start else None)
        self.recon = _distill_loss(perceptual, cfg)

    def _quantize(self, module):
        from ..quant.fake import enable_fake_quant

        if self.cfg.slim.bits == 8:
            enable_fake_quant(module, 8, skip=slim.QAT_FLOAT[self.cfg.task])

    def search(self, budget: int):
        cfg, run, o = self.cfg, self.run, self.cfg.slim
        spec_path, init_path = run / "search" / "spec.json", run / "search" / "init.safetensors"
        if run.done("search"):
            return ArchSpec.load(spec_path), load_run_tensors(init_path)
        (run / "search").mkdir(exist_ok=True)
        s = cfg.search
        student = slim.GatedStudent(self.space)
        if self.start is not None:  # the teacher itself, weights and all (outputs equal: tested)
            student.net.load_state_dict(self.start[1])
        self._quantize(student.net)
        slim.train_gated(o, student, self.recon, self._sampler(s.patch, s.batch, cfg.seed), run / "search" / "slim.ckpt",
                         cfg.device, cfg.quiet, min(s.patch, cfg.retrain.patch) * cfg.scale, cfg.seed, budget)
        student.cpu().eval()
        zero = student.sparsity()
        t = slim.threshold_for_budget(student, budget)
        with warnings.catch_warnings(record=True) as caught:  # a position cut to its floor: say so plainly
            warnings.simplefilter("always")
            kept = slim.kept_channels(student, t)
        for w in caught:
            self._log(f"warning: {w.message}")
        plain, spec = slim.extract(student, kept)
        spec = replace(spec, bits=o.bits, meta={"method": "slim", "budget_macs": int(budget),
                                                "macs": int(spec_macs(spec)), "threshold": t, "rho": o.rho,
                                                "gate_sparsity": zero, "bits": o.bits})
        info = {"threshold": t, "gate_sparsity_after_training": zero,
                "widths": dict(zip(self.space.names, slim.widths_of(kept))),
                "widest": dict(zip(self.space.names, self.space.max_config()))}
        self._log(f"GAN Slimming: {100 * zero:.0f}% of gates at zero after training; threshold {t:.4g} keeps "
                  f"{fmt_macs(spec.meta['macs'])} MACs (budget {fmt_macs(budget)})")
        if t == 0.0 and spec.meta["macs"] < 0.85 * budget:
            self._log(f"note: --rho {o.rho} alone pruned the network to {fmt_macs(spec.meta['macs'])}, well under the "
                      f"budget {fmt_macs(budget)}; a smaller --rho leaves the cut to the budget")
        init_state = {k: v.contiguous() for k, v in plain.state_dict().items()}
        if is_main():
            save_safetensors_atomic(init_state, init_path)
            atomic_write_text(run / "search" / "slim.json", json.dumps(info, indent=1))
            spec.save(spec_path)
            run.mark("search", {"macs": spec_macs(spec)})
        return spec, init_state

    def finetune(self, spec, init_state):
        from ..compress import student_to_retrain
        from ..distill.train import fit_pixels
        from ..export.student import save_student
        from ..quant.fake import strip_fake_quant

        cfg, run = self.cfg, self.run
        done, student = student_to_retrain(cfg, run, spec, init_state)
        if done is not None:
            return done
        self._quantize(student)
        r = cfg.retrain
        fit_pixels(student, self._sampler(r.patch, r.batch, cfg.seed + 11), r, run / "retrain.ckpt", "GS fine-tune",
                   cfg.device, cfg.quiet, self.perceptual)
        student = strip_fake_quant(student).cpu().eval()
        if is_main():
            save_student(student, spec, run / "student")
            run.mark("retrain")
        return student
