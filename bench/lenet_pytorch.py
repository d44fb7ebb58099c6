#!/usr/bin/env python3
"""lenet_pytorch — the PyTorch (python3-torch) baseline of the LeNet-5 benchmark.

Same model, data handling, hyperparameters, flags and output as bench/lenet_torch.cpp (the LibTorch
baseline) and examples/03_lenet_mnist.cpp (metagrad); bench/compare_lenet.sh runs all three.

    python3 bench/lenet_pytorch.py [--data DIR] [--epochs 5] [--batch-size 64] [--optimizer sgd|adam]
        [--lr X] [--threads N] [--seed S] [--max-batches N] [--mean 0.2860] [--std 0.3530] [--device cpu|cuda]
    python3 bench/lenet_pytorch.py --bench-step N [--batch-size 64] [--device cuda]

--device cuda trains on the GPU as a PyTorch user would: the model and optimiser on the device, each batch
gathered and normalised on the host and copied with .to(device); peak_device_mib is
torch.cuda.max_memory_allocated over the epoch (tensors only, like metagrad's figure). --bench-step N times N
training steps on one random batch already on the device after 20 warm-up steps and prints
    bench_step device D steps N batch B threads T median_ms M mean_ms A peak_rss_mib R peak_device_mib P
as examples/03_lenet_mnist.cpp does; each step ends with loss.item(), as the training loop's does.
--defer-loss-read sums the loss on the device and reads it once per epoch, as metagrad's Trainer does on a GPU
(the usual loop reads loss.item() every step, which waits for the GPU each time).

Model: conv 6@5x5 pad 2, relu, max-pool 2, conv 16@5x5, relu, max-pool 2, flatten, fc 120, relu, fc 84,
relu, fc 10; softmax cross-entropy. SGD uses momentum 0.9 (lr 0.01 by default), Adam lr 1e-3 by default.
Images stay uint8 in memory; each batch is gathered, scaled by 1/255 and normalised with (x - mean) / std.
The training set is reshuffled every epoch by torch.randperm on a generator seeded with --seed.

Each epoch prints one line:
    epoch E train_loss L test_acc A epoch_s S images_per_s I peak_rss_mib R
train_loss is the mean batch loss, test_acc the test accuracy in percent, epoch_s the training pass alone
(the test pass is not counted), images_per_s = trained images / epoch_s, peak_rss_mib the process's peak
resident set so far (resource.getrusage ru_maxrss). Reads MNIST-format IDX files, gzipped or not, with
the standard library; needs torch only. Debian's python3-torch installs into /usr/bin/python3's path.
"""
import argparse
import gzip
import os
import resource
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def read_idx(directory, name, ndim):
    """Reads an IDX file (big-endian magic 0x000008<ndim>, ndim uint32 sizes, uint8 data) as a uint8 tensor."""
    for path in (os.path.join(directory, name), os.path.join(directory, name + ".gz")):
        if os.path.exists(path):
            break
    else:
        sys.exit(f"lenet_pytorch: no {name}[.gz] in {directory}")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 + 4 * ndim or raw[:4] != bytes([0, 0, 8, ndim]):
        sys.exit(f"lenet_pytorch: {path} is not a uint8 IDX file of rank {ndim} (bad magic at offset 0)")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    n = 1
    for d in dims:
        n *= d
    body = raw[4 + 4 * ndim :]
    if len(body) < n:
        sys.exit(f"lenet_pytorch: {path} truncated at offset {4 + 4 * ndim + len(body)} (wanted {n} data bytes)")
    return torch.frombuffer(bytearray(body[:n]), dtype=torch.uint8).reshape(dims)


def load_split(directory, prefix):
    images = read_idx(directory, prefix + "-images-idx3-ubyte", 3)
    labels = read_idx(directory, prefix + "-labels-idx1-ubyte", 1)
    if images.shape[0] != labels.shape[0] or tuple(images.shape[1:]) != (28, 28):
        sys.exit(f"lenet_pytorch: {directory}/{prefix}: images {tuple(images.shape)} but {labels.shape[0]} labels")
    return images.unsqueeze(1), labels.long()


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        # Registered in the order of lenet_torch.cpp, so one seed draws the same initial weights in both.
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def make_optimizer(args, net):
    if args.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    return torch.optim.Adam(net.parameters(), lr=args.lr)


