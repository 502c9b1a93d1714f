"""The Python API behind every CLI command (the CLI only parses arguments and prints)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from .arch.cost import MACS_RULE, count_params, latency_ms, measure_macs, spec_macs
from .errors import UserError
from .rundir import read_run_config


class CompressResult(Mapping):
    """What `compress` gives back: the run directory, its metrics (RUN/metrics.json), and the student
    and its ArchSpec, loaded from the run on first use. It also reads as the metrics mapping
    (`result["psnr_to_teacher"]`). Under torchrun, ranks other than 0 get an empty result."""

    def __init__(self, run_dir: Path, metrics: dict):
        self.run_dir = Path(run_dir)
        self.metrics = dict(metrics)
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            from .export.student import load_student

            if not self.metrics:
                raise UserError("this process is not rank 0 of a torchrun job: only rank 0 holds the student")
            self._loaded = load_student(self.run_dir)
        return self._loaded

    @property
    def student(self) -> torch.nn.Module:
        """The trained student (eval mode, CPU): takes and returns [0, 1] RGB, like the teacher."""
        return self._load()[0]

    @property
    def spec(self):
        """The student's architecture as data (arch.spec.ArchSpec; RUN/student/spec.json)."""
        return self._load()[1]

    def __getitem__(self, key):
        return self.metrics[key]

    def __iter__(self):
        return iter(self.metrics)

    def __len__(self):
        return len(self.metrics)

    def __repr__(self):
        keys = ("student_macs", "psnr_to_teacher", "student_psnr_y")
        shown = ", ".join(f"{k}={self.metrics[k]!r}" for k in keys if k in self.metrics)
        return f"CompressResult(run_dir={str(self.run_dir)!r}{', ' + shown if shown else ''})"


def compress(cfg=None, force: bool = False, *, teacher=None, train_data=None, eval_data=None,
             **options) -> CompressResult:
    """Run (or resume) a compression (pipeline.compress) and return its CompressResult.

    Either a `CompressConfig` (config.task_config gives one with the task's defaults) or keyword
    options named as the CLI's long options (`budget="1/10"`, `retrain_steps=2000`, `method="slim"`,
    `out="runs/x"`; the rest take the CLI's defaults). `teacher`: an `nn.Module` (teachers/in_memory.py:
    it takes and returns RGB in [0, 1], or in `teacher_range`), a file path or "KIND:PATH".
    `train_data` / `eval_data`: a folder, or images in memory (tensors, arrays, PIL images, a torch
    Dataset; data/in_memory.py). A module or in-memory images are named by a fingerprint in the run's
    config, so calling again with the same ones resumes, and changed ones are refused (or, with
    `force`, start over)."""
    import dataclasses

    from .data.in_memory import data_ref
    from .pipeline import compress as run_pipeline
    from .teachers.in_memory import teacher_ref

    if cfg is None:
        from .cli_options import config_from_options

        cfg = config_from_options(**options)
    elif options:
        raise UserError(f"give either a CompressConfig or keyword options, not both (got {', '.join(options)})")
    else:
        cfg = dataclasses.replace(cfg)  # the caller's config is left as it was
    if teacher is not None:
        cfg.teacher = teacher_ref(teacher)
    for field, data in (("train_data", train_data), ("eval_data", eval_data)):
        if data is not None:
            setattr(cfg, field, data_ref(data, field))
    return CompressResult(Path(cfg.out), run_pipeline(cfg, force))


def _is_student_ref(ref: str) -> bool:
    p = Path(ref)
    return (p.is_dir() and ((p / "student").is_dir() or (p / "student.safetensors").is_file())) or \
        p.suffix in (".json",) or p.name.endswith("student.safetensors")


def load_model(ref, scale: int | None = None, trust_teacher_code: bool = False):
    """A student (run dir, CompressResult, student folder, student.safetensors, spec.json), a teacher
    (KIND:PATH, 'demo') or any nn.Module. Returns (module, description dict)."""
    from .export.student import load_student
    from .teachers import load_teacher

    if isinstance(ref, torch.nn.Module):  # profiled as given, on a copy (eval mode must not touch it)
        import copy

        return copy.deepcopy(ref).eval(), {"kind": f"module ({type(ref).__name__})", "scale": scale}
    ref = str(getattr(ref, "run_dir", ref))  # a CompressResult
    if _is_student_ref(ref):
        p = Path(ref)
        if p.suffix == ".json" and not (p.with_name("student.safetensors")).is_file():
            from .arch.build import build_student
            from .arch.spec import ArchSpec

            spec = ArchSpec.load(p)  # a bare spec: profile the architecture (random weights)
            return build_student(spec).eval(), {"kind": "spec", "spec_macs": spec_macs(spec), "scale": spec.scale}
        model, spec = load_student(ref)
        return model, {"kind": "student", "spec_macs": spec_macs(spec), "scale": spec.scale}
    t = load_teacher(ref, scale=scale, trust_code=trust_teacher_code)
    return t, {"kind": f"teacher ({t.kind})", "scale": t.scale}


