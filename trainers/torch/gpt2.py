"""GPT-2 as InstructFlow's engine computes it, in PyTorch, with the engine's checkpoint names.

Pre-LayerNorm blocks (eps 1e-5), tanh GELU, LM head tied to the token
embedding, Conv1D weights laid out (in, out) as in Hugging Face files, and an
optional scalar value head (v_head.summary.*, the reward model's). A checkpoint
is config.json + model.safetensors (+ optimizer.safetensors + state.json), the
files the Go engine reads and writes, so either side resumes or starts from the
other's checkpoints.
"""
import json
import math
import os

import torch

import safetensors

LN_EPS = 1e-5
CONFIG_KEYS = ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd")


def read_config(folder, prefix=""):
    with open(os.path.join(folder, prefix + "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"model_type {cfg.get('model_type')!r}; this trainer trains gpt2")
    if cfg.get("n_positions") is None and cfg.get("n_ctx") is not None:
        cfg["n_positions"] = cfg["n_ctx"]
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg.get(k), int)]
    if missing:
        raise ValueError(f"config.json lacks {', '.join(missing)}")
    return cfg


def config_json(cfg, value_head):
    """config.json as the engine writes it (model.MarshalConfig): same keys, same order, same bytes."""
    out = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "activation_function": "gelu_new",
           "layer_norm_epsilon": LN_EPS, "tie_word_embeddings": True, "n_ctx": cfg["n_positions"]}
    for k in CONFIG_KEYS:
        out[k] = cfg[k]
    if value_head:
        out["value_head"] = True
    return json.dumps(out, indent=2) + "\n"


