#!/usr/bin/env python3
"""Writes a safetensors file from PyTorch tensors, for tests/io/test_safetensors.cpp.

    python3 make_torch_safetensors.py OUT_DIR

Creates OUT_DIR/model.safetensors (with the `safetensors` package when it is importable, else by hand
from tensor.numpy().tobytes() following the format's specification) and OUT_DIR/expected.txt, one line
per tensor: name <TAB> dtype <TAB> comma-separated shape <TAB> space-separated values (repr of each value
as a Python int or float, which round-trips exactly). Values are fixed, so the test is deterministic.
"""
import json
import os
import struct
import sys

import torch

DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def tensors():
    t = {}
    # PyTorch state_dict style keys: an nn.Sequential index, nested module names.
    t["0.weight"] = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7 - 0.5
    t["0.bias"] = torch.tensor([0.1, -0.2, 1e-30], dtype=torch.float32)
    t["features.3.weight"] = (torch.arange(8, dtype=torch.float64).reshape(2, 1, 2, 2) - 3.5) / 3
    t["features.3.bias"] = torch.tensor([1e300, -2.5], dtype=torch.float64)
    t["features.10.running_mean"] = torch.linspace(-1, 1, 5, dtype=torch.float32)
    t["embedding.index"] = torch.tensor([0, -3, 2**40, -(2**62), 7], dtype=torch.int64)
    t["counts"] = torch.tensor([[1, -2], [2**31 - 1, -(2**31)]], dtype=torch.int32)
    t["mask"] = torch.tensor([True, False, False, True])
    t["pixels"] = torch.tensor([[0, 17, 255], [128, 1, 2]], dtype=torch.uint8)
    t["num_batches_tracked"] = torch.tensor(42, dtype=torch.int64)  # rank 0, as BatchNorm stores it
    t["transposed"] = torch.arange(6, dtype=torch.float32).reshape(2, 3).t().contiguous()
    t["empty"] = torch.zeros(0, 3, dtype=torch.float32)
    return t


def write_by_hand(path, ts, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(ts):
        data = ts[name].contiguous().numpy().tobytes()
        header[name] = {
            "dtype": DTYPE_NAMES[ts[name].dtype],
            "shape": list(ts[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    ts = tensors()
    metadata = {"format": "pt", "producer": "make_torch_safetensors.py"}
    path = os.path.join(out, "model.safetensors")
    try:
        from safetensors.torch import save_file

        save_file(ts, path, metadata=metadata)
        how = "safetensors"
    except ImportError:
        write_by_hand(path, ts, metadata)
        how = "by hand"
    with open(os.path.join(out, "expected.txt"), "w") as f:
        for name, t in ts.items():
            values = [repr(v) for v in t.flatten().tolist()]
            if t.dtype == torch.bool:
                values = ["1" if v else "0" for v in t.flatten().tolist()]
            shape = ",".join(str(d) for d in t.shape)
            f.write(f"{name}\t{DTYPE_NAMES[t.dtype]}\t{shape}\t{' '.join(values)}\n")
    print(f"wrote {path} ({how}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
