"""Print the Markdown tables of BENCHMARKS.md from bench/out/*/results.jsonl (no re-running).

    python bench/results_table.py bench/out/srgan/results.jsonl
    python bench/results_table.py bench/out/translate/results.jsonl
"""

import json
import sys
from pathlib import Path

ORDER = {"1/5": 0, "1/10": 1, "1/20": 2}


def _minutes(r):
    st = r.get("stage_seconds") or {}
    return f"{sum(st.values()) / 60:.1f} ({st.get('search', 0) / 60:.1f} + {st.get('retrain', 0) / 60:.1f})"


def _budget(r) -> str:
    if r.get("budget_macs") is not None:
        return f"{r['budget_macs'] / 1e9:.2f} G"
    b = r.get("budget_detail") or {}
    pred = f", predicted {b['student']:.1f}, measured {b.get('student_measured', float('nan')):.1f}" if "student" in b else ""
    return f"{b.get('limit', float('nan')):.1f} {b.get('unit', '?')}{pred}"


def _f(v, fmt):
    return "n/a" if v is None else fmt.format(v)


def sr_table(rows):
    print("| budget | run | GMACs | params (M) | Set5 PSNR-Y | Set5 SSIM-Y | Set14 PSNR-Y | Set5 / Set14 PSNR to teacher "
          "| latency ratio torch | ratio ORT | minutes (search + retrain) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['budget']} ({_budget(r)}) | {r['run']} | {r['student_gmacs']:.2f} | "
              f"{r['params_m']:.3f} | {r['set5_psnr_y']:.2f} | {r['set5_ssim_y']:.4f} | {r['set14_psnr_y']:.2f} | "
              f"{r['set5_psnr_to_teacher']:.2f} / {r['set14_psnr_to_teacher']:.2f} | {r['latency_ratio_torch']:.3f} | "
              f"{r['latency_ratio_onnx']:.3f} | {_minutes(r)} |")


def translate_table(rows):
    print("| budget | run | GMACs | params (M) | PSNR to teacher | SSIM-Y to teacher | FID to teacher | KID to teacher "
          "| FID to real (student / teacher) | latency ratio torch | ratio ORT | minutes (search + retrain) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['budget']} ({r['teacher_macs'] / 1e9 / (10 if r['budget'] == '1/10' else 20 if r['budget'] == '1/20' else 5):.2f} G) "
              f"| {r['run']} | {r['student_macs'] / 1e9:.2f} | {r['student_params'] / 1e6:.3f} | "
              f"{r['psnr_to_teacher']:.2f} | {r['ssim_to_teacher']:.4f} | {_f(r['fid_to_teacher'], '{:.1f}')} | "
              f"{_f(r['kid_to_teacher'], '{:.4f}')} | {_f(r['student_fid_real'], '{:.1f}')} / "
              f"{_f(r['teacher_fid_real'], '{:.1f}')} | {r['latency_ratio_torch']:.3f} | "
              f"{_f(r['latency_ratio_onnx'], '{:.3f}')} | {_minutes(r)} |")


def main(path="bench/out/srgan/results.jsonl"):
    from gancompress.arch.spec import ArchSpec

    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    rows.sort(key=lambda r: (ORDER.get(r["budget"], 9), r["run"]))
    (translate_table if "psnr_to_teacher" in rows[0] and "set5_psnr_y" not in rows[0] else sr_table)(rows)
    print()
    for r in rows:
        if r["method"] != "uniform":  # a searched or pruned architecture
            print(f"{r['run']}:\n```\n{ArchSpec.from_dict(r['spec']).summary()}\n```")


if __name__ == "__main__":
    main(*sys.argv[1:])
