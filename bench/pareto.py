"""The Pareto suite (issue 15, part 3): one command compresses a teacher with every method at
several budgets and seeds, exports int8, and writes a table and a latency-vs-quality plot.

Each run is `gancompress compress` in its own process (so its peak RSS is its own), followed by
`gancompress export RUN --int8`. Runs resume: a finished run is read back, not recomputed.
Methods: agd (MACs budget), agd-ms (the same budget in milliseconds of ONNX Runtime, `B:ms`),
agd-ms-int8 (agd-ms with `--search-int8`: int8 layers priced by their measured latency), ofa
(GAN Compression), slim (GAN Slimming), uniform (the baseline), prune (one-shot magnitude pruning),
agd-wide (agd with `--init wide`: its retrain starts from the strongest filters of the derived
network's distilled wide twin; not in the default set), ofa-ms (ofa with the budget in milliseconds:
the evolution keeps candidates under the latency table's prediction; not in the default set),
ofa-nofill (ofa with --no-spend-capacity: the evolution's winner as it is, not widened into the
budget band; GAN Compression before session 46; not in the default set), slim-fixed (slim with
--no-stop-at-budget: the paper's fixed-rho proximal step on every step; GAN Slimming before session
47, whose `slim` rows are that; not in the default set). Session 47's runs of today's `slim` were
made as `slim-stop` (--stop-at-budget, then an option) and are merged under `slim`.

    python bench/pareto.py srgan:../shared/teachers/srgan_x4.pth --budgets 1/5,1/10,1/20 --seeds 0,1,2 \\
        --out bench/out/pareto/srgan --benchmarks BENCHMARKS.md --name "SRGAN x4"
    python bench/pareto.py demo --quick --out bench/out/pareto/demo     # the suite's plumbing, < 15 min

Latency ratios are the student's over the teacher's in the same process (the evaluate stage);
the int8 ratio is the fp32 ratio times int8/fp32 measured by the export (two processes). Quality:
SR, PSNR-Y on the eval set (Set5 from ../shared by default); other tasks, PSNR to the teacher.
With several seeds a cell is "mean (spread max - min)". Every row records the machine (CPU name and
the int8/vector extensions that set its kernels' speed); with --benchmarks the table's rows are also
written beside the plot (bench/sheets/pareto_NAME.rows.jsonl, tracked), because run folders live in
git-ignored bench/out and do not outlive a machine: `--from-rows --rows FILE` merges them back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from gancompress.fileio import atomic_write_text

SHARED = Path(__file__).resolve().parents[2] / "shared"
METHODS = {"agd": ("agd", "", []), "agd-ms": ("agd", ":ms", []), "agd-ms-int8": ("agd", ":ms", ["--search-int8"]),
           "ofa": ("ofa", "", []), "slim": ("slim", "", []), "uniform": ("uniform", "", []), "prune": ("prune", "", []),
           "agd-wide": ("agd", "", ["--init", "wide"]), "ofa-ms": ("ofa", ":ms", []),
           "ofa-nofill": ("ofa", "", ["--no-spend-capacity"]), "slim-fixed": ("slim", "", ["--no-stop-at-budget"])}
# --quick: the suite's plumbing end to end in minutes (numbers not comparable to full runs)
QUICK = ["--warmup-steps", "10", "--search-steps", "20", "--retrain-steps", "60", "--ofa-steps", "40",
         "--population", "8", "--generations", "2", "--slim-steps", "30", "--prune-steps", "30", "--latency-repeats", "2",
         "--latency-size", "64", "--cells", "2", "--layers", "2"]


def run_child(argv: list[str], threads: int) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak RSS in MB) of `gancompress ARGV` in a child process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    code = "import sys; from gancompress.cli import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.time()
    p = subprocess.Popen([sys.executable, "-c", code, *argv], env=env)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, time.time() - t0, usage.ru_maxrss / 1024  # Linux: KiB


def one_run(a, method: str, budget: str, seed: int, extra: list[str]) -> dict | None:
    m, suffix, method_args = METHODS[method]
    name = f"{method}_{budget.replace('/', 'over')}_s{seed}"
    run = Path(a.out) / name
    rows = Path(a.out) / "rows.jsonl"
    if rows.is_file():
        for line in rows.read_text().splitlines():
            r = json.loads(line)
            if r["run"] == name:
                return r
    argv = ["compress", "--teacher", a.teacher, "--task", a.task, "--method", m, "--budget", budget + suffix,
            "--seed", str(seed), "--out", str(run), "--quiet", *(["--eval-data", a.eval] if a.eval else []),
            *(QUICK if a.quick else []), *method_args, *extra]
    rc, wall, rss = run_child(argv, a.threads)
    if rc != 0:
        print(f"pareto: {name} failed (exit {rc}); skipped", file=sys.stderr)
        return None
    rc8, wall8, rss8 = run_child(["export", str(run), "--int8", *(["--trust-teacher-code"] if a.trust else [])],
                                 a.threads)
    m_ = json.loads((run / "metrics.json").read_text())
    i8 = json.loads((run / "int8.json").read_text()) if rc8 == 0 and (run / "int8.json").is_file() else {}
    quality = m_["student_psnr_y"] if a.task == "sr" else m_["psnr_to_teacher"]
    r32 = m_.get("latency_ratio_onnx")
    row = {"run": name, "method": method, "budget": budget, "seed": seed,
           "gmacs": m_["student_macs"] / 1e9, "teacher_gmacs": m_["teacher_macs"] / 1e9 if m_.get("teacher_macs") else None,
           "params_m": m_["student_params"] / 1e6, "mb": m_["student_onnx_bytes"] / 2 ** 20,
           "int8_mb": i8.get("int8_bytes", 0) / 2 ** 20 or None,
           "ratio_ort": r32, "ratio_torch": m_["latency_ratio_torch"],
           "ratio_ort_int8": r32 * i8["latency_ratio_int8_fp32"] if r32 and i8.get("latency_ratio_int8_fp32") else None,
           "quality": quality, "teacher_quality": m_.get("teacher_psnr_y"), "to_teacher": m_.get("psnr_to_teacher"),
           "int8_delta_to_teacher": i8.get("delta_psnr_to_teacher"),
           "fid_to_teacher": m_.get("fid_to_teacher"),
           "minutes": sum((m_.get("stage_seconds") or {}).values()) / 60, "wall_minutes": (wall + wall8) / 60,
           "peak_rss_mb": max(rss, rss8), "quick": a.quick, "extra": extra, "machine": machine_name()}
    with open(rows, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def machine_name() -> str:
    """The CPU, and the extensions its kernels' speed depends on: ratios from two machines do not mix."""
    from gancompress.latency.table import machine_key

    k = machine_key("ort", 1)
    return f"{k['cpu']} ({', '.join(k['isa']) or 'no listed extensions'})"


