"""Loading a run's teacher and checking it fits the run: the task it was made for, a known value
range, any input size. One place for compress, eval and int8 export, so they load the same model
the same way."""

from __future__ import annotations

import torch

from ..errors import UserError


def _is_black_box(ref: str) -> bool:
    from . import KIND_ALIASES, ZOO

    kind = ref.split(":", 1)[0].lower()
    return KIND_ALIASES.get(kind, kind) not in ZOO and not ref.startswith("demo")


def load_task_teacher(task: str, ref: str, weights: str | None = None, value_range=None,
                      device: str = "cpu", scale: int | None = None, trust_code: bool = False, classes: int = 0,
                      edges: int = 0):
    """The teacher of a run: 'demo' means the bundled teacher of the task, and a black-box
    translation teacher keeps the image size (scale 1, no probe). One place for compress, eval
    and int8 export, so they always load the same model the same way."""
    from . import load_teacher

    ref = f"demo-{task}" if (ref == "demo" and task != "sr") else ref
    if task != "sr" and _is_black_box(ref):
        scale = 1
    teacher = load_teacher(ref, weights=weights, device=device, scale=scale,
                           value_range=tuple(value_range) if value_range else None, trust_code=trust_code)
    if task == "label2image" and teacher.kind_name in ZOO_KINDS_WITH_LABELS and edges and not classes:
        classes = teacher.in_channels - edges
    if task == "label2image" and classes:
        if teacher.kind_name in ZOO_KINDS_WITH_LABELS and teacher.in_channels != classes + edges:
            extra = " + 1 instance-edge channel (--train-instances)" if edges else ""
            hint = (" (one more than the classes: GauGAN's instance-edge channel; give --train-instances and "
                    "--eval-instances)" if teacher.in_channels == classes + 1 and not edges else "")
            raise UserError(f"teacher {ref} reads {teacher.in_channels} label channels but --classes is "
                            f"{classes}{extra}{hint}; leave --classes out (the teacher's) or give the teacher "
                            f"trained on {classes} classes")
        teacher.in_channels, teacher.map_input = classes + edges, False  # the maps are its input as they are
    return teacher


ZOO_KINDS_WITH_LABELS = ("spade",)


def check_teacher_task(cfg, teacher) -> None:
    """A zoo teacher knows its task; a black-box translation teacher must state its value range."""
    from . import ZOO

    kind = teacher.kind_name
    task = ZOO[kind].task if kind in ZOO else None
    if task and task != cfg.task:
        what = {"translate": "translation", "sr": "super-resolution", "label2image": "label map -> image"}[task]
        raise UserError(f"teacher {cfg.teacher} is a {what} generator ({kind}); use --task {task}")
    if cfg.task == "label2image" and task is None and not cfg.classes:
        raise UserError(f"the number of label classes of teacher {cfg.teacher} is unknown (a black box): pass "
                        "--classes N (its one-hot input channels)")
    if cfg.task != "sr" and task is None and not cfg.teacher_range:
        raise UserError(f"the value range of teacher {cfg.teacher} is unknown (a black box): pass "
                        "--teacher-range -1,1 (CycleGAN / pix2pix exports, tanh output) or --teacher-range 0,1")


def check_teacher_accepts_any_size(teacher, hw=(17, 23)) -> None:
    """Distillation runs the teacher on whole images of any size: refuse a fixed-shape export.
    (Translation teachers are probed at the run's --size only: their strided layers need it.)"""
    from ..arch.cost import module_device

    x = torch.rand(1, int(getattr(teacher, "in_channels", 3)), *hw, device=module_device(teacher))
    try:
        with torch.no_grad():
            y = teacher(x)
    except Exception as e:  # noqa: BLE001 - whatever the user's model raises
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"teacher {teacher.source} does not run on a {hw[0]}x{hw[1]} input ({first}); it "
                        "must accept any height and width: re-export it with dynamic H and W") from None
    s = teacher.scale
    if tuple(y.shape[-2:]) != (hw[0] * s, hw[1] * s):
        raise UserError(f"teacher {teacher.source} maps {hw[0]}x{hw[1]} to {tuple(y.shape[-2:])}, not x{s}; "
                        "it must accept any input size")