def profile(ref, size: int = 256, repeats: int = 5, scale: int | None = None,
            trust_teacher_code: bool = False) -> dict:
    """MACs (FlopCounterMode), params and latency of a student, a teacher or any nn.Module (`ref`:
    as load_model takes it)."""
    model, info = load_model(ref, scale, trust_teacher_code)
    x_hw = (size, size)
    name = type(ref).__name__ if isinstance(ref, torch.nn.Module) else str(getattr(ref, "run_dir", ref))
    c = int(getattr(model, "in_channels", 3))  # a label-map teacher reads its one-hot channels
    res = {"model": name, **info, "input": f"1x{c}x{size}x{size}", "macs_convention": MACS_RULE}
    if not info["kind"].startswith("teacher (onnx"):
        res["macs"] = measure_macs(model, x_hw, c)
    res["params"] = count_params(model) if isinstance(model, torch.nn.Module) else None
    res["latency_ms_torch"] = latency_ms(model, torch.rand(1, c, *x_hw), repeats=repeats)
    return res


def evaluate_run(run, eval_data, teacher=None, scale: int | None = None,
                 quiet: bool = False, real_target: str | None = None, trust_teacher_code: bool = False,
                 eval_instances: str | None = None) -> dict:
    """Evaluate a finished run's student (and its teacher) on another eval folder (or images in
    memory: data/in_memory.py). `run`: a run directory or a CompressResult; `teacher`: overrides the
    run's (KIND:PATH or an nn.Module; a run made from a module teacher needs it again in a new
    process). Translation runs: fidelity to the teacher, and FID/KID to `real_target` images if given."""
    from .data.in_memory import data_ref
    from .teachers.in_memory import is_module_ref, teacher_ref
    from .teachers.checks import load_task_teacher
    from .export.student import load_student

    run_p = Path(getattr(run, "run_dir", run))
    student, spec = load_student(run_p)
    cfg = read_run_config(run_p)
    eval_data = data_ref(eval_data, "eval_data")
    if teacher is not None:
        teacher = teacher_ref(teacher)
        if is_module_ref(teacher) and teacher == cfg.get("teacher"):  # the run's own module: keep its range
            teacher = None
    # an overriding --teacher comes without the run's weights and range
    t = load_task_teacher(spec.task, teacher or cfg.get("teacher", "demo"),
                          None if teacher else cfg.get("teacher_weights"),
                          None if teacher else cfg.get("teacher_range"),
                          scale=spec.scale if spec.task == "sr" else None, trust_code=trust_teacher_code,
                          classes=spec.spade.label_nc if spec.spade is not None else 0)
    instances = eval_instances or (cfg.get("eval_instances") if str(eval_data) == str(cfg.get("eval_data")) else None)
    if cfg.get("train_instances") and not instances:
        raise UserError(f"run {run_p} reads GauGAN's instance-edge channel: give the instance maps of {eval_data} "
                        "(--eval-instances DIR)")
    if instances and not cfg.get("train_instances"):
        raise UserError(f"run {run_p} was trained without instance maps; leave out --eval-instances")
    summary, rows = _quality(student, t, eval_data, spec.task, spec.scale, int(cfg.get("size", 256)), real_target,
                             cfg.get("inception"), quiet, cfg.get("palette"), instances)
    res = {"run": str(run_p), "eval_data": str(eval_data), **summary, "per_image": rows}
    out = run_p / f"eval_{Path(eval_data).name or 'data'}.json"
    from .arch.spec import atomic_write_text

    atomic_write_text(out, json.dumps(res, indent=1))
    res["written"] = str(out)
    return res


def _quality(student, teacher, eval_data, task, scale, size, real_target, inception, quiet, palette=None,
             instances=None):
    """(summary, per-image rows) of a student against a loaded teacher on an eval folder
    (label2image: `instances`, the folder of instance maps for the edge channel, if it reads one)."""
    from .evaluate import quality, translate_quality

    if task == "label2image":
        from .data.label_maps import load_label_folder

        data = load_label_folder(eval_data, teacher.in_channels - (1 if instances else 0), size, palette,
                                 hint="point --eval-data at a folder of held-out label maps", instances=instances)
        summary, rows, _ = translate_quality(student, teacher, data, None, inception, size, quiet)
    elif task == "translate":
        from .data.translate import load_square_folder
        from .evaluate import check_fid_request

        data = load_square_folder(eval_data, size, hint="point --eval-data at a folder of input-domain images")
        check_fid_request(len(data), real_target, inception)
        summary, rows, _ = translate_quality(student, teacher, data, real_target, inception, size, quiet)
    else:
        from .data.sr_sets import load_sr_eval_set

        data = load_sr_eval_set(eval_data, scale)
        summary, rows, _ = quality(student, teacher, data, scale, quiet)
    return summary, rows


