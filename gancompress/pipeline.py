"""`compress`: teacher in, student out, as resumable stages in a run directory, the same for
every method (methods/registry.py):

  targets   teacher outputs on the training images (the only supervision: distillation)
  search    the method's: AGD search + derive; GAN Compression's once-for-all supernet + evolution;
            GAN Slimming's joint distillation + pruning; the uniform width at the budget; ...
  retrain   the method's: train the derived student, from the search's weights unless --init scratch
            (or --init wide: its distilled wide twin's strongest filters, methods/wide_start.py)
  evaluate  quality on held-out images, MACs/params/size, latency vs the teacher
  int8      an int8 ONNX export, measured, when the student was trained for int8
  report    report.md with the table and side-by-side crops

`Stages` keeps what each stage shares: skip it when done (RUN/stages.json), time it (summed over
resumptions), save its results atomically, and mark it done last.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .arch.build import build_student, load_sliced
from .arch.cost import fmt_macs, macs_convention, measure_macs, spec_macs
from .arch.spec import ArchSpec
from .config import CompressConfig, validate_options
from .distributed import barrier, finish_distributed, init_distributed, is_main
from .errors import UserError
from .fileio import atomic_write_text, load_run_tensors, save_safetensors_atomic
from .methods.base import RunContext
from .methods.registry import get_method
from .rundir import RunDir


def compress(cfg: CompressConfig, force: bool = False) -> dict:
    """Run (or resume) every stage; returns the metrics dict (also in RUN/metrics.json).

    Under torchrun every rank trains; rank 0 alone writes and evaluates, the others return {}."""
    from .rundir import run_locks_scope

    try:
        with run_locks_scope():  # the run directory's lock (taken by RunDir) lasts the whole run
            return _compress(cfg, force)
    finally:
        finish_distributed()


def finished_metrics(cfg: CompressConfig) -> dict | None:
    """The metrics of a finished run made with this same config, else None."""
    from .rundir import same_config

    out = Path(cfg.out)
    try:
        stages = json.loads((out / "stages.json").read_text())
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if "report" in stages and same_config(old, cfg.to_dict()) and (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    return None


def _finished(ctx: RunContext) -> dict | None:
    """finished_metrics, saying so: a finished run with the same config is left untouched."""
    finished = finished_metrics(ctx.cfg)
    if finished is not None:
        ctx.log(f"{ctx.cfg.out} is already complete; nothing to do (report: {Path(ctx.cfg.out) / 'report.md'})")
    return finished


def _compress(cfg: CompressConfig, force: bool) -> dict:
    validate_options(cfg)
    ctx = RunContext(cfg, None, 0)
    finished = _finished(ctx)
    if finished is not None:
        return finished
    cfg.device = init_distributed(cfg.device)
    torch.manual_seed(cfg.seed)
    method = get_method(cfg.method)
    ctx = prepare(cfg, method)
    if ctx.cfg is not cfg:  # the run's config holds the narrowed trunk or the slimmed network: check again
        finished = _finished(ctx)
        if finished is not None:
            return finished
    check_budget(ctx, method)
    evalset = prepare_data(ctx, method)  # everything validated before anything is written
    ctx.run = open_run_dir(ctx, force)
    ctx.log(f"run directory: {ctx.run.path}  (teacher {ctx.teacher.kind}, {fmt_macs(ctx.t_macs or 0)} MACs; "
            f"budget {ctx.budget} {ctx.budget.where()})")
    stages = Stages(ctx.run)
    ctx.names, ctx.pairs = stages("targets", lambda: _targets(ctx))
    barrier()
    spec, init_state = stages("search", lambda: search_stage(ctx, method))
    student = stages("retrain", lambda: retrain_stage(ctx, method, spec, init_state))
    if not is_main():
        return {}
    metrics = stages("evaluate", lambda: evaluate_stage(ctx, spec, student, evalset))
    from .arch.cost import has_int8_layers

    if (spec.bits == 8 or has_int8_layers(spec) or cfg.retrain.qat) and "int8" not in metrics:  # trained for int8
        metrics["int8"] = stages("int8", lambda: int8_export(ctx.run, cfg.trust_teacher_code))
        if ctx.budget.unit == "ms" and has_int8_layers(spec) and metrics["int8"].get("int8_onnx"):
            # the latency budget priced the mixed-precision model: measure that one as well
            metrics["budget"]["student_measured_int8"] = _measured_at_budget(ctx.budget, None,
                                                                              metrics["int8"]["int8_onnx"])
    metrics["stage_seconds"] = stages.seconds
    atomic_write_text(ctx.run / "metrics.json", json.dumps(metrics, indent=1))
    from .report.run_report import write_run_report

    write_run_report(ctx.run, metrics)
    from .report.html_report import write_html_report

    write_html_report(ctx.run.path)
    ctx.run.mark("report")
    ctx.log(f"report: {ctx.run / 'report.md'} and {ctx.run / 'report.html'}")
    return metrics


def prepare(cfg: CompressConfig, method) -> RunContext:
    """The teacher, loaded and checked, the budget, and the config fitted to it by the method."""
    from .evaluate import teacher_macs
    from .teachers.checks import check_teacher_accepts_any_size, check_teacher_task, load_task_teacher

    # scale=None: zoo teachers read it from the checkpoint, black boxes from a probe run
    edges = 1 if cfg.train_instances else 0  # GauGAN's instance-edge channel, after the classes
    teacher = load_task_teacher(cfg.task, cfg.teacher, cfg.teacher_weights, cfg.teacher_range, cfg.device,
                                trust_code=cfg.trust_teacher_code, classes=cfg.classes, edges=edges)
    check_teacher_task(cfg, teacher)
    if teacher.scale != cfg.scale:
        raise UserError(f"teacher {cfg.teacher} is x{teacher.scale} but --scale is {cfg.scale}; "
                        f"use --scale {teacher.scale}")
    if cfg.task == "label2image" and not cfg.classes:  # the run's config records the classes it read
        from dataclasses import replace

        if teacher.in_channels - edges < 2:
            raise UserError(f"teacher {cfg.teacher} reads {teacher.in_channels} channels, too few for classes and an "
                            "instance-edge channel; leave out --train-instances / --eval-instances")
        cfg = replace(cfg, classes=teacher.in_channels - edges)
    check_teacher_accepts_any_size(teacher, (cfg.size, cfg.size) if cfg.task != "sr" else (17, 23))
    from .budget import budget_for_run

    t_macs = teacher_macs(teacher)
    ctx = RunContext(cfg, teacher, None, t_macs)
    ctx.budget = budget_for_run(cfg, teacher, t_macs, log=ctx.log)
    ctx.cfg = method.fit_to_budget(ctx)
    return ctx


def check_budget(ctx: RunContext, method) -> None:
    b = ctx.budget
    if b.teacher_cost is not None and b.limit >= b.teacher_cost:
        raise UserError(f"budget {b} is not below the teacher's {b.fmt(b.teacher_cost)} {b.where()}: "
                        "there is nothing to compress; give a smaller --budget (e.g. 1/10)")
    method.check_budget(ctx)


def prepare_data(ctx: RunContext, method):
    """Load the evaluation and training images and the optional perceptual network, and let the
    method check what needs the teacher; returns the evaluation set."""
    from .data.run_data import eval_set, training_images

    cfg = ctx.cfg
    evalset = eval_set(cfg)
    if cfg.task != "sr":
        from .evaluate import check_fid_request

        check_fid_request(len(evalset), cfg.real_target, cfg.inception)
    ctx.images = training_images(cfg)
    method.preflight(ctx)
    if cfg.perceptual_weights:
        from .distill.perceptual import PerceptualLoss

        ctx.perceptual = PerceptualLoss(cfg.perceptual_weights, "style" if cfg.task == "translate" else "sr"
                                        ).to(cfg.device)
    return evalset


def open_run_dir(ctx: RunContext, force: bool) -> RunDir:
    """Every rank checks the run directory read-only (so a refusal stops all ranks alike), then
    rank 0 creates it and the others open it once it is there."""
    d = ctx.cfg.to_dict()
    RunDir(ctx.cfg.out, d, force=force, create=False)
    barrier()
    run = RunDir(ctx.cfg.out, d, force=force) if is_main() else None
    barrier()
    return run or RunDir(ctx.cfg.out, d, create=False)


def _targets(ctx: RunContext):
    from .data.run_data import teacher_targets

    return teacher_targets(ctx.cfg, ctx.run, ctx.teacher, ctx.images, log=ctx.log)


class Stages:
    """Runs the stages of one run: wall seconds per stage, summed over resumptions (kept in
    RUN/stage_seconds.json)."""

    def __init__(self, run: RunDir):
        self.run = run
        self.path = run / "stage_seconds.json"
        self.seconds = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, name, fn):
        from .log import debug

        t = time.perf_counter()
        was_done = self.run.done(name)
        out = fn()
        dt = time.perf_counter() - t
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        debug(f"stage {name}: {'read back from the run directory' if was_done else 'ran'} in {dt:.1f} s "
              f"({self.seconds[name]:.1f} s over all resumptions)")
        if is_main():
            atomic_write_text(self.path, json.dumps(self.seconds, indent=1))
        return out


def search_stage(ctx: RunContext, method):
    """(spec, starting weights or None): read back when done, else the method's search, saved."""
    run = ctx.run
    spec_path, init_path = run / "search" / "spec.json", run / "search" / "init.safetensors"
    if run.done("search"):
        return ArchSpec.load(spec_path), (load_run_tensors(init_path) if init_path.is_file() else None)
    (run / "search").mkdir(exist_ok=True)
    spec, init_state = method.search(ctx)
    if is_main():
        if init_state is not None:
            save_safetensors_atomic(init_state, init_path)
        spec.save(spec_path)
        info = {"macs": spec_macs(spec), **({"config": spec.meta["config"]} if "config" in spec.meta else {})}
        run.mark("search", info)
    return spec, init_state


