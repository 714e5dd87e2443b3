#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that model/torch_test.go compares against.

For each case it builds a small GPT-2 (the same architecture as package model:
pre-LayerNorm blocks, tanh GELU, tied LM head, optional value head and LoRA
adapters), draws weights, and writes into model/testdata/torch_<case>/:

  config.json         Hugging Face GPT-2 config (plus the engine's extras)
  model.safetensors   weights in Hugging Face GPT-2 layout (Conv1D weights (in, out));
                      the "base" case uses GPT2Model names (no "transformer." prefix)
                      and carries the attention-mask buffers HF files have, to test
                      that the loader handles real HF files
  ref.safetensors     inputs and expected outputs: tokens, targets, the seeds
                      dL/dlogprob, dL/dentropy, dL/dvalue, then logprobs, entropy,
                      values, the gradient of every trainable tensor (grad.NAME),
                      the parameters after two AdamW steps (adamw.NAME), and a
                      greedy continuation of a prompt (greedy_tokens, greedy_logprobs).

Everything is computed in float64 from float32 weights. Run from the repo root:
    /usr/bin/python3 scripts/torch_reference.py
CI does not need PyTorch: it reads the committed fixtures.
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model", "testdata"))


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(P, cfg, tokens):
    """Returns logits (B,T,V) and values (B,T) or None."""
    B, T = tokens.shape
    C, NH, r = cfg["n_embd"], cfg["n_head"], cfg.get("lora_rank", 0)
    hs = C // NH
    scale = cfg.get("lora_alpha", r) / r if r else 0
    x = P["transformer.wte.weight"][tokens] + P["transformer.wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        pre = f"transformer.h.{l}."

        def lin(name, inp):
            y = inp @ P[pre + name + ".weight"] + P[pre + name + ".bias"]
            if r:
                y = y + scale * (inp @ P[pre + name + ".lora_A.weight"].T) @ P[pre + name + ".lora_B.weight"].T
            return y

        h = torch.nn.functional.layer_norm(x, (C,), P[pre + "ln_1.weight"], P[pre + "ln_1.bias"], 1e-5)
        q, k, v = lin("attn.c_attn", h).split(C, dim=2)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + lin("attn.c_proj", y)
        h = torch.nn.functional.layer_norm(x, (C,), P[pre + "ln_2.weight"], P[pre + "ln_2.bias"], 1e-5)
        x = x + lin("mlp.c_proj", gelu(lin("mlp.c_fc", h)))
    x = torch.nn.functional.layer_norm(x, (C,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], 1e-5)
    logits = x @ P["transformer.wte.weight"].T
    values = None
    if cfg.get("value_head"):
        values = (x @ P["v_head.summary.weight"].T).squeeze(-1) + P["v_head.summary.bias"]
    return logits, values


def param_shapes(cfg):
    V, T, C, L, r = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"], cfg.get("lora_rank", 0)
    shapes = [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (T, C))]
    projs = [("attn.c_attn", C, 3 * C), ("attn.c_proj", C, C), ("mlp.c_fc", C, 4 * C), ("mlp.c_proj", 4 * C, C)]
    for l in range(L):
        p = f"transformer.h.{l}."
        shapes += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,))]
        shapes += [(p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,))]
        shapes += [(p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,))]
        shapes += [(p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,))]
        shapes += [(p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,))]
        shapes += [(p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
    shapes += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    if r:
        for l in range(L):
            for name, i, o in projs:
                p = f"transformer.h.{l}.{name}."
                shapes += [(p + "lora_A.weight", (r, i)), (p + "lora_B.weight", (o, r))]
    if cfg.get("value_head"):
        shapes += [("v_head.summary.weight", (1, C)), ("v_head.summary.bias", (1,))]
    return shapes


def adamw(P, grads, names, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, wd=0.1, steps=2):
    """Two torch.optim.AdamW steps with the same gradients; decay on matrices only."""
    params = {n: P[n].detach().clone().float().requires_grad_(True) for n in names}
    decay = [params[n] for n in names if params[n].dim() >= 2]
    no_decay = [params[n] for n in names if params[n].dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=betas, eps=eps)
    for _ in range(steps):
        for n in names:
            params[n].grad = grads[n].float().clone()
        opt.step()
    return params


def make_case(name, cfg, drop_prefix, trainable):
    torch.manual_seed({"base": 1, "lora": 2}[name])
    out = os.path.join(ROOT, "torch_" + name)
    os.makedirs(out, exist_ok=True)
    P32 = {}
    for n, shape in param_shapes(cfg):
        if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n.endswith("ln_f.weight"):
            t = 1 + 0.1 * torch.randn(shape)
        else:
            t = 0.1 * torch.randn(shape)
        P32[n] = t.float()
    hf = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], activation_function="gelu_new",
              layer_norm_epsilon=1e-5, tie_word_embeddings=True, n_ctx=cfg["n_positions"], **cfg)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
        f.write("\n")
    weights = []
    for n, _ in param_shapes(cfg):
        weights.append((n[len("transformer."):] if drop_prefix and n.startswith("transformer.") else n, P32[n]))
        if drop_prefix and n.endswith("ln_1.bias"):  # HF GPT2Model files carry the causal-mask buffer
            T = cfg["n_positions"]
            weights.append((n[len("transformer."):].replace("ln_1.bias", "attn.bias"),
                            torch.tril(torch.ones(T, T)).view(1, 1, T, T)))
    write_safetensors(os.path.join(out, "model.safetensors"), weights)

    B, T, V = 2, 7, cfg["vocab_size"]
    tokens = torch.randint(0, V, (B, T), dtype=torch.int32)
    targets = torch.cat([tokens[:, 1:], torch.randint(0, V, (B, 1), dtype=torch.int32)], dim=1)
    targets[1, 2] = -1
    seed_lp, seed_ent, seed_v = torch.randn(B, T), torch.randn(B, T), torch.randn(B, T)

    P = {n: t.double().requires_grad_(trainable(n)) for n, t in P32.items()}
    logits, values = forward(P, cfg, tokens.long())
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, targets.clamp(min=0).long().unsqueeze(-1)).squeeze(-1)
    logp = torch.where(targets >= 0, logp, torch.zeros_like(logp))
    ent = -(logp_all.exp() * logp_all).sum(-1)
    loss = (seed_lp.double() * logp).sum() + (seed_ent.double() * ent).sum()
    if values is not None:
        loss = loss + (seed_v.double() * values).sum()
    loss.backward()
    names = [n for n, _ in param_shapes(cfg) if trainable(n)]
    grads = {n: P[n].grad for n in names}
    stepped = adamw(P32, grads, names)

    # greedy continuation of a prompt, recomputing the whole sequence each step
    prompt = tokens[0, :3].long().tolist()
    seq, gl = list(prompt), []
    with torch.no_grad():
        for _ in range(5):
            lg, _ = forward(P, cfg, torch.tensor([seq]))
            lp = lg[0, -1].log_softmax(-1)
            nxt = int(lp.argmax())
            seq.append(nxt)
            gl.append(float(lp[nxt]))

    ref = [("tokens", tokens), ("targets", targets), ("seed_logprobs", seed_lp), ("seed_entropy", seed_ent),
           ("seed_values", seed_v), ("logprobs", logp.detach().float()), ("entropy", ent.detach().float()),
           ("greedy_prompt", torch.tensor(prompt, dtype=torch.int32)),
           ("greedy_tokens", torch.tensor(seq[len(prompt):], dtype=torch.int32)),
           ("greedy_logprobs", torch.tensor(gl, dtype=torch.float32))]
    if values is not None:
        ref.append(("values", values.detach().float()))
    ref += [("grad." + n, grads[n].float()) for n in names]
    ref += [("adamw." + n, stepped[n].detach()) for n in names]
    write_safetensors(os.path.join(out, "ref.safetensors"), ref,
                      {"loss": repr(float(loss)), "adamw": "lr=1e-2 betas=(0.9,0.95) eps=1e-8 wd=0.1 steps=2"})
    print(f"wrote {out}: loss {float(loss):.6f}, {len(names)} trainable tensors")


def main():
    base = dict(vocab_size=23, n_positions=16, n_layer=2, n_head=2, n_embd=16, value_head=True)
    make_case("base", base, drop_prefix=True, trainable=lambda n: True)
    lora = dict(base, lora_rank=2, lora_alpha=4.0)
    make_case("lora", lora, drop_prefix=False,
              trainable=lambda n: ".lora_" in n or n.startswith("v_head."))


if __name__ == "__main__":
    main()
