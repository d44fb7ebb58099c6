#!/usr/bin/env python3
"""PyTorch twin of bench_cuda's mlp_step cases (and its sgemm sizes), on the same GPU.

    python3 bench/mlp_step_pytorch.py --out bench/results/gpu-<date>/pytorch.json

One SGD step of an MLP 784-H-H-10 (ReLU, softmax cross-entropy) with batch B: forward (addmm), loss,
backward, six in-place updates, gradients zeroed. Cases, named like bench_cuda's:
    mlp_step/pytorch        B = 128,  H = 256
    mlp_step_large/pytorch  B = 1024, H = 2048
    sgemm_<n>/pytorch       torch.mm of n x n float32 (TF32 off), n = 1024 ... 8192
Timing as in bench_cuda: CUDA events around `inner` steps queued back to back, time per step; the median
over repetitions is reported. TF32 is switched off (torch's own default for matmul since 1.12), so both
libraries do FP32 GEMMs. The output is Google Benchmark-shaped JSON (context + benchmarks with name,
real_time, time_unit, counters) so bench/report_gpu.py reads it beside bench_cuda's.
"""
import argparse
import json
import platform
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON file to write (default: stdout only)")
    ap.add_argument("--repetitions", type=int, default=30)
    ap.add_argument("--no-sgemm", action="store_true", help="skip the sgemm cases")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        sys.exit("mlp_step_pytorch.py: PyTorch is not installed (pip install torch, or apt-get install python3-torch)")
    if not torch.cuda.is_available():
        sys.exit("mlp_step_pytorch.py: torch.cuda.is_available() is False (no GPU, or a CPU-only PyTorch build)")

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda:0")
    results = []

    def timed(step, inner, reps):
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        per_step = []
        for _ in range(reps):
            start.record()
            for _ in range(inner):
                step()
            stop.record()
            stop.synchronize()
            per_step.append(start.elapsed_time(stop) / inner)  # ms
        return per_step

    def mlp(name, batch, hidden, inner):
        g = torch.Generator(device="cpu").manual_seed(2)
        x = torch.randn(batch, 784, generator=g).to(dev)
        target = (torch.arange(batch) * 7 % 10).to(dev)
        params = [
            (torch.randn(784, hidden, generator=g) * 0.05),
            torch.zeros(hidden),
            (torch.randn(hidden, hidden, generator=g) * 0.06),
            torch.zeros(hidden),
            (torch.randn(hidden, 10, generator=g) * 0.06),
            torch.zeros(10),
        ]
        p = [t.to(dev).requires_grad_(True) for t in params]
        lr = 0.01
        last = {}

        def step():
            h1 = torch.relu(torch.addmm(p[1], x, p[0]))
            h2 = torch.relu(torch.addmm(p[3], h1, p[2]))
            z = torch.addmm(p[5], h2, p[4])
            loss = torch.nn.functional.cross_entropy(z, target)
            loss.backward()
            with torch.no_grad():
                for t in p:
                    t.sub_(t.grad, alpha=lr)
                    t.grad = None
            last["loss"] = loss

        ms = timed(step, inner, args.repetitions)
        med = statistics.median(ms)
        flop = 6.0 * batch * (784 * hidden + hidden * hidden + hidden * 10)
        results.append({
            "name": name, "run_name": name, "run_type": "iteration", "iterations": args.repetitions * inner,
            "real_time": med, "cpu_time": med, "time_unit": "ms",
            "ms/step": med, "ms/step_min": min(ms), "GFLOP/s": flop / (med * 1e-3) / 1e9,
            "loss": float(last["loss"].item()), "batch": batch,
        })

    def sgemm(n):
        g = torch.Generator(device="cpu").manual_seed(11)
        a = (torch.rand(n, n, generator=g) * 2 - 1).to(dev)
        b = (torch.rand(n, n, generator=g) * 2 - 1).to(dev)
        c = torch.empty(n, n, device=dev)
        inner = {1024: 20, 2048: 5, 4096: 2}.get(n, 1)
        ms = timed(lambda: torch.mm(a, b, out=c), inner, max(5, args.repetitions // 3))
        med = statistics.median(ms)
        name = f"sgemm_{n}/pytorch"
        results.append({
            "name": name, "run_name": name, "run_type": "iteration", "iterations": len(ms) * inner,
            "real_time": med, "cpu_time": med, "time_unit": "ms", "GFLOP/s": 2.0 * n ** 3 / (med * 1e-3) / 1e9,
        })

    mlp("mlp_step/pytorch", 128, 256, 20)
    mlp("mlp_step_large/pytorch", 1024, 2048, 5)
    if not args.no_sgemm:
        for n in (1024, 2048, 4096, 8192):
            sgemm(n)

    props = torch.cuda.get_device_properties(0)
    doc = {
        "context": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "host_name": platform.node(),
            "executable": "bench/mlp_step_pytorch.py",
            "torch": torch.__version__,
            "torch_cuda": str(torch.version.cuda),
            "gpu": props.name,
            "allow_tf32": False,
        },
        "benchmarks": results,
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    for r in results:
        extra = f"  {r['GFLOP/s']:.0f} GFLOP/s"
        if "loss" in r:
            extra += f"  loss {r['loss']:.4f}"
        print(f"{r['name']:<28} {r['real_time']:10.4f} ms{extra}")


if __name__ == "__main__":
    main()