def evaluate_student(student, teacher, eval_data, task: str = "sr", scale: int | None = None, teacher_range=None,
                     size: int = 256, real_target: str | None = None, quiet: bool = True,
                     trust_teacher_code: bool = False, palette: str | None = None,
                     instances: str | None = None) -> dict:
    """Any student against any teacher, outside a run: `student` an nn.Module (or a run / its
    CompressResult), `teacher` an nn.Module or "KIND:PATH", `eval_data` a folder or images in
    memory. Both take and return [0, 1] RGB (a module teacher in `teacher_range` if given). SR:
    `scale` defaults to the teacher's. Returns the summary and per-image rows (nothing written)."""
    from .data.in_memory import data_ref
    from .teachers.checks import load_task_teacher
    from .teachers.in_memory import teacher_ref

    if not isinstance(student, torch.nn.Module):
        student, _ = load_model(student)
    from .config import TASKS

    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; available: {', '.join(TASKS)}")
    t = load_task_teacher(task, teacher_ref(teacher), None, teacher_range, scale=scale if task == "sr" else None,
                          trust_code=trust_teacher_code, classes=int(getattr(student, "label_nc", 0) or 0))
    eval_data = data_ref(eval_data, "eval_data")
    summary, rows = _quality(student.eval(), t, eval_data, task, t.scale, size, real_target, None, quiet, palette,
                             instances)
    return {"eval_data": str(eval_data), **summary, "per_image": rows}


def export_run(run: str, out: str | None = None, int8: bool = False, calib_data: str | None = None,
               calib_count: int = 16, recipe: str | None = None, trust_teacher_code: bool = False) -> dict:
    """(Re-)export a run's student to ONNX, checked against PyTorch; with `int8`, also an int8 QDQ
    model calibrated on `calib_data` (default: the run's training images), evaluated against the
    fp32 model on the run's evaluation images (written to RUN/int8.json)."""
    import contextlib

    from .export.int8_eval import evaluate_int8
    from .export.student import export_onnx, load_student

    from .rundir import CONFIG, locked_run

    model, spec = load_student(run)
    path = Path(out) if out else Path(run) / "student" / "student.onnx"
    is_run = Path(run).is_dir() and (Path(run) / CONFIG).is_file()
    with locked_run(run) if is_run else contextlib.nullcontext():  # not beside a live compress of that run
        if is_run:  # what an export killed before this one left behind
            from .fileio import remove_stale_temp_files

            remove_stale_temp_files(Path(run))
        diff = export_onnx(model, path)
        res = {"onnx": str(path), "max_abs_diff": diff, "bytes": path.stat().st_size}
        if int8:
            res["int8"] = evaluate_int8(Path(run), spec, path, calib_data, calib_count, recipe, trust_teacher_code)
            if is_run and (Path(run) / "metrics.json").is_file():  # the report gains its fp32-vs-int8 images
                from .report.html_report import write_html_report

                res["report"] = str(write_html_report(run))
    return res


def report(runs, out=None) -> dict:
    """Redraw RUN/report.html from what a finished run holds; with several runs, one page that
    compares them (a table and a shared Pareto plot) written to `out` (default compare.html)."""
    from .report.html_report import write_comparison, write_html_report

    runs = [Path(getattr(r, "run_dir", r)) for r in ([runs] if isinstance(runs, (str, Path)) else runs)]
    if not runs:
        raise UserError("give at least one run directory")
    for r in runs:
        if not r.is_dir():
            raise UserError(f"run directory {r} not found; give the --out folder of a finished compress")
    if len(runs) == 1:
        return {"report": str(write_html_report(runs[0], out)), "runs": [str(runs[0])]}
    return {"report": str(write_comparison(runs, out or "compare.html")), "runs": [str(r) for r in runs]}