def retrain_stage(ctx: RunContext, method, spec, init_state):
    """The trained student: read back when done, else built from the spec (starting from the
    search's weights unless --init scratch), trained by the method, saved."""
    from .export.student import load_student, save_student
    from .quant.fake import strip_fake_quant

    run = ctx.run
    if run.done("retrain"):
        return load_student(run / "student")[0]
    student = build_student(spec)
    if ctx.cfg.init == "wide":
        from .methods.wide_start import wide_start

        student.load_state_dict(wide_start(ctx, spec))
    elif init_state is not None and ctx.cfg.init == "supernet":
        load_sliced(student, init_state)
    if ctx.cfg.retrain.qat:  # before the method's own fake quantization (a layer is quantized once)
        from .quant.fake import enable_export_qat

        ctx.log(f"quantization-aware retraining: {len(enable_export_qat(student, ctx.cfg.task))} convs int8")
    student = strip_fake_quant(method.retrain(ctx, spec, student)).cpu().eval()
    if is_main():
        save_student(student, spec, run / "student")
        run.mark("retrain")
    return student


def evaluate_stage(ctx: RunContext, spec, student, evalset):
    """Quality, cost and latency of the student against the teacher (RUN/metrics.json), and crops."""
    from .evaluate import file_size, quality, speed, teacher_onnx_path, translate_quality
    from .export.student import export_onnx

    cfg, run = ctx.cfg, ctx.run
    if run.done("evaluate") and (run / "metrics.json").is_file():
        return json.loads((run / "metrics.json").read_text())
    student = student.cpu().eval()
    teacher = ctx.teacher.cpu()
    onnx_path = run / "student" / "student.onnx"
    onnx_err = export_onnx(student, onnx_path)  # (re)written and checked against PyTorch
    t_onnx = teacher_onnx_path(teacher, run.path)
    if cfg.task != "sr":
        q, per_image, kept = translate_quality(student, teacher, evalset, cfg.real_target, cfg.inception,
                                               cfg.size, cfg.quiet)
    else:
        q, per_image, kept = quality(student, teacher, evalset, cfg.scale, cfg.quiet)
    sp = speed(student, teacher, cfg.latency_size, cfg.latency_repeats, onnx_path, t_onnx)
    metrics = {
        "task": cfg.task, "method": cfg.method, "teacher": cfg.teacher, "scale": cfg.scale,
        "macs_convention": macs_convention(cfg.task), **_cost_metrics(ctx, spec, student, onnx_path),
        "teacher_params": teacher.num_params(), "student_params": sum(p.numel() for p in student.parameters()),
        "student_file_bytes": file_size(run / "student" / "student.safetensors"),
        "student_onnx_bytes": file_size(onnx_path),
        "teacher_file_bytes": file_size(teacher.source) if teacher.source else None,
        "onnx_max_abs_diff": onnx_err,
        "eval_data": cfg.eval_data or ("bundled eval label maps (k-means maps of 13 views of each held-out photograph)"
                                       if cfg.task == "label2image" else "bundled eval photographs"), **q, **sp,
        "per_image": per_image, "spec": spec.to_dict(),
    }
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=1))
    run.mark("evaluate")
    _save_crops(run, kept, cfg.scale)
    return metrics