def normalise(u8, args):
    return u8.float().div_(255.0).sub_(args.mean).div_(args.std)


def peak_device_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0


def test_accuracy(net, images, labels, args, device):
    net.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, images.shape[0], args.test_batch_size):
            logits = net(normalise(images[b : b + args.test_batch_size], args).to(device))
            correct += int((logits.argmax(1) == labels[b : b + args.test_batch_size].to(device)).sum())
    net.train()
    return 100.0 * correct / images.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--test-batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=None, help="default: 0.01 for sgd, 1e-3 for adam")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batches", type=int, default=-1, help="negative: the whole epoch")
    p.add_argument("--mean", type=float, default=0.2860)
    p.add_argument("--std", type=float, default=0.3530)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--bench-step", type=int, default=0, help="time N steps on random data instead of training")
    p.add_argument("--defer-loss-read", action="store_true",
                   help="sum the loss on the device and read it once per epoch (no loss.item() per step)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this torch has no usable CUDA device")
    if args.lr is None:
        args.lr = 0.01 if args.optimizer == "sgd" else 1e-3
    if args.epochs < 0 or args.batch_size < 1 or args.test_batch_size < 1 or args.threads < 1 or args.std <= 0:
        p.error("epochs, batch sizes, threads and std must be positive")

    # Inter-op threads first: torch refuses to change their number once any parallel work has started.
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.bench_step > 0:
        return bench_step(args, device)
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    net = LeNet().to(device)
    opt = make_optimizer(args, net)
    gen = torch.Generator().manual_seed(args.seed)
    n = train_x.shape[0]
    print(f"lenet_pytorch data {args.data} train {n} test {test_x.shape[0]} optimizer {args.optimizer} "
          f"lr {args.lr:g} batch {args.batch_size} threads {args.threads} seed {args.seed} torch {torch.__version__}",
          flush=True)
    for epoch in range(1, args.epochs + 1):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum, batches, images = 0.0, 0, 0
        loss_dev = torch.zeros((), dtype=torch.float64, device=device)
        for b in range(0, n, args.batch_size):
            if 0 <= args.max_batches <= batches:
                break
            idx = order[b : b + args.batch_size]
            x = normalise(train_x.index_select(0, idx), args).to(device)
            y = train_y.index_select(0, idx).to(device)
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            if args.defer_loss_read:
                loss_dev += loss.detach()
            else:
                loss_sum += loss.item()
            batches += 1
            images += idx.shape[0]
        if args.defer_loss_read:
            loss_sum = loss_dev.item()  # waits for the last step, inside the timed pass
        epoch_s = time.perf_counter() - t0
        peak_dev = peak_device_mib(device)
        acc = test_accuracy(net, test_x, test_y, args, device)
        print(f"epoch {epoch} train_loss {loss_sum / max(batches, 1):.4f} test_acc {acc:.2f} epoch_s {epoch_s:.3f} "
              f"images_per_s {images / epoch_s:.1f} peak_rss_mib {peak_rss_mib():.1f} peak_device_mib {peak_dev:.2f}",
              flush=True)


def bench_step(args, device):
    net = LeNet().to(device)
    opt = make_optimizer(args, net)
    x = torch.randn(args.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(20):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    ms = []
    for _ in range(args.bench_step):
        t0 = time.perf_counter()
        step()
        ms.append(1e3 * (time.perf_counter() - t0))
    ms.sort()
    median = ms[len(ms) // 2] if len(ms) % 2 else 0.5 * (ms[len(ms) // 2 - 1] + ms[len(ms) // 2])
    print(f"bench_step device {device} steps {args.bench_step} batch {args.batch_size} threads {args.threads} "
          f"median_ms {median:.4f} mean_ms {sum(ms) / len(ms):.4f} peak_rss_mib {peak_rss_mib():.1f} "
          f"peak_device_mib {peak_device_mib(device):.2f} torch {torch.__version__}", flush=True)


if __name__ == "__main__":
    main()
