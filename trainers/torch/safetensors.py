"""A small safetensors reader and writer (the library is not installable everywhere).

The format: 8 bytes little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range (plus "__metadata__", string to string),
padded with spaces to 8 bytes, then the data.
"""
import json
import math
import struct

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20


def _raw(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save(path, tensors, metadata=None):
    """Writes {name: tensor} with the header's names sorted and the data in the same order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in NAMES:
            raise ValueError(f"safetensors: tensor {name} has dtype {t.dtype}, which this writer does not take")
        data = _raw(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns ({name: tensor}, metadata). Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} does not fit the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise ValueError(f"{path}: header is not JSON ({e})")
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    out = {}
    for name, e in header.items():
        dt = DTYPES.get(e.get("dtype"))
        if dt is None:
            raise ValueError(f"{path}: tensor {name} has dtype {e.get('dtype')}; supported: {', '.join(DTYPES)}")
        a, b = e["data_offsets"]
        size = torch.empty((), dtype=dt).element_size() * math.prod(e["shape"])
        if not (0 <= a <= b <= len(body)) or b - a != size:
            raise ValueError(f"{path}: tensor {name}: bytes {a}..{b} do not hold shape {e['shape']} {e['dtype']}")
        buf = bytearray(body[a:b])
        if not buf:
            t = torch.empty(0, dtype=dt)
        elif dt in (torch.float16, torch.bfloat16):
            t = torch.frombuffer(buf, dtype=torch.int16).view(dt)
        else:
            t = torch.frombuffer(buf, dtype=dt)
        out[name] = t.reshape(e["shape"])
    return out, meta