def _cost_metrics(ctx: RunContext, spec, student, onnx_path) -> dict:
    """MACs, and the spec against the budget in its unit (a latency budget: predicted by the
    table and measured whole on the same runtime at the budget's size)."""
    from .arch.cost import has_int8_layers, spec_cost

    b = ctx.budget
    s_macs = spec_macs(spec)
    if b.unit == "MACs":
        cost = spec_cost(spec, spec.meta.get("int8_cost", 1.0), b.hw) if has_int8_layers(spec) else spec_macs(spec, b.hw)
    else:
        cost = b.cost(spec)
    out = {"budget": {**b.to_dict(), "student": float(cost)}, "teacher_macs": ctx.t_macs, "student_macs": int(s_macs),
           "student_macs_flopcounter": int(measure_macs(student)), "within_budget": bool(cost <= b.limit),
           "compression_macs": (ctx.t_macs / s_macs) if ctx.t_macs else None}
    if b.unit == "MACs":
        out["budget_macs"] = int(b.limit)
        if has_int8_layers(spec):
            out.update(student_cost=float(cost), int8_cost=spec.meta.get("int8_cost"))
    if b.unit == "ms":
        out["budget"]["student_measured"] = _measured_at_budget(b, student, onnx_path, spec.task)
    return out


def _measured_at_budget(budget, student, onnx_path, task: str = "sr") -> float:
    """The student's latency measured whole as the table measures its pieces (the exported ONNX
    file for ort; for ort-int8 that file quantized as `export --int8` does, which the int8 stage
    then writes calibrated: the scales do not change the time)."""
    x = torch.rand(1, 3, *budget.hw)
    t = budget.table
    from .latency.runtimes import ORT_RUNTIMES, int8_onnx_bytes

    if t.runtime == "ort-int8" and student is not None:
        return t.time_whole(int8_onnx_bytes(student.eval(), x, task), x)
    return t.time_whole(Path(onnx_path).read_bytes() if t.runtime in ORT_RUNTIMES else student, x)


