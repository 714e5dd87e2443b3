#!/usr/bin/env python3
"""Hugging Face GPT-2 folders without `transformers`: make them, run them, check another program against them.

The engine imports and exports model folders in the Hugging Face layout
(config.json, model.safetensors or model-0000N-of-0000M.safetensors with
model.safetensors.index.json, tokenizer files). This script is the independent
side of those tests, written only against PyTorch and the safetensors format:

  random-folder OUT ...      writes a random-init GPT-2 folder as save_pretrained
                             would (any dtype, sharded or not), streaming tensor by
                             tensor, so the 124M shape needs little memory
  logits FOLDER --ids IDS.json --out OUT.safetensors
                             runs Hugging Face GPT-2 semantics in float64 on the
                             folder's weights and writes "ids" (I32 [B,T]),
                             "logits" (F32 [B,T,V]) and, for
                             GPT2ForSequenceClassification folders, "scores" (F32 [B,T])
  compare FOLDER --ids IDS.json --logits GO.safetensors [--tol 1e-4]
                             computes as `logits` and compares with another
                             program's "logits" (and "scores" when both have them);
                             exits 1 when the max abs difference exceeds tol
  selftest                   checks this script's forward against torch.nn building
                             blocks (nn.MultiheadAttention, nn.LayerNorm, nn.Linear,
                             nn.GELU) in float64, and the safetensors reader/writer

IDS.json is a JSON list of equal-length lists of token ids (a batch).
Needs only PyTorch (Debian's python3-torch); run with /usr/bin/python3.
How the committed fixture hf/testdata/tiny-f16 was made: hf/testdata/README.md.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile

import torch

# safetensors dtype name <-> torch dtype. BF16 goes through torch.bfloat16.
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
CLI_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
TORCH_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

if sys.byteorder != "little":
    sys.exit("hf_gpt2.py: safetensors data is little-endian; this script only runs on little-endian machines")


def die(msg):
    """Stops with one message for the user (exit status 2)."""
    print("hf_gpt2.py: " + msg, file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- safetensors

def tensor_bytes(t):
    """The raw little-endian bytes of t (any dtype of DTYPES)."""
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)  # numpy has no bfloat16; the bits are what we write
    return t.numpy().tobytes()


def header_bytes(header):
    """The 8-byte length and the JSON header, padded with spaces to 8-byte alignment as the safetensors library does."""
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h


class SafetensorsWriter:
    """Writes one .safetensors file whose tensor list is known up front, one tensor at a time.

    specs: [(name, dtype_name, shape)] in the order the data is written. The header
    lists the names sorted, with __metadata__ {"format": "pt"}, like save_pretrained.
    """

    def __init__(self, path, specs, metadata=None):
        self.f = open(path, "wb")
        self.expect = []
        header, off = {"__metadata__": metadata or {"format": "pt"}}, 0
        entries = {}
        for name, dt, shape in specs:
            n = _itemsize(dt) * math.prod(shape)
            entries[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
            self.expect.append((name, dt, tuple(shape)))
            off += n
        for name in sorted(entries):
            header[name] = entries[name]
        self.f.write(header_bytes(header))

    def write(self, name, t):
        want = self.expect.pop(0)
        got = (name, DTYPE_NAMES[t.dtype], tuple(t.shape))
        if got != want:
            raise AssertionError(f"safetensors writer: got {got}, header says {want}")
        self.f.write(tensor_bytes(t))

    def close(self):
        if self.expect:
            raise AssertionError(f"safetensors writer: {len(self.expect)} tensors not written")
        self.f.close()


def _itemsize(dt):
    return torch.empty((), dtype=DTYPES[dt]).element_size()


def write_safetensors(path, tensors, metadata=None):
    """Writes [(name, tensor)] to path in one go."""
    w = SafetensorsWriter(path, [(n, DTYPE_NAMES[t.dtype], tuple(t.shape)) for n, t in tensors], metadata)
    for n, t in tensors:
        w.write(n, t)
    w.close()


def read_header(path):
    """Returns (header dict without __metadata__, metadata, offset of the data)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            die(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 << 20:
            die(f"{path}: header length {n} is not plausible; is this a safetensors file?")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            die(f"{path}: header is not JSON ({e})")
    meta = header.pop("__metadata__", {})
    return header, meta, 8 + n


def read_safetensors(path, names=None):
    """Returns {name: tensor} in each tensor's stored dtype, reading only the tensors asked for."""
    header, _, base = read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, e in header.items():
            if names is not None and name not in names:
                continue
            if e["dtype"] not in DTYPES:
                die(f"{path}: tensor {name} has dtype {e['dtype']}; this script reads {', '.join(DTYPES)}")
            a, b = e["data_offsets"]
            f.seek(base + a)
            data = bytearray(f.read(b - a))
            dt = DTYPES[e["dtype"]]
            if len(data) != _itemsize(e["dtype"]) * math.prod(e["shape"]):
                die(f"{path}: tensor {name} has {len(data)} bytes for shape {e['shape']} {e['dtype']}")
            if dt in (torch.float16, torch.bfloat16):
                t = torch.frombuffer(data, dtype=torch.int16).view(dt) if data else torch.empty(0, dtype=dt)
            else:
                t = torch.frombuffer(data, dtype=dt) if data else torch.empty(0, dtype=dt)
            out[name] = t.reshape(e["shape"])
    return out


# ---------------------------------------------------------------- folders

def tokenizer_size(tokdir):
    """Returns (vocab size, {special token: id}) from vocab.json plus the added tokens of tokenizer.json / tokenizer_config.json."""
    vpath = os.path.join(tokdir, "vocab.json")
    if not os.path.exists(vpath):
        die(f"{vpath} is missing: --tokenizer needs a folder with a GPT-2 vocab.json (and merges.txt)")
    with open(vpath) as f:
        ids = dict(json.load(f))
    tj = os.path.join(tokdir, "tokenizer.json")
    if os.path.exists(tj):
        with open(tj) as f:
            for a in json.load(f).get("added_tokens", []):
                ids.setdefault(a["content"], a["id"])
    tc = os.path.join(tokdir, "tokenizer_config.json")
    if os.path.exists(tc):
        with open(tc) as f:
            for i, a in json.load(f).get("added_tokens_decoder", {}).items():
                ids.setdefault(a["content"], int(i))
    distinct = sorted(set(ids.values()))
    if distinct != list(range(len(distinct))):
        die(f"{tokdir}: token ids are not 0..{len(distinct) - 1} without gaps; fix vocab.json/added tokens")
    return len(distinct), ids


def special_id(tokdir, ids, key):
    """The id of special_tokens_map.json's `key` (bos_token, eos_token), else of <|endoftext|>, else None."""
    tok = "<|endoftext|>"
    sp = os.path.join(tokdir, "special_tokens_map.json")
    if os.path.exists(sp):
        with open(sp) as f:
            v = json.load(f).get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v:
            tok = v
    return ids.get(tok)


def param_specs(C, L, T, V, inner, prefix, with_buffers):
    """[(name, shape, kind)] in GPT2Model state_dict order; kind picks the init."""
    specs = [(prefix + "wte.weight", (V, C), "w"), (prefix + "wpe.weight", (T, C), "pos")]
    for i in range(L):
        p = f"{prefix}h.{i}."
        specs += [(p + "ln_1.weight", (C,), "ln"), (p + "ln_1.bias", (C,), "b")]
        if with_buffers:
            specs += [(p + "attn.bias", (1, 1, T, T), "mask")]
        specs += [(p + "attn.c_attn.weight", (C, 3 * C), "w"), (p + "attn.c_attn.bias", (3 * C,), "b"),
                  (p + "attn.c_proj.weight", (C, C), "proj"), (p + "attn.c_proj.bias", (C,), "b"),
                  (p + "ln_2.weight", (C,), "ln"), (p + "ln_2.bias", (C,), "b"),
                  (p + "mlp.c_fc.weight", (C, inner), "w"), (p + "mlp.c_fc.bias", (inner,), "b"),
                  (p + "mlp.c_proj.weight", (inner, C), "proj"), (p + "mlp.c_proj.bias", (C,), "b")]
    specs += [(prefix + "ln_f.weight", (C,), "ln"), (prefix + "ln_f.bias", (C,), "b")]
    return specs


def init_tensor(name, shape, kind, seed, n_layer, std=0.02, bias_std=0.01):
    """One tensor of the random init, in float32. Each tensor has its own generator
    (seeded from seed and the name without "transformer."), so the values do not depend on
    sharding, order or --arch."""
    key = f"{seed}:{name.removeprefix('transformer.')}"
    g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "little"))
    if kind == "ln":
        return torch.ones(shape)
    if kind == "mask":
        T = shape[-1]
        return torch.tril(torch.ones(T, T)).view(shape)
    s = {"w": std, "pos": std / 2, "proj": std / math.sqrt(2 * n_layer), "b": bias_std}[kind]
    return torch.randn(shape, generator=g).mul_(s)