def param_shapes(cfg, value_head):
    V, T, C, L = (cfg[k] for k in ("vocab_size", "n_positions", "n_embd", "n_layer"))
    shapes = [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (T, C))]
    for l in range(L):
        p = f"transformer.h.{l}."
        shapes += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                   (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
                   (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                   (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                   (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
                   (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
    shapes += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    if value_head:
        shapes += [("v_head.summary.weight", (1, C)), ("v_head.summary.bias", (1,))]
    return shapes


class GPT2(torch.nn.Module):
    def __init__(self, cfg, weights, value_head=False):
        super().__init__()
        if cfg.get("lora_rank"):
            raise ValueError("LoRA adapters (model.lora_rank) are not trained by this trainer; use the built-in one")
        if cfg["n_embd"] % cfg["n_head"]:
            raise ValueError(f"n_embd {cfg['n_embd']} is not a multiple of n_head {cfg['n_head']}")
        self.cfg, self.value_head = cfg, value_head
        self.names = []
        self.params = torch.nn.ParameterDict()
        for name, shape in param_shapes(cfg, value_head):
            t = weights.get(name)
            if t is None:
                raise ValueError(f"model.safetensors lacks {name}")
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, config.json says {shape}")
            self.names.append(name)
            self.params[name.replace(".", "/")] = torch.nn.Parameter(t.to(torch.float32).clone())

    def p(self, name):
        return self.params[name.replace(".", "/")]

    def named(self):
        return [(n, self.p(n)) for n in self.names]

    def hidden(self, tokens):
        B, T = tokens.shape
        C, H = self.cfg["n_embd"], self.cfg["n_head"]
        hs = C // H
        x = self.p("transformer.wte.weight")[tokens] + self.p("transformer.wpe.weight")[:T]
        mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
        for l in range(self.cfg["n_layer"]):
            pre = f"transformer.h.{l}."
            lin = lambda name, inp: inp @ self.p(pre + name + ".weight") + self.p(pre + name + ".bias")
            h = torch.nn.functional.layer_norm(x, (C,), self.p(pre + "ln_1.weight"), self.p(pre + "ln_1.bias"), LN_EPS)
            q, k, v = lin("attn.c_attn", h).split(C, dim=2)
            q, k, v = (t.view(B, T, H, hs).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + lin("attn.c_proj", y)
            h = torch.nn.functional.layer_norm(x, (C,), self.p(pre + "ln_2.weight"), self.p(pre + "ln_2.bias"), LN_EPS)
            x = x + lin("mlp.c_proj", torch.nn.functional.gelu(lin("mlp.c_fc", h), approximate="tanh"))
        return torch.nn.functional.layer_norm(x, (C,), self.p("transformer.ln_f.weight"), self.p("transformer.ln_f.bias"), LN_EPS)

    def logits(self, h):
        return h @ self.p("transformer.wte.weight").T

    def logprobs(self, tokens, targets):
        """log p(targets[b, t] | tokens[b, :t+1]) for every position."""
        return self.logits(self.hidden(tokens)).log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def values(self, h):
        return (h @ self.p("v_head.summary.weight").T).squeeze(-1) + self.p("v_head.summary.bias")

    def state(self):
        return {n: t.detach().cpu() for n, t in self.named()}


def load_weights(folder, prefix=""):
    """model.safetensors with the engine's names ("transformer." added to GPT2Model names, mask buffers dropped)."""
    tensors, _ = safetensors.load(os.path.join(folder, prefix + "model.safetensors"))
    out = {}
    for n, t in tensors.items():
        if n.endswith(".attn.bias") or n.endswith(".attn.masked_bias"):
            continue
        if not n.startswith(("transformer.", "v_head.", "lm_head.")):
            n = "transformer." + n
        out[n] = t
    return out


def adamw(model, lr, weight_decay):
    """torch.optim.AdamW as the engine's DefaultAdamW: betas (0.9, 0.95), eps 1e-8, decay on matrices only."""
    decay = [p for _, p in model.named() if p.dim() >= 2]
    no_decay = [p for _, p in model.named() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)


def save_optimizer(path, model, opt, weight_decay):
    """optimizer.safetensors as the engine writes it: exp_avg.NAME, exp_avg_sq.NAME, the step in the metadata."""
    tensors, step = {}, 0
    for n, p in model.named():
        st = opt.state.get(p, {})
        tensors["exp_avg." + n] = st["exp_avg"].detach().cpu() if st else torch.zeros_like(p).cpu()
        tensors["exp_avg_sq." + n] = st["exp_avg_sq"].detach().cpu() if st else torch.zeros_like(p).cpu()
        if st:
            step = int(st["step"])
    safetensors.save(path, tensors, {"step": step, "beta1": 0.9, "beta2": 0.95, "eps": 1e-08, "weight_decay": weight_decay})


def load_optimizer(path, model, opt):
    tensors, meta = safetensors.load(path)
    step = int(meta.get("step", "0"))
    for n, p in model.named():
        if "exp_avg." + n not in tensors or "exp_avg_sq." + n not in tensors:
            raise ValueError(f"optimizer.safetensors lacks the moments of {n}")
        if step > 0:
            opt.state[p] = {"step": torch.tensor(float(step)),
                            "exp_avg": tensors["exp_avg." + n].to(p.device, torch.float32).clone(),
                            "exp_avg_sq": tensors["exp_avg_sq." + n].to(p.device, torch.float32).clone()}


def cosine_lr(step, warmup, total, max_lr, min_lr):
    """The engine's model.CosineLR, in float32 as it computes it."""
    f32 = lambda x: float(torch.tensor(x, dtype=torch.float32))
    if step < warmup:
        return f32(f32(f32(max_lr) * (step + 1)) / warmup)
    if step >= total:
        return f32(min_lr)
    ratio = (step - warmup) / max(1, total - warmup)
    return f32(f32(min_lr) + f32(f32(0.5 * (1 + math.cos(math.pi * ratio))) * f32(f32(max_lr) - f32(min_lr))))


M64 = (1 << 64) - 1


class GoPCG:
    """Go's math/rand/v2 PCG (128-bit LCG, DXSM output) and the Perm the engine's batches are drawn with."""
    MUL = (2549297995355413924 << 64) | 4865540595714422341
    INC = (6364136223846793005 << 64) | 1442695040888963407

    def __init__(self, seed1, seed2):
        self.state = ((seed1 & M64) << 64) | (seed2 & M64)

    def uint64(self):
        self.state = (self.state * self.MUL + self.INC) & ((1 << 128) - 1)
        hi, lo = self.state >> 64, self.state & M64
        hi ^= hi >> 32
        hi = (hi * 0xda942042e4dd58b5) & M64
        hi ^= hi >> 48
        return (hi * (lo | 1)) & M64

    def uint64n(self, n):
        if n & (n - 1) == 0:
            return self.uint64() & (n - 1)
        prod = self.uint64() * n
        hi, lo = prod >> 64, prod & M64
        if lo < n:
            thresh = ((1 << 64) - n) % n
            while lo < thresh:
                prod = self.uint64() * n
                hi, lo = prod >> 64, prod & M64
        return hi

    def perm(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.uint64n(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


class Cursor:
    """The engine's stage.Cursor: epochs in an order drawn from the seed and the epoch alone."""

    def __init__(self, epoch=0, pos=0):
        self.epoch, self.pos = epoch, pos

    def next(self, seed, size, n):
        out, perm = [], GoPCG(seed, self.epoch).perm(size)
        while len(out) < n:
            if self.pos == size:
                self.epoch, self.pos = self.epoch + 1, 0
                perm = GoPCG(seed, self.epoch).perm(size)
            out.append(perm[self.pos])
            self.pos += 1
        return out

    def json(self):
        return {"epoch": self.epoch, "pos": self.pos}