def read_rows(paths: list[Path]) -> list[dict]:
    """Rows of every file in `paths` that exists, the first file's row winning for a run name."""
    rows: dict[str, dict] = {}
    for path in paths:
        if path.is_file():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                rows.setdefault(r["run"], r)
    return list(rows.values())


def cell(vals: list, fmt: str) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    mean = sum(vals) / len(vals)
    return fmt.format(mean) + (f" ({fmt.format(max(vals) - min(vals))})" if len(vals) > 1 else "")


def table(rows: list[dict], task: str) -> str:
    q = "Set5 PSNR-Y (dB)" if task == "sr" else "PSNR to teacher (dB)"
    out = [f"| method | budget | seeds | GMACs | params (M) | ONNX MB (int8) | ORT ratio fp32 | ORT ratio int8 "
           f"| torch ratio | {q} | PSNR to teacher (dB) | int8 change to teacher (dB) | minutes | peak RSS (MB) |",
           "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    for (method, budget), g in groups.items():
        def col(k, fmt, g=g):
            return cell([r[k] for r in g], fmt)
        out.append(f"| {method} | {budget} | {len(g)} | {col('gmacs', '{:.2f}')} | {col('params_m', '{:.3f}')} | "
                   f"{col('mb', '{:.2f}')} ({col('int8_mb', '{:.2f}')}) | {col('ratio_ort', '{:.3f}')} | "
                   f"{col('ratio_ort_int8', '{:.3f}')} | {col('ratio_torch', '{:.3f}')} | {col('quality', '{:.2f}')} | {col('to_teacher', '{:.2f}')} | "
                   f"{col('int8_delta_to_teacher', '{:+.2f}')} | {col('minutes', '{:.1f}')} | {col('peak_rss_mb', '{:.0f}')} |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path, task: str, title: str) -> None:
    """PSNR to the teacher against the ORT latency ratio (log x): filled markers fp32, hollow int8
    (the fp32 value plus the measured int8 change), and the Pareto front of all points. Fidelity, not
    SR PSNR-Y to the ground truth: small students can beat a GAN teacher there (demo: all 29.3 dB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    pts = []
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        rs = [r for r in rows if r["method"] == method and r["ratio_ort"] and r.get("to_teacher") is not None]
        colour = f"C{i}"
        ax.scatter([r["ratio_ort"] for r in rs], [r["to_teacher"] for r in rs], color=colour, label=method)
        q8 = [(r["ratio_ort_int8"], r["to_teacher"] + r["int8_delta_to_teacher"]) for r in rs
              if r["ratio_ort_int8"] and r["int8_delta_to_teacher"] is not None]
        if q8:
            ax.scatter(*zip(*q8), facecolors="none", edgecolors=colour)
        for r in rs:
            ax.annotate(r["budget"], (r["ratio_ort"], r["to_teacher"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        pts += [(r["ratio_ort"], r["to_teacher"]) for r in rs] + q8
    front, best = [], -float("inf")
    for x, y in sorted(pts):
        if y > best:
            front.append((x, y))
            best = y
    if len(front) > 1:
        ax.plot(*zip(*front), color="0.5", lw=1, ls="--", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("latency / teacher latency (ONNX Runtime; hollow: int8)")
    ax.set_ylabel("PSNR to teacher (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the section between this suite's markers in `path`."""
    start, end = f"<!-- pareto {name} start -->", f"<!-- pareto {name} end -->"
    doc = path.read_text() if path.is_file() else ""
    block = f"{start}\n{text}\n{end}"
    if start in doc and end in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, doc)  # BENCHMARKS.md: never left half-written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher")
    ap.add_argument("--task", default="sr", choices=["sr", "translate", "label2image"])
    ap.add_argument("--budgets", default="1/5,1/10,1/20")
    ap.add_argument("--methods", default="agd,agd-ms,ofa,slim,uniform,prune")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--eval", default=None, help="eval folder (SR default: Set5 in ../shared when present)")
    ap.add_argument("--threads", type=int, default=1, help="threads of each run (ONNX Runtime and PyTorch)")
    ap.add_argument("--quick", action="store_true", help="tiny step counts: checks the suite, not the methods")
    ap.add_argument("--trust-teacher-code", dest="trust", action="store_true")
    ap.add_argument("--out", default="bench/out/pareto/run")
    ap.add_argument("--benchmarks", default=None, help="write the table and plot into this Markdown file")
    ap.add_argument("--name", default=None, help="the section's name in --benchmarks (default: the teacher)")
    ap.add_argument("--from-rows", action="store_true",
                    help="run nothing: table and plot from the finished runs in OUT/rows.jsonl of --budgets and "
                         "--methods, every seed (to merge calls with different --budgets / --seeds)")
    ap.add_argument("--rows", action="append", default=[], metavar="FILE",
                    help="with --from-rows: rows of runs made elsewhere to merge (e.g. a tracked "
                         "bench/sheets/pareto_*.rows.jsonl); a run name already in OUT/rows.jsonl keeps OUT's row")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: extra compress options
    a = ap.parse_args(argv[:cut])
    if a.eval is None and a.task == "sr" and (SHARED / "data" / "sr" / "Set5").is_dir():
        a.eval = str(SHARED / "data" / "sr" / "Set5")
    unknown = [m for m in a.methods.split(",") if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    extra = argv[cut + 1:]
    if a.trust:
        extra.append("--trust-teacher-code")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    rows = []
    if a.from_rows:
        budgets, methods = a.budgets.split(","), a.methods.split(",")
        missing = [f for f in a.rows if not Path(f).is_file()]
        if missing:
            sys.exit(f"pareto: no rows file {missing[0]}; give the path of a rows.jsonl written by this script")
        rows = read_rows([Path(a.out) / "rows.jsonl", *map(Path, a.rows)])
        for r in rows:  # rows written before the column existed: read it from the run
            if "to_teacher" not in r and (Path(a.out) / r["run"] / "metrics.json").is_file():
                r["to_teacher"] = json.loads((Path(a.out) / r["run"] / "metrics.json").read_text()).get("psnr_to_teacher")
        rows = sorted((r for r in rows if r["budget"] in budgets and r["method"] in methods),
                      key=lambda r: (budgets.index(r["budget"]), methods.index(r["method"]), r["seed"]))
    else:
        for budget in a.budgets.split(","):
            for method in a.methods.split(","):
                for seed in (int(s) for s in a.seeds.split(",")):
                    r = one_run(a, method, budget, seed, extra)
                    if r:
                        rows.append(r)
                        print(json.dumps({k: r[k] for k in ("run", "gmacs", "ratio_ort", "quality", "minutes")}),
                              flush=True)
    if not rows:
        sys.exit("pareto: no run finished")
    name = a.name or a.teacher
    png = Path(a.out) / "pareto.png"
    if a.benchmarks:  # the plot the Markdown links to must be tracked: bench/out is git-ignored
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        png = Path(a.benchmarks).parent / "bench" / "sheets" / f"pareto_{slug}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, png, a.task, f"{name}: quality vs ONNX Runtime latency ({a.threads} thread(s))")
    t = rows[0]
    head = (f"Teacher {a.teacher}: {t['teacher_gmacs']:.2f} GMACs (FlopCounterMode, FLOPs / 2). "
            if t.get("teacher_gmacs") else f"Teacher {a.teacher}. ")
    if t.get("teacher_quality") is not None:
        head += f"Teacher quality: {t['teacher_quality']:.2f} dB. "
    machines = list(dict.fromkeys(r.get("machine") or "machine not recorded" for r in rows))
    head += (f"Machine: {machines[0]}. " if len(machines) == 1 else
             f"**Rows from {len(machines)} machines** ({'; '.join(machines)}): a ratio's mean mixes them. ")
    cmd = "python bench/pareto.py " + " ".join(sys.argv[1:])
    text = (f"{head}{'**--quick: plumbing check, not method numbers.** ' if a.quick else ''}"
            f"Ratios: student / teacher in the same process.\n\n    {cmd}\n\n{table(rows, a.task)}\n\n"
            f"![Pareto plot]({os.path.relpath(png, Path(a.benchmarks).parent) if a.benchmarks else png})\n")
    atomic_write_text(Path(a.out) / "pareto.md", text)
    print(text)
    if a.benchmarks:
        write_section(Path(a.benchmarks), name, text)
        # tracked: the runs behind the table
        atomic_write_text(png.with_suffix(".rows.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
