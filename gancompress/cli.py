"""The `gancompress` command. Parses arguments, calls the Python API, prints results.

Every problem the user can fix ends as one line `error: ...` and exit code 2 (no traceback);
an interrupt says how to resume. With `--json` (every command) stdout holds one JSON object, the
same dict the Python API returns (a run's metrics.json for compress); progress and messages go
to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cli_options import add_compress_options, add_trust_option, config_from_args  # noqa: F401 (config_from_args: for bench scripts)
from .errors import UserError


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
    from .api import compress

    cfg = config_from_args(args, demo)
    m = compress(cfg, force=args.force).metrics
    if m and not cfg.quiet:
        _print_summary(m)
        print(f"report: {cfg.out}/report.html (and report.md)")
    elif m:
        print(f"{cfg.out}/report.md")
    return m


def cmd_train_teacher(args):
    if args.task == "label2image":
        from .teachers.train_spade import train_spade_teacher

        out = train_spade_teacher(args.out, args.labels, args.photos, classes=args.classes, ngf=args.ngf or 16,
                                  hidden=args.hidden, steps=args.steps or 2400, size=args.size, crop=args.crop or 96,
                                  batch=args.batch or 4, lr=args.lr or 1e-4, views=args.views, seed=args.seed,
                                  device=args.device, palette=args.palette, quiet=args.quiet)
        print(f"teacher written to {out}; use it as --teacher spade:{out} --task label2image")
        return {"teacher": str(out), "teacher_ref": f"spade:{out}", "task": "label2image"}
    if args.task == "translate":
        from .teachers.train_translate import train_translate_teacher

        out = train_translate_teacher(args.out, args.domain_a, args.domain_b, args.paired, ngf=args.ngf or 32,
                                      n_blocks=args.n_blocks, steps=args.steps or 4000, size=args.size,
                                      crop=args.crop or 128, batch=args.batch or 1, lr=args.lr or 2e-4, seed=args.seed,
                                      device=args.device, quiet=args.quiet)
        print(f"teacher written to {out}; use it as --teacher cyclegan-resnet:{out} --task translate")
        return {"teacher": str(out), "teacher_ref": f"cyclegan-resnet:{out}", "task": "translate"}
    from .teachers.train import train_sr_teacher

    out = train_sr_teacher(args.out, scale=args.scale, data=args.data, nf=args.nf, nb=args.nb, gc=args.gc,
                           steps=args.steps or 2000, patch=args.patch, batch=args.batch or 16, lr=args.lr or 5e-4,
                           seed=args.seed, device=args.device, quiet=args.quiet)
    print(f"teacher written to {out}; use it as --teacher esrgan:{out}")
    return {"teacher": str(out), "teacher_ref": f"esrgan:{out}", "task": "sr"}


def cmd_profile(args):
    from .api import profile

    res = profile(args.model, size=args.size, repeats=args.repeats, scale=args.scale,
                  trust_teacher_code=args.trust_teacher_code)
    for k, v in res.items():
        if k == "macs" or k == "spec_macs":
            v = f"{v / 1e9:.3f} G"
        elif k == "latency_ms_torch":
            v = f"{v:.1f} ms"
        print(f"{k:>18}: {v}")
    return res


def cmd_eval(args):
    from .api import evaluate_run

    res = evaluate_run(args.run, args.eval_data, teacher=args.teacher, quiet=args.quiet, real_target=args.real_target,
                       trust_teacher_code=args.trust_teacher_code, eval_instances=args.eval_instances)
    keys = ("images", "student_psnr_y", "student_ssim_y", "teacher_psnr_y", "bicubic_psnr_y", "psnr_to_teacher")
    if "ssim_to_teacher" in res:
        keys = ("images", "psnr_to_teacher", "ssim_to_teacher", "fid_to_teacher", "kid_to_teacher",
                "student_fid_real", "teacher_fid_real", "fid_note")
    for k in keys:
        v = res.get(k)
        if v is not None:
            print(f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}")
    print(f"written: {res['written']}")
    return res


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
        if "int8_psnr_y" in q:
            print(f"PSNR-Y to the ground truth: int8 {q['int8_psnr_y']:.2f} dB, fp32 {q['fp32_psnr_y']:.2f}, teacher "
                  f"{q['teacher_psnr_y']:.2f}")
        if q.get("delta_fid_to_teacher") is not None:
            print(f"FID to teacher outputs: fp32 {q['fp32_fid_to_teacher']:.2f}, int8 {q['int8_fid_to_teacher']:.2f} "
                  f"(delta {q['delta_fid_to_teacher']:+.2f}) over {q['eval_images']} images")
        if q["float_ops"]:
            print("ops with no int8 form (kept float): " + ", ".join(f"{k} x{v}" for k, v in q["float_ops"].items()))
    return res


def cmd_upscale(args):
    from .api import upscale

    written = []
    for p in upscale(args.run, args.images, args.out, quiet=args.quiet, max_pixels=args.max_pixels,
                     palette=args.palette, instances=args.instances):
        print(p)
        written.append(str(p))
    return {"written": written}


def cmd_report(args):
    from .api import report

    res = report(args.runs, args.out)
    print(res["report"])
    return res


THREADS_HELP = "PyTorch intra-op threads (default: PyTorch's choice)"

EXAMPLES = {
    "demo": ["gancompress demo", "gancompress demo --task translate --out runs/demo_t"],
    "compress": ["gancompress compress --teacher srgan:srgan_x4.pth --eval-data Set5/ --budget 1/10 --out runs/x",
                 "gancompress compress --task translate --teacher cyclegan:latest_net_G.pth --train-data photos/ "
                 "--budget 1/5 --out runs/t",
                 "gancompress compress --method ofa --teacher srgan:srgan_x4.pth --budget 40ms --out runs/o",
                 "gancompress compress --method slim --bits 8 --teacher srgan:srgan_x4.pth --budget 1/10 --out runs/s"],
    "train-teacher": ["gancompress train-teacher --task sr --out my_teacher.safetensors",
                      "gancompress train-teacher --task translate --domain-a A/ --domain-b B/ --out G.safetensors",
                      "gancompress train-teacher --task label2image --out spade.safetensors"],
    "profile": ["gancompress profile runs/x", "gancompress profile srgan:srgan_x4.pth --size 128 --json"],
    "eval": ["gancompress eval runs/x --eval-data Set14/",
             "gancompress eval runs/t --eval-data testA/ --real-target testB/"],
    "export": ["gancompress export runs/x", "gancompress export runs/x --int8 --calib-data photos/"],
    "upscale": ["gancompress upscale runs/x a.png b.jpg --out up/"],
    "apply": ["gancompress apply runs/t a.jpg --out translated/",
              "gancompress apply runs/spade labels/street.png --out images/"],
    "report": ["gancompress report runs/x", "gancompress report runs/x runs/o runs/s --out compare.html"],
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="gancompress", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--version", action="version", version=f"gancompress {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compress the bundled x4 SR teacher (or, with --task translate, the "
                                     "bundled translation teacher; with --task label2image, the bundled SPADE teacher "
                                     "on the bundled photographs' label maps) on bundled photographs (about 3 min for "
                                     "SR, 6 for translate, 8 for label2image, on 2 CPU cores)")
    add_compress_options(d, demo=True)
    c = sub.add_parser("compress", help="compress a teacher into a student that fits a budget (MACs, latency or size)")
    add_compress_options(c)
    t = sub.add_parser("train-teacher", help="train a teacher: SR (ESRGAN-style RRDB net, L1), translate "
                                              "(CycleGAN, or pix2pix with --paired) or label2image (GauGAN/SPADE)")
    t.add_argument("--task", default="sr", choices=["sr", "translate", "label2image"],
                   help="sr (an RRDB super-resolution net), translate (a CycleGAN generator) or label2image (a SPADE "
                        "generator) (default sr)")
    t.add_argument("--out", required=True, help="output .safetensors file")
    t.add_argument("--steps", type=int, default=None, help="(default 2000 for sr, 4000 for translate, 2400 for "
                                                           "label2image)")
    t.add_argument("--batch", type=int, default=None, help="(default 16 for sr, 1 for translate, 4 for label2image)")
    t.add_argument("--lr", type=float, default=None, help="(default 5e-4 for sr, 2e-4 for translate, 1e-4 for "
                                                         "label2image's generator, 4x for its discriminator)")
    ts = t.add_argument_group("sr")
    ts.add_argument("--scale", type=int, default=4, help="upscaling factor: 2, 3 or 4 (default 4)")
    ts.add_argument("--data", default=None, help="HR image folder (default: the bundled training photographs)")
    ts.add_argument("--nf", type=int, default=32, help="RRDB feature width (default 32)")
    ts.add_argument("--nb", type=int, default=2, help="RRDB blocks (default 2)")
    ts.add_argument("--gc", type=int, default=16, help="RRDB growth channels (default 16)")
    ts.add_argument("--patch", type=int, default=32, help="LR training patch side (default 32)")
    tt = t.add_argument_group("translate")
    tt.add_argument("--domain-a", default=None, help="folder of input-domain images (default: the bundled "
                                                     "photographs, paired with their toon rendering)")
    tt.add_argument("--domain-b", default=None, help="folder of target-domain images")
    tt.add_argument("--paired", action="store_true",
                    help="pix2pix-style: pairs matched by file name, conditional D, GAN + 100 x L1")
    tt.add_argument("--ngf", type=int, default=None, help="generator width (CycleGAN's or GauGAN's ngf; default 32 "
                                                          "for translate, 16 for label2image)")
    tt.add_argument("--n-blocks", type=int, default=9, help="residual blocks (default 9)")
    tt.add_argument("--size", type=int, default=256, help="images are made SIZE x SIZE (default 256)")
    tt.add_argument("--crop", type=int, default=None, help="random training crop (default 128 for translate, 96 for "
                                                          "label2image)")
    tl = t.add_argument_group("label2image")
    tl.add_argument("--labels", default=None, help="folder of label maps (PNGs of class ids, or colours with "
                                                   "--palette); default: the bundled photographs' k-means maps")
    tl.add_argument("--photos", default=None, help="folder of the photographs the maps label, matched by file name")
    tl.add_argument("--classes", type=int, default=8, help="label classes (default 8, the bundled maps')")
    tl.add_argument("--hidden", type=int, default=32, help="SPADE hidden width (default 32: GauGAN's 2 x ngf)")
    tl.add_argument("--views", type=int, default=4, help="bundled maps: views per photograph (default 4)")
    tl.add_argument("--palette", default=None, help="colour -> class id file for colour-coded --labels")
    t.add_argument("--seed", type=int, default=0, help="random seed of initialization and sampling (default 0)")
    t.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    t.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    pr = sub.add_parser("profile", help="MACs, params and latency of a student or teacher")
    pr.add_argument("model", help="run dir, student.safetensors, spec.json, KIND:PATH teacher or 'demo'")
    pr.add_argument("--size", type=int, default=256, help="LR input side (default 256)")
    pr.add_argument("--scale", type=int, default=None, help="scale of a black-box teacher")
    pr.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported (default 5)")
    add_trust_option(pr)
    pr.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    e = sub.add_parser("eval", help="evaluate a finished run on an eval folder")
    e.add_argument("run", help="a finished run directory (compress --out)")
    e.add_argument("--eval-data", required=True,
                   help="SR: x{s}/HR+LR, HR/+LR/ or a folder of HR images; translate: held-out input-domain images; "
                        "label2image: held-out label maps (the run's --palette applies)")
    e.add_argument("--teacher", default=None, help="override the run's teacher")
    e.add_argument("--real-target", default=None, help="translate: real target-domain images for FID/KID")
    e.add_argument("--eval-instances", default=None,
                   help="label2image, a run trained with instance maps: the instance maps of --eval-data (same "
                        "names; default: the run's own when --eval-data is the run's)")
    add_trust_option(e)
    e.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    x = sub.add_parser("export", help="export a run's student to ONNX (checked against PyTorch)")
    x.add_argument("run", help="a finished run directory (compress --out)")
    x.add_argument("--onnx", default=None, help="output path (default RUN/student/student.onnx)")
    x.add_argument("--int8", action="store_true",
                   help="also write student_int8.onnx (ONNX Runtime static QDQ quantization) and measure it")
    x.add_argument("--calib-data", default=None,
                   help="folder of calibration images for --int8 (default: the run's training images)")
    x.add_argument("--int8-recipe", default=None, choices=["qlinear", "conv"],
                   help="qlinear: int8 conv + LeakyReLU + add kernels (QOperator; default for sr); conv: QDQ "
                        "around the convolutions only (default for translate)")
    add_trust_option(x)
    x.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    for name, what in (("upscale", "super-resolve images with a compressed SR student"),
                       ("apply", "run a compressed student on image files (SR, translation, or label maps "
                                 "for label2image)")):
        u = sub.add_parser(name, help=what)
        u.add_argument("run", help="a finished run directory, or its student/ folder")
        u.add_argument("images", nargs="+", help="image files")
        u.add_argument("--out", required=True, help="output folder")
        u.add_argument("--max-pixels", type=float, default=None,
                       help="refuse input images with more pixels than this (default: 268435456 = 16384^2 for SR, "
                            "streamed tile by tile; 9437184 = 3072^2 for translation and label2image, run whole)")
        u.add_argument("--palette", default=None,
                       help="label2image: JSON or text file mapping colours to class ids, for colour-coded maps "
                            "(default: the images are PNGs of class ids)")
        u.add_argument("--instances", default=None,
                       help="label2image, a student trained with instance maps: the folder of instance maps named "
                            "as the label maps")
        u.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    rp = sub.add_parser("report", help="redraw a run's report.html, or compare several runs in one page")
    rp.add_argument("runs", nargs="+", metavar="RUN", help="finished run directories (compress --out)")
    rp.add_argument("--out", default=None,
                    help="output HTML file (default: RUN/report.html for one run, compare.html for several)")
    for name, sp in sub.choices.items():
        sp.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' lines as written
        sp.epilog = "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name])
        sp.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout (the dict the Python API returns); messages go to stderr")
        if "--quiet" not in sp._option_string_actions:  # compress and demo have it among their run options
            sp.add_argument("-q", "--quiet", action="store_true",
                            help="no progress bars and no messages but warnings and errors")
        sp.add_argument("-v", "--verbose", action="store_true",
                        help="also print details (each stage's time, and whether it ran or was read back on resume); messages go to stderr")
    return p


def _run_json(fn, args) -> None:
    """fn(args) with everything it prints sent to stderr, then its result as JSON on stdout."""
    import contextlib

    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        res = fn(args)
    print(json.dumps(res if res is not None else {}, indent=1, default=str), file=out)


COMMANDS = {"demo": lambda a: cmd_compress(a, demo=True), "compress": cmd_compress,
            "train-teacher": cmd_train_teacher, "profile": cmd_profile, "eval": cmd_eval,
            "export": cmd_export, "upscale": cmd_upscale, "apply": cmd_upscale, "report": cmd_report}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .log import set_verbosity

    set_verbosity(args.verbose, args.quiet)
    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        if args.json:
            _run_json(COMMANDS[args.command], args)
        else:
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
