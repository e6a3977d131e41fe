#!/usr/bin/python3
"""safetensors_check.py: an independent safetensors reader (Python stdlib + numpy only), used by
tests/test_io.c to cross-check derf's C writer against the format spec.

Usage: /usr/bin/python3 tools/safetensors_check.py FILE
Prints one JSON object: {"header_len": H, "metadata": {...},
  "tensors": [{"name", "dtype", "shape", "data_offsets", "sum", "abs_sum", "first"}, ...]}
in data order. Exits 1 with a message on stderr if the file breaks the spec."""
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def fail(msg):
    print(f"safetensors_check: {msg}", file=sys.stderr)
    sys.exit(1)


def check(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail("file shorter than 8 bytes")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        fail(f"header length {hlen} larger than the file")
    header_bytes = raw[8:8 + hlen]
    if not header_bytes.startswith(b"{"):
        fail("header does not start with '{'")
    text = header_bytes.decode("utf-8")
    stripped = text.rstrip(" ")
    try:
        header = json.loads(stripped)
    except json.JSONDecodeError as e:
        fail(f"header is not JSON: {e}")
    if not isinstance(header, dict):
        fail("header is not an object")
    data = raw[8 + hlen:]
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        fail("__metadata__ is not a str->str map")
    out = []
    for name, info in header.items():
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            fail(f"{name}: unknown dtype {dtype}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            fail(f"{name}: bad shape {shape}")
        b, e = offs
        item = np.dtype(DTYPES[dtype]).itemsize
        numel = int(np.prod(shape, dtype=object)) if shape else 1
        if not (0 <= b <= e <= len(data)) or e - b != numel * item:
            fail(f"{name}: bad data_offsets {offs} for shape {shape} ({len(data)} data bytes)")
        arr = np.frombuffer(data[b:e], dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"))
        arr = arr.reshape(shape)
        a64 = arr.astype(np.float64)
        out.append({"name": name, "dtype": dtype, "shape": shape, "data_offsets": [b, e],
                    "sum": float(a64.sum()), "abs_sum": float(np.abs(a64).sum()),
                    "first": float(a64.flat[0]) if a64.size else None})
    out.sort(key=lambda t: t["data_offsets"])
    pos = 0
    for t in out:
        if t["data_offsets"][0] != pos:
            fail(f"{t['name']}: data does not follow the previous tensor (gap or overlap)")
        pos = t["data_offsets"][1]
    if pos != len(data):
        fail(f"{len(data) - pos} trailing bytes after the last tensor")
    return {"header_len": hlen, "metadata": meta, "tensors": out}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        result = check(sys.argv[1])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        fail(f"malformed header: {e!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
