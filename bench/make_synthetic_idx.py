#!/usr/bin/env python3
"""make_synthetic_idx — MNIST-format IDX files (60000 training and 10000 test 28x28 uint8 images, labels 0..9)
for timing LeNet where no MNIST-family data set is installed (bench/run_gpu.sh uses it then).

    python3 bench/make_synthetic_idx.py DIR [--seed S]

Each class is a fixed random 28x28 template; an image is its class's template plus noise, so a model can
learn the task (its accuracy says nothing about MNIST). Standard library only; writes uncompressed files
train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.
"""
import argparse
import os
import random
import struct


def write_split(directory, prefix, n, templates, rng):
    labels = bytes(rng.randrange(10) for _ in range(n))
    pixels = bytearray(n * 784)
    for i, c in enumerate(labels):
        t = templates[c]
        base = i * 784
        for j in range(784):
            v = t[j] + rng.randrange(-60, 61)
            pixels[base + j] = 0 if v < 0 else 255 if v > 255 else v
    with open(os.path.join(directory, prefix + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        f.write(pixels)
    with open(os.path.join(directory, prefix + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n))
        f.write(labels)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = random.Random(a.seed)
    templates = [[rng.randrange(256) for _ in range(784)] for _ in range(10)]
    write_split(a.dir, "train", 60000, templates, rng)
    write_split(a.dir, "t10k", 10000, templates, rng)
    print(f"wrote a synthetic MNIST-format set (60000 + 10000 images) to {a.dir}")


if __name__ == "__main__":
    main()