def _save_crops(run, kept, scale):
    """The images furthest from the teacher, worst first (`worst1_NAME.png`, ...): the outputs, the
    |student - teacher| heat map and both zoomed x3 where they differ most. The input of each
    crop is kept too (crops/inputs/), for the report's fp32-vs-int8 comparison."""
    from .data.images import save_image
    from .report.images import HEAT_MAX, error_heatmap, pick_crop, side_by_side, worst_window, zoom

    (run / "crops").mkdir(exist_ok=True)
    for rank, item in enumerate(kept, 1):
        labels = None
        if scale == 1:  # translation and label2image: whole images
            name, x, t_out, s_out = item
            if x.shape[0] != 3:  # a one-hot label map: drawn in colour, its ids kept as a PNG
                from .data.label_maps import colourize

                labels, x = x, colourize(x)
            panels, lr_in = [("input", x), ("teacher", t_out), ("student", s_out)], x
        else:
            name, lr, hr, bic, t_out, s_out = item
            top, left, ch, cw = pick_crop(hr, 40 * scale, seed=0)
            top, left, ch, cw = (top // scale * scale, left // scale * scale, ch // scale * scale, cw // scale * scale)
            win = (..., slice(top, top + ch), slice(left, left + cw))
            t_out, s_out = t_out[win], s_out[win]
            panels = [("bicubic", bic[win]), ("teacher", t_out), ("student", s_out), ("HR", hr[win])]
            lr_in = lr[..., top // scale:(top + ch) // scale, left // scale:(left + cw) // scale]
        win = worst_window(s_out, t_out, max(8, min(s_out.shape[-2:]) // 4))
        panels += [(f"|student - teacher| (white >= {HEAT_MAX})", error_heatmap(s_out, t_out)),
                   ("teacher, zoom x3", zoom(t_out, win)), ("student, zoom x3", zoom(s_out, win))]
        stem = f"worst{rank}_{Path(name).stem}"
        side_by_side(panels, run / "crops" / f"{stem}.png")
        if labels is not None:
            from .data.label_maps import save_label_map

            edges = labels.shape[0] > 2 and bool((labels[:-1].sum(0) == 1).all())  # + GauGAN's edge channel
            save_label_map(labels[:-1] if edges else labels, run / "crops" / "inputs" / f"{stem}.png")
            if edges:
                save_image(labels[-1:].expand(3, -1, -1), run / "crops" / "inputs" / f"{stem}.edges.png")
        else:
            save_image(lr_in, run / "crops" / "inputs" / f"{stem}.png")


def int8_export(run: RunDir, trust_teacher_code: bool = False) -> dict:
    """The run's student as int8 ONNX (ORT static QDQ; weights already on the int8 grid after QAT),
    with its quality delta and latency ratio vs fp32 (also in RUN/int8.json)."""
    from .export.int8_eval import evaluate_int8
    from .export.student import export_onnx, load_student
    from .fileio import remove_stale_temp_files

    remove_stale_temp_files(run.path)  # what an export killed before this one left behind
    model, spec = load_student(run.path)
    path = run / "student" / "student.onnx"
    export_onnx(model, path)
    return evaluate_int8(run.path, spec, path, None, 16, None, trust_teacher_code)


# ---- the method's view of a config, for callers outside a run ------------------------------------
def adapt_trunk_width(cfg: CompressConfig, budget) -> CompressConfig:
    """The config a run at `budget` (a Budget, or MACs) would use (trunk narrowed, frame floor),
    for the config's method."""
    from .budget import Budget

    if not isinstance(budget, Budget):
        budget = Budget.macs(budget)
    return get_method(cfg.method).fit_to_budget(RunContext(cfg, None, budget))


def space_floor(cfg: CompressConfig, nf: int) -> float | None:
    """The MACs of the smallest network of the config's method at trunk width nf."""
    spec = get_method(cfg.method).smallest_network(cfg, nf)
    return None if spec is None else spec_macs(spec)
