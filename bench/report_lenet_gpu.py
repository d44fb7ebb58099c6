#!/usr/bin/env python3
"""report_lenet_gpu — the LeNet-5 GPU comparison table from the logs bench/run_gpu.sh writes.

    python3 bench/report_lenet_gpu.py RESULTS_DIR

Reads lenet_step[_nograph]_b{64,256}.txt, lenet_epochs_b*.txt (examples/03_lenet_mnist_cuda) and
torch_step_b*.txt, torch_epochs[_defer]_b*.txt (bench/lenet_pytorch.py --device cuda [--defer-loss-read]) and
prints a markdown table: step time (median of 300 steps on one batch on the device), images/s of the last epoch, its test accuracy,
and peak device memory (metagrad: its caching allocator's peak of live bytes; PyTorch:
torch.cuda.max_memory_allocated), with the ratios metagrad / PyTorch (throughput: higher is better; memory:
lower is better). The issue's target: throughput >= 1.5x PyTorch eager at batch 64, and lower peak memory.
"""
import os
import sys


def fields(line):
    toks = line.split()
    if toks and toks[0] == "bench_step":  # a label, not a key
        toks = toks[1:]
    return {toks[i]: toks[i + 1] for i in range(0, len(toks) - 1, 2)}


def last_line(path, prefix):
    if not os.path.exists(path):
        return None
    found = None
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                found = fields(line.strip())
    return found


def num(d, key):
    try:
        return float(d[key]) if d and key in d else None
    except ValueError:
        return None


def fmt(v, spec="{:.3f}"):
    return "—" if v is None else spec.format(v)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main():
    res = sys.argv[1]
    data = open(os.path.join(res, "lenet-data.txt")).read().strip() if os.path.exists(
        os.path.join(res, "lenet-data.txt")) else "?"
    print("## LeNet-5 on the GPU: metagrad beside PyTorch eager\n")
    print(f"data: {data}\n")
    print("| batch | | step ms (median) | images/s (step) | epoch s | images/s (epoch) | test acc % | peak device MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for b in (64, 256):
        rows = {}
        for name, step_file, epoch_file in (
            ("metagrad", f"lenet_step_b{b}.txt", f"lenet_epochs_b{b}.txt"),
            ("metagrad, no CUDA graph", f"lenet_step_nograph_b{b}.txt", None),
            ("PyTorch", f"torch_step_b{b}.txt", f"torch_epochs_b{b}.txt"),
            ("PyTorch, loss read once per epoch", None, f"torch_epochs_defer_b{b}.txt"),
        ):
            s = last_line(os.path.join(res, step_file), "bench_step") if step_file else None
            e = last_line(os.path.join(res, epoch_file), "epoch ") if epoch_file else None
            ms = num(s, "median_ms")
            r = {
                "ms": ms,
                "ips_step": None if ms is None else b / (ms / 1e3),
                "epoch_s": num(e, "epoch_s"),
                "ips_epoch": num(e, "images_per_s"),
                "acc": num(e, "test_acc"),
                "mem": num(e, "peak_device_mib") if e else num(s, "peak_device_mib"),
            }
            rows[name] = r
            print(f"| {b} | {name} | {fmt(r['ms'])} | {fmt(r['ips_step'], '{:.0f}')} | {fmt(r['epoch_s'])} | "
                  f"{fmt(r['ips_epoch'], '{:.0f}')} | {fmt(r['acc'], '{:.2f}')} | {fmt(r['mem'], '{:.2f}')} |")
        m, t = rows["metagrad"], rows["PyTorch"]
        print(f"| {b} | **metagrad / PyTorch** | | **{fmt(ratio(m['ips_step'], t['ips_step']), '{:.2f}x')}** | | "
              f"**{fmt(ratio(m['ips_epoch'], t['ips_epoch']), '{:.2f}x')}** | | "
              f"**{fmt(ratio(m['mem'], t['mem']), '{:.2f}x')}** |")
        d = rows["PyTorch, loss read once per epoch"]
        print(f"| {b} | **metagrad / PyTorch (loss read once)** | | | | "
              f"**{fmt(ratio(m['ips_epoch'], d['ips_epoch']), '{:.2f}x')}** | | |")
    print("\nThroughput ratios above 1 and memory ratios below 1 favour metagrad.")


if __name__ == "__main__":
    main()