def upscale(run: str, images: list[str], out: str, quiet: bool = False, max_pixels: float | None = None,
            tile: int = 256, overlap: int = 16, palette: str | None = None, instances: str | None = None) -> list[str]:
    """Run a compressed student on image files (super-resolve, or translate); writes PNGs into `out`.
    SR runs tile by tile and streams the output into the PNG (memory bounded by the input, kept as
    8 bits); inputs above `max_pixels` (default streaming.SR_MAX_PIXELS) are refused. Translation
    students run on the whole image (instance norm): inputs above `max_pixels` (default
    streaming.TRANSLATE_MAX_PIXELS) are refused; any size is edge-padded to a multiple of 4 and
    cropped back. label2image students read label maps (PNGs of class ids, or colours with
    `palette`), edge-padded to a multiple of 32, and write `NAME_image.png`; one trained with
    instance maps also reads the instance map of each label map's name from `instances`."""
    import math

    from tqdm.auto import tqdm

    from .export.student import load_student
    from .fileio import atomic_writer
    from .streaming import (SR_MAX_PIXELS, TRANSLATE_MAX_PIXELS, image_to_png, load_image_u8, sr_to_png,
                            to_float)

    if not images:
        raise UserError("no input images given; pass one or more image files")
    model, spec = load_student(run)
    if max_pixels is None:
        max_pixels = SR_MAX_PIXELS if spec.task == "sr" else TRANSLATE_MAX_PIXELS
    if not (isinstance(max_pixels, (int, float)) and math.isfinite(max_pixels) and max_pixels >= 1):
        raise UserError(f"--max-pixels must be a positive number of pixels, got {max_pixels!r}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder")
    for img in images:  # every input is checked before any output is written
        if not Path(img).is_file():
            raise UserError(f"input image {img} not found")
    note = (" (a translation student runs on the whole image)" if spec.task == "translate" else "")
    written = []
    if spec.task == "label2image":
        return _apply_label2image(model, spec, images, out_dir, max_pixels, palette, quiet,
                                  _apply_instances(run, instances))
    for img in tqdm(images, desc="upscale", disable=quiet):
        p = Path(img)
        x = load_image_u8(p, max_pixels, note)
        if spec.task == "translate":
            target = out_dir / f"{p.stem}_translated.png"
            y = _translate_whole(model, to_float(x)[0])
            with atomic_writer(target, 0o644) as f:
                image_to_png(y, f)
        else:
            target = out_dir / f"{p.stem}_x{spec.scale}.png"
            with atomic_writer(target, 0o644) as f:
                sr_to_png(model, x, spec.scale, f, tile, overlap)
        written.append(str(target))
    return written


def _apply_instances(run, instances):
    """The instance-map folder a label2image student needs (None when it reads no edge channel)."""
    from .rundir import read_run_config

    try:
        cfg = read_run_config(run)
    except (OSError, ValueError):
        cfg = {}
    trained_with = bool(cfg.get("train_instances")) if cfg else bool(instances)  # a bare student/ folder: trust the caller
    if trained_with and not instances:
        raise UserError(f"the student of {run} reads GauGAN's instance-edge channel: give the folder of instance "
                        "maps named as the label maps (--instances DIR)")
    if instances and not trained_with:
        raise UserError(f"the student of {run} was trained without instance maps; leave out --instances")
    if instances and not Path(instances).is_dir():
        raise UserError(f"--instances {instances} is not a folder; give the folder of instance-map PNGs")
    return instances


@torch.no_grad()
def _apply_label2image(model, spec, images, out_dir: Path, max_pixels: float, palette, quiet,
                       instances=None) -> list[str]:
    """Label maps -> images; every map is read and checked before anything is written."""
    from tqdm.auto import tqdm

    from .data.label_maps import load_label_map, load_palette, one_hot, paired_instance_map
    from .fileio import atomic_writer
    from .streaming import image_to_png

    classes = spec.spade.label_nc - (1 if instances else 0)
    pal = load_palette(palette) if palette else None
    maps = []
    for img in images:
        ids = load_label_map(img, classes, pal)
        if ids.numel() > max_pixels:
            raise UserError(f"label map {img} has {ids.numel()} pixels, over --max-pixels {max_pixels:.0f}; a "
                            "label2image student runs on the whole map: downscale it or raise --max-pixels")
        maps.append((Path(img), ids, paired_instance_map(instances, img, ids) if instances else None))
    written = []
    for p, ids, inst in tqdm(maps, desc="apply", disable=quiet):
        h, w = ids.shape
        x = one_hot(ids, classes, inst)[None]
        ph, pw = -h % 32, -w % 32
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        y = model(x)[0, :, :h, :w].clamp(0, 1)
        target = out_dir / f"{p.stem}_image.png"
        with atomic_writer(target, 0o644) as f:
            image_to_png(y, f)
        written.append(str(target))
    return written


@torch.no_grad()
def _translate_whole(model, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % 4, -w % 4
    xp = torch.nn.functional.pad(x[None], (0, pw, 0, ph), mode="replicate") if ph or pw else x[None]
    return model(xp)[0, :, :h, :w].clamp(0, 1)


apply_student = upscale  # the task-neutral name
