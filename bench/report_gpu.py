#!/usr/bin/env python3
"""Summarises a GPU run: bench_cuda's Google Benchmark JSON (and PyTorch's, from mlp_step_pytorch.py) as a
table of ratios against each case's baseline and the issue's targets.

    python3 bench/report_gpu.py bench_cuda.json [pytorch.json] > summary.md

Ratios (rates are GB/s or GFLOP/s, higher is better):
    elementwise cases (tanh_chain, affine, triad, sum_of_squares): metagrad / cudaMemcpy     target >= 0.90
    sum:                                                      metagrad / cub            target >= 0.95
    sgemm_<n>, sgemm_<n>_tf32:                                 metagrad / cublas         target >= 0.97
    mlp_step, mlp_step_large (times, lower is better):       pytorch time / metagrad   target >= 1.00
Standard library only. Always exits 0 when the inputs parse: it reports, it does not judge the run.
"""
import json
import sys

TARGETS = {  # case prefix -> (baseline impl, target ratio)
    "tanh_chain": ("cudaMemcpy", 0.90),
    "affine": ("cudaMemcpy", 0.90),
    "triad": ("cudaMemcpy", 0.90),
    "sum_of_squares": ("cudaMemcpy", 0.90),
    "sum": ("cub", 0.95),
    "sgemm": ("cublas", 0.97),
    "mlp_step": ("pytorch", 1.00),
}


def to_ms(b):
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


def load(path):
    with open(path) as f:
        doc = json.load(f)
    rows, errors = {}, []
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        if b.get("error_occurred"):
            errors.append(f"{name}: {b.get('error_message', 'error')}")
            continue
        parts = name.split("/")
        if len(parts) < 2:
            continue
        rate = b.get("GB/s", b.get("GFLOP/s"))
        unit = "GB/s" if "GB/s" in b else ("GFLOP/s" if "GFLOP/s" in b else "")
        rows[(parts[0], parts[1])] = {"ms": to_ms(b), "rate": rate, "unit": unit}
    return doc.get("context", {}), rows, errors


def target_for(case):
    if case.startswith("sgemm"):
        return TARGETS["sgemm"]
    if case.startswith("mlp_step"):
        return TARGETS["mlp_step"]
    return TARGETS.get(case)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    ctx, rows, errors = load(sys.argv[1])
    torch_ctx = {}
    if len(sys.argv) == 3:
        try:
            torch_ctx, trows, terrors = load(sys.argv[2])
            rows.update(trows)
            errors += terrors
        except (OSError, ValueError) as e:
            errors.append(f"{sys.argv[2]}: {e}")

    print(f"GPU: {ctx.get('gpu', '?')} (sm_{ctx.get('gpu_sm', '?')}), CUDA runtime {ctx.get('cuda_runtime', '?')}, "
          f"driver {ctx.get('cuda_driver', '?')}, cuBLAS {ctx.get('cublas', '?')}; host {ctx.get('host_name', '?')}, "
          f"{ctx.get('date', '?')}")
    if torch_ctx:
        print(f"PyTorch {torch_ctx.get('torch', '?')} (CUDA {torch_ctx.get('torch_cuda', '?')}) on "
              f"{torch_ctx.get('gpu', '?')}, TF32 off")
    print()
    print("| case | metagrad | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    cases = sorted({c for (c, _) in rows}, key=lambda c: (not c.startswith(("tanh", "affine", "triad", "sum")), c))
    missed = 0
    for case in cases:
        tgt = target_for(case)
        if not tgt:
            continue
        base_impl, target = tgt
        mine, base = rows.get((case, "metagrad")), rows.get((case, base_impl))

        def show(r, impl):
            if not r:
                return f"{impl}: –"
            if case.startswith("mlp_step") or not r["rate"]:
                return f"{impl} {r['ms']:.3f} ms"
            return f"{impl} {r['rate']:.1f} {r['unit']} ({r['ms']:.3f} ms)"

        ratio = None
        if mine and base:
            if case.startswith("mlp_step"):
                ratio = base["ms"] / mine["ms"] if mine["ms"] > 0 else None
            elif mine["rate"] and base["rate"]:
                ratio = mine["rate"] / base["rate"]
        met = "–" if ratio is None else ("yes" if ratio >= target else "**no**")
        if ratio is not None and ratio < target:
            missed += 1
        print(f"| {case} | {show(mine, 'metagrad')} | {show(base, base_impl)} | "
              f"{'–' if ratio is None else f'{ratio:.3f}'} | {target:.2f} | {met} |")
    extra = [(c, i) for (c, i) in rows if i not in ("metagrad",) and target_for(c) and target_for(c)[0] != i]
    if extra:
        print()
        print("Other implementations measured:")
        for c, i in sorted(extra):
            r = rows[(c, i)]
            rate = f", {r['rate']:.1f} {r['unit']}" if r["rate"] else ""
            print(f"- {c}/{i}: {r['ms']:.3f} ms{rate}")
    print()
    print(f"{missed} target(s) missed." if missed else "Every measured target met.")
    if errors:
        print()
        print("Errors:")
        for e in errors:
            print(f"- {e}")


if __name__ == "__main__":
    main()