def split_shards(sizes, n):
    """Assigns consecutive tensors to n shards of about equal bytes; returns a shard index per tensor."""
    total, acc, out = sum(sizes), 0, []
    for s in sizes:
        out.append(min(n - 1, (acc + s // 2) * n // total))
        acc += s
    if sorted(set(out)) != list(range(n)):
        die(f"cannot split {len(sizes)} tensors into {n} non-empty shards; ask for fewer --shards")
    return out


def cmd_random_folder(a):
    dt = CLI_DTYPES[a.dtype]
    if a.n_embd % a.n_head:
        die(f"--n-embd {a.n_embd} is not a multiple of --n-head {a.n_head}")
    V, tok_ids = tokenizer_size(a.tokenizer)
    eos = special_id(a.tokenizer, tok_ids, "eos_token")
    bos = special_id(a.tokenizer, tok_ids, "bos_token")
    bos = eos if bos is None else bos
    os.makedirs(a.out, exist_ok=True)
    prefix = "transformer." if a.arch == "GPT2LMHeadModel" else ""
    specs = param_specs(a.n_embd, a.n_layer, a.n_positions, V, 4 * a.n_embd, prefix, a.with_buffers)
    isz = _itemsize(dt)
    sizes = [isz * math.prod(s) for _, s, _ in specs]

    cfg = {
        "activation_function": "gelu_new", "architectures": [a.arch], "attn_pdrop": 0.1,
        "bos_token_id": bos, "embd_pdrop": 0.1, "eos_token_id": eos, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": a.n_positions, "n_embd": a.n_embd,
        "n_head": a.n_head, "n_inner": None, "n_layer": a.n_layer, "n_positions": a.n_positions,
        "reorder_and_upcast_attn": False, "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True, "summary_activation": None, "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
        "tie_word_embeddings": True, "torch_dtype": TORCH_DTYPE_NAMES[dt], "use_cache": True,
        "vocab_size": V,
    }
    write_json(os.path.join(a.out, "config.json"), cfg)
    write_json(os.path.join(a.out, "generation_config.json"),
               {"_from_model_config": True, "bos_token_id": bos, "eos_token_id": eos})

    shard_of = split_shards(sizes, a.shards) if a.shards > 1 else [0] * len(specs)
    files = ([f"model-{k + 1:05d}-of-{a.shards:05d}.safetensors" for k in range(a.shards)]
             if a.shards > 1 else ["model.safetensors"])
    for k, fname in enumerate(files):
        # Data in name order, as the safetensors library lays it out; one tensor in memory at a time.
        mine = sorted((n, s, kind) for (n, s, kind), sh in zip(specs, shard_of) if sh == k)
        w = SafetensorsWriter(os.path.join(a.out, fname), [(n, dt, s) for n, s, _ in mine])
        for n, s, kind in mine:
            w.write(n, init_tensor(n, s, kind, a.seed, a.n_layer).to(DTYPES[dt]))
        w.close()
    if a.shards > 1:
        write_json(os.path.join(a.out, "model.safetensors.index.json"),
                   {"metadata": {"total_size": sum(sizes)},
                    "weight_map": {n: files[sh] for (n, _, _), sh in sorted(zip(specs, shard_of))}})
    for fname in TOKENIZER_FILES:
        src = os.path.join(a.tokenizer, fname)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(a.out, fname))
    n_params = sum(math.prod(s) for _, s, kind in specs if kind != "mask")
    print(f"{a.out}: {a.arch} C={a.n_embd} L={a.n_layer} H={a.n_head} T={a.n_positions} V={V} "
          f"{n_params} parameters, {dt}, {len(files)} file(s), {sum(sizes)} bytes of tensors")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def load_folder(folder):
    """Returns (config, {name: float64 tensor}) with names normalized to GPT2LMHeadModel's ("transformer." prefix)."""
    cpath = os.path.join(folder, "config.json")
    if not os.path.exists(cpath):
        die(f"{cpath} is missing: FOLDER must be a Hugging Face model folder")
    with open(cpath) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "gpt2":
        die(f"{cpath}: model_type is {cfg.get('model_type')!r}; this script runs only gpt2")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        die(f"{folder}: neither model.safetensors nor model.safetensors.index.json; only safetensors weights are read")
    P = {}
    for fname in files:
        for n, t in read_safetensors(os.path.join(folder, fname)).items():
            if n.endswith(".attn.bias") or n.endswith(".attn.masked_bias"):
                continue  # old causal-mask buffers, not parameters
            if not n.startswith(("transformer.", "lm_head.", "score.")):
                n = "transformer." + n
            P[n] = t.to(torch.float32).to(torch.float64)
    return cfg, P


# ---------------------------------------------------------------- forward

def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


ACTIVATIONS = {"gelu_new": gelu_new, "gelu_pytorch_tanh": gelu_new,
               "gelu": lambda x: torch.nn.functional.gelu(x), "relu": torch.relu}


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def forward(cfg, P, ids):
    """Hugging Face GPT-2 (eval mode, no cache). ids: long [B,T]. Returns (logits [B,T,V], h [B,T,C])."""
    B, T = ids.shape
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hs, eps = C // NH, cfg.get("layer_norm_epsilon", 1e-5)
    act = cfg.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        die(f"config.json: activation_function {act!r} is not one of {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[act]
    V, Tmax = P["transformer.wte.weight"].shape[0], P["transformer.wpe.weight"].shape[0]
    if T > Tmax:
        die(f"sequences have {T} tokens; the model has only {Tmax} positions")
    if ids.min() < 0 or ids.max() >= V:
        die(f"token ids must be in [0, {V}); got {ids.min().item()}..{ids.max().item()}")
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    x = P["transformer.wte.weight"][ids] + P["transformer.wpe.weight"][:T]
    for i in range(L):
        p = f"transformer.h.{i}."

        def conv1d(name, inp):  # Hugging Face Conv1D: weight is [in, out]
            return inp @ P[p + name + ".weight"] + P[p + name + ".bias"]

        h = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        q, k, v = conv1d("attn.c_attn", h).split(C, dim=-1)
        q, k, v = (t.reshape(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))  # [B,NH,T,hs]
        att = q @ k.transpose(-2, -1)
        if cfg.get("scale_attn_weights", True):
            att = att / math.sqrt(hs)
        if cfg.get("scale_attn_by_inverse_layer_idx", False):
            att = att / (i + 1)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + conv1d("attn.c_proj", y)
        h = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        x = x + conv1d("mlp.c_proj", act(conv1d("mlp.c_fc", h)))
    h = layer_norm(x, P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
    head = P.get("lm_head.weight") if not cfg.get("tie_word_embeddings", True) else None
    logits = h @ (P["transformer.wte.weight"] if head is None else head).T
    return logits, h


def scores_of(cfg, P, h):
    """GPT2ForSequenceClassification's score head at every position [B,T], or None."""
    if "score.weight" not in P:
        return None
    w = P["score.weight"]
    if w.shape[0] != 1:
        die(f"score.weight has shape {list(w.shape)}; only one label ([1, C]) is supported")
    s = (h @ w.T).squeeze(-1)
    if "score.bias" in P:
        s = s + P["score.bias"]
    return s + cfg.get("instructflow_score_bias", 0.0)


def read_ids(path):
    try:
        with open(path) as f:
            ids = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{path}: {e}; --ids wants a JSON list of equal-length lists of token ids")
    if not ids or not all(isinstance(r, list) and r and len(r) == len(ids[0]) for r in ids):
        die(f"{path}: --ids wants a non-empty JSON list of equal-length, non-empty lists of token ids")
    return torch.tensor(ids, dtype=torch.long)


def compute(folder, ids_path):
    cfg, P = load_folder(folder)
    ids = read_ids(ids_path)
    with torch.no_grad():
        logits, h = forward(cfg, P, ids)
        return ids, logits, scores_of(cfg, P, h)


def cmd_logits(a):
    ids, logits, scores = compute(a.folder, a.ids)
    out = [("ids", ids.to(torch.int32)), ("logits", logits.to(torch.float32))]
    if scores is not None:
        out.append(("scores", scores.to(torch.float32)))
    write_safetensors(a.out, out)
    print(f"{a.out}: ids {list(ids.shape)} I32, logits {list(logits.shape)} F32"
          + (f", scores {list(scores.shape)} F32" if scores is not None else ""))


def cmd_compare(a):
    _, logits, scores = compute(a.folder, a.ids)
    other = read_safetensors(a.logits)
    ok = True
    for name, ref in (("logits", logits), ("scores", scores)):
        if ref is None or name not in other:
            if name == "logits":
                die(f"{a.logits} has no tensor \"logits\"; it must hold logits [B,T,V] F32")
            continue
        got = other[name].to(torch.float64)
        if tuple(got.shape) != tuple(ref.shape):
            print(f"{name}: shape {list(got.shape)} in {a.logits}, want {list(ref.shape)}")
            ok = False
            continue
        ref32 = ref.to(torch.float32).to(torch.float64)  # what `logits` would have written
        d = (got - ref32).abs()
        rel = d.max().item() / max(ref32.abs().max().item(), 1e-30)
        print(f"{name}: max abs diff {d.max().item():.3e}, max rel diff {rel:.3e} "
              f"(max abs diff / max |reference|), tol {a.tol:g}")
        ok = ok and d.max().item() <= a.tol
    print("ok" if ok else "FAIL")
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- selftest

def forward_nn(cfg, P, ids):
    """The same model from torch.nn modules: nn.Embedding, nn.LayerNorm, nn.MultiheadAttention
    (in_proj = c_attn^T, out_proj = c_proj^T), nn.Linear, nn.GELU(approximate="tanh")."""
    C, NH = cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    f64 = dict(dtype=torch.float64)
    T = ids.shape[1]

    def ln(p):
        m = torch.nn.LayerNorm(C, eps=eps, **f64)
        m.weight.data.copy_(P[p + ".weight"])
        m.bias.data.copy_(P[p + ".bias"])
        return m

    def linear(p):  # Conv1D [in, out] -> nn.Linear weight [out, in]
        w = P[p + ".weight"]
        m = torch.nn.Linear(w.shape[0], w.shape[1], **f64)
        m.weight.data.copy_(w.T)
        m.bias.data.copy_(P[p + ".bias"])
        return m

    wte = torch.nn.Embedding.from_pretrained(P["transformer.wte.weight"])
    wpe = torch.nn.Embedding.from_pretrained(P["transformer.wpe.weight"])
    x = wte(ids) + wpe(torch.arange(T))
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = may not attend
    gelu = torch.nn.GELU(approximate="tanh")
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        mha = torch.nn.MultiheadAttention(C, NH, batch_first=True, **f64)
        mha.in_proj_weight.data.copy_(P[p + "attn.c_attn.weight"].T)
        mha.in_proj_bias.data.copy_(P[p + "attn.c_attn.bias"])
        mha.out_proj.weight.data.copy_(P[p + "attn.c_proj.weight"].T)
        mha.out_proj.bias.data.copy_(P[p + "attn.c_proj.bias"])
        mha.eval()
        h = ln(p + "ln_1")(x)
        x = x + mha(h, h, h, attn_mask=mask, need_weights=False)[0]
        x = x + linear(p + "mlp.c_proj")(gelu(linear(p + "mlp.c_fc")(ln(p + "ln_2")(x))))
    h = ln("transformer.ln_f")(x)
    return torch.nn.functional.linear(h, P["transformer.wte.weight"])


def cmd_selftest(a):
    torch.manual_seed(0)
    fails = 0

    def check(what, diff, tol):
        nonlocal fails
        ok = diff <= tol
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max abs diff {diff:.3e} (tol {tol:g})")

    # 1. The functional forward against torch.nn modules, float64, random LN weights too.
    cfg = {"n_embd": 48, "n_head": 6, "n_layer": 3, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    V, T, C = 97, 20, 48
    P = {n: (1 + 0.3 * torch.randn(s) if kind == "ln" else 0.3 * torch.randn(s)).double()
         for n, s, kind in param_specs(C, 3, 32, V, 4 * C, "transformer.", False)}
    ids = torch.randint(0, V, (3, T))
    with torch.no_grad():
        got, _ = forward(cfg, P, ids)
        want = forward_nn(cfg, P, ids)
    check("forward vs nn.MultiheadAttention/LayerNorm/Linear/GELU (float64)", (got - want).abs().max().item(), 1e-10)
    x = torch.linspace(-8, 8, 10001, dtype=torch.float64)
    check("gelu_new vs nn.functional.gelu(approximate='tanh')",
          (gelu_new(x) - torch.nn.functional.gelu(x, approximate="tanh")).abs().max().item(), 1e-14)
    # Causality: changing the last token must not change earlier positions' logits.
    ids2 = ids.clone()
    ids2[:, -1] = (ids2[:, -1] + 1) % V
    with torch.no_grad():
        got2, _ = forward(cfg, P, ids2)
    check("causal mask (earlier positions ignore a later token)", (got2[:, :-1] - got[:, :-1]).abs().max().item(), 0)

    # 2. safetensors round trip of every dtype, bit for bit.
    with tempfile.TemporaryDirectory() as d:
        ts = {"a": torch.randn(3, 5), "b": torch.randn(7).half(), "c": torch.randn(2, 2, 3).bfloat16(),
              "d": torch.arange(6, dtype=torch.int32).reshape(2, 3), "e": torch.randn(0, 4)}
        write_safetensors(os.path.join(d, "x.safetensors"), list(ts.items()))
        back = read_safetensors(os.path.join(d, "x.safetensors"))
        same = all(back[n].dtype == t.dtype and back[n].shape == t.shape and torch.equal(back[n], t)
                   for n, t in ts.items())
        check("safetensors round trip F32/F16/BF16/I32 and empty", 0 if same else 1, 0)
        # BF16 bits are the top half of the F32 bits (round to nearest even).
        f = torch.randn(1000)
        bits = f.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        rne = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).to(torch.int32)
        check("BF16 conversion is round-to-nearest-even of F32",
              (rne - (f.bfloat16().view(torch.int16).to(torch.int32) & 0xFFFF)).abs().max().item(), 0)

        # 3. A sharded random folder loads back with the same weights as an unsharded one.
        tok = os.path.join(d, "tok")
        os.makedirs(tok)
        vocab = {f"t{i}": i for i in range(50)}
        vocab["<|endoftext|>"] = 50
        write_json(os.path.join(tok, "vocab.json"), vocab)
        for shards, arch, buf in ((3, "GPT2LMHeadModel", False), (1, "GPT2Model", True)):
            out = os.path.join(d, f"m{shards}")
            cmd_random_folder(argparse.Namespace(out=out, n_embd=16, n_layer=2, n_head=2, n_positions=24, dtype="bf16",
                                                 shards=shards, tokenizer=tok, seed=3, arch=arch, with_buffers=buf))
        c3, P3 = load_folder(os.path.join(d, "m3"))
        c1, P1 = load_folder(os.path.join(d, "m1"))
        same = c3["vocab_size"] == 51 and P3.keys() == P1.keys() and all(torch.equal(P3[n], P1[n]) for n in P3)
        check("3-shard GPT2LMHeadModel folder == 1-file GPT2Model folder with buffers", 0 if same else 1, 0)
    print("selftest: " + ("all ok" if not fails else f"{fails} FAILED"))
    sys.exit(1 if fails else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("random-folder", help="write a random-init Hugging Face GPT-2 folder")
    r.add_argument("out")
    r.add_argument("--n-embd", type=int, default=768)
    r.add_argument("--n-layer", type=int, default=12)
    r.add_argument("--n-head", type=int, default=12)
    r.add_argument("--n-positions", type=int, default=1024)
    r.add_argument("--dtype", choices=sorted(CLI_DTYPES), default="f16")
    r.add_argument("--shards", type=int, default=2)
    r.add_argument("--tokenizer", required=True, help="folder with vocab.json, merges.txt, ... to copy")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--arch", choices=["GPT2LMHeadModel", "GPT2Model"], default="GPT2LMHeadModel")
    r.add_argument("--with-buffers", action="store_true", help="add the old attn.bias causal-mask buffers")
    r.set_defaults(fn=cmd_random_folder)
    lg = sub.add_parser("logits", help="write float64-computed logits of a folder")
    lg.add_argument("folder")
    lg.add_argument("--ids", required=True)
    lg.add_argument("--out", required=True)
    lg.set_defaults(fn=cmd_logits)
    c = sub.add_parser("compare", help="compare another program's logits with this script's")
    c.add_argument("folder")
    c.add_argument("--ids", required=True)
    c.add_argument("--logits", required=True)
    c.add_argument("--tol", type=float, default=1e-4)
    c.set_defaults(fn=cmd_compare)
    s = sub.add_parser("selftest", help="check this script against torch.nn")
    s.set_defaults(fn=cmd_selftest)
    a = ap.parse_args()
    if getattr(a, "shards", 1) < 1:
        die("--shards must be at least 1")
    a.fn(a)


if __name__ == "__main__":
    main()
