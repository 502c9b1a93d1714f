"""Print the Markdown tables of BENCHMARKS.md from bench/out/*/results.jsonl (no re-running)."""

import json
import sys
from pathlib import Path


def main(path="bench/out/srgan/results.jsonl"):
    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    order = {"1/5": 0, "1/10": 1, "1/20": 2}
    rows.sort(key=lambda r: (order.get(r["budget"], 9), r["method"]))
    print("| budget | method | GMACs | params (M) | Set5 PSNR-Y | Set5 SSIM-Y | Set14 PSNR-Y | Set5 / Set14 PSNR to teacher "
          "| latency ratio torch | ratio ORT | minutes (search + retrain) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        st = r.get("stage_seconds") or {}
        mins = f"{sum(st.values()) / 60:.1f} ({st.get('search', 0) / 60:.1f} + {st.get('retrain', 0) / 60:.1f})"
        print(f"| {r['budget']} ({r['budget_macs'] / 1e9:.2f} G) | {r['method']} | {r['student_gmacs']:.2f} | "
              f"{r['params_m']:.3f} | {r['set5_psnr_y']:.2f} | {r['set5_ssim_y']:.4f} | {r['set14_psnr_y']:.2f} | "
              f"{r['set5_psnr_to_teacher']:.2f} / {r['set14_psnr_to_teacher']:.2f} | {r['latency_ratio_torch']:.3f} | "
              f"{r['latency_ratio_onnx']:.3f} | {mins} |")
    print()
    for r in rows:
        if r["method"] == "agd":
            from gancompress.arch.spec import ArchSpec

            print(f"AGD {r['budget']}:\n```\n{ArchSpec.from_dict(r['spec']).summary()}\n```")


if __name__ == "__main__":
    main(*sys.argv[1:])
