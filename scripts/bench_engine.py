#!/usr/bin/env python3
"""Runs the engine benchmark presets in Go and in PyTorch (CPU, same thread
count, same shapes) and prints the ratios side by side.

    /usr/bin/python3 scripts/bench_engine.py [--presets tiny,small,gpt2] [--threads 1,2]
        [--kernel-level avx512|avx2|generic] [--repeat 3]

The Go side is `instructflow bench engine --preset P --threads N --json`
(built once from ./cmd/instructflow); --go-cmd replaces it with another
command that takes the same flags and prints the same JSON.

Both sides use the same OpenBLAS (torch's libblas.so.3 is OpenBLAS here), so
OPENBLAS_CORETYPE in the environment applies to both. Thread counts are
pinned for torch through OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (without
the latter OpenBLAS would use every core even at torch.set_num_threads(1)).
Other load on the machine distorts the 2-thread rows first: run it idle.
Each cell runs --repeat times per side, the two sides taking turns, and
each side's best run counts (a neighbour on a shared machine only ever
slows a run down).

--kernel-level runs both sides as on a CPU of that kind: the Go engine's C
kernels through INSTRUCTFLOW_ENGINE_KERNEL_LEVEL, OpenBLAS through
OPENBLAS_CORETYPE (SkylakeX, Haswell, Prescott; a value already in the
environment wins) and PyTorch's own kernels through ATEN_CPU_CAPABILITY
(avx512, avx2, default). Without it each side picks what it detects; the
table's header says what that was (OpenBLAS names some virtual CPUs
Prescott, its SSE3 kernels, although they have AVX-512).

The PyTorch side is a plain GPT-2 (nn.Linear layers, manual causal
attention, tanh GELU, tied head) trained with torch.optim.AdamW plus gradient
clipping, and sampled with a key/value cache from a batch of prompts,
temperature 1, full vocabulary - the same work the Go engine does.
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Keep in step with model/bench.Presets.
PRESETS = {
    "tiny": dict(vocab=96, ctx=64, layers=4, heads=4, width=128, B=32, T=64, prompts=32, prompt_len=8, sample_len=56, min_steps=3),
    "small": dict(vocab=2048, ctx=128, layers=6, heads=8, width=256, B=16, T=128, prompts=16, prompt_len=16, sample_len=112, min_steps=3),
    "gpt2": dict(vocab=50257, ctx=1024, layers=12, heads=12, width=768, B=4, T=64, prompts=4, prompt_len=8, sample_len=56, min_steps=1),
}
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def attn(self, x, cache=None, pos=0):
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, hs).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            kc, vc = cache
            kc[:, :, pos:pos + T], vc[:, :, pos:pos + T] = k, v
            k, v = kc[:, :, :pos + T], vc[:, :, :pos + T]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        if T > 1:
            L = k.shape[2]
            mask = torch.ones(T, L, dtype=torch.bool).tril(diagonal=L - T)
            att = att.masked_fill(~mask, float("-inf"))
        y = att.softmax(-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    def forward(self, x, cache=None, pos=0):
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p
        self.wte, self.wpe = nn.Embedding(p["vocab"], p["width"]), nn.Embedding(p["ctx"], p["width"])
        self.h = nn.ModuleList(Block(p["width"], p["heads"]) for _ in range(p["layers"]))
        self.ln_f = nn.LayerNorm(p["width"])

    def forward(self, idx, caches=None, pos=0):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(pos, pos + T))
        for i, b in enumerate(self.h):
            x = b(x, caches[i] if caches else None, pos)
        return self.ln_f(x) @ self.wte.weight.T


def flops_per_token(p, t):
    C, L = p["width"], p["layers"]
    return 2 * (L * 12 * C * C + p["vocab"] * C) + 4 * L * t * C


def torch_bench(name, threads):
    p = PRESETS[name]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    m = GPT(p)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, p["vocab"], (p["B"], p["T"]))
    y = torch.randint(0, p["vocab"], (p["B"], p["T"]))

    def step():
        logits = m(x)
        loss = F.cross_entropy(logits.view(-1, p["vocab"]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    step()
    start, steps = time.perf_counter(), 0
    while steps < p["min_steps"] or time.perf_counter() - start < 1.0:
        step()
        steps += 1
    sec = time.perf_counter() - start
    train_tps = steps * p["B"] * p["T"] / sec

    prompts = torch.randint(0, p["vocab"], (p["prompts"], p["prompt_len"]))
    NH, hs = p["heads"], p["width"] // p["heads"]
    with torch.no_grad():
        def sample(prompts, n):
            S, P = prompts.shape
            caches = [(torch.empty(S, NH, p["ctx"], hs), torch.empty(S, NH, p["ctx"], hs)) for _ in m.h]
            logits = m(prompts, caches, 0)[:, -1]
            out = []
            for i in range(n):
                tok = torch.multinomial(logits.softmax(-1), 1)
                out.append(tok)
                if i + 1 < n:
                    logits = m(tok, caches, P + i)[:, -1]
            return torch.cat(out, 1)

        sample(prompts[:1], 2)
        start = time.perf_counter()
        toks = sample(prompts, p["sample_len"])
        sample_tps = toks.numel() / (time.perf_counter() - start)
    return dict(train_tokens_per_s=train_tps,
                train_gflops=train_tps * 3 * flops_per_token(p, p["T"] / 2) / 1e9,
                sample_tokens_per_s=sample_tps)


def torch_run(name, threads):
    """Runs torch_bench in fresh processes and keeps PyTorch's best. With one
    thread both the OpenMP and the OpenBLAS pool have one thread (OpenBLAS
    reads its setting when it loads, and by default would use every core even
    under torch.set_num_threads(1)). With more, the two pools oversubscribe
    the cores when both are that large, so each split (OpenMP N / OpenBLAS 1,
    1 / N, N / N) is run and PyTorch is credited with its best train and its
    best sample figure: the ratios never flatter the Go engine."""
    splits = [(threads, threads)] if threads == 1 else [(threads, 1), (1, threads), (threads, threads)]
    best = None
    for omp, blas in splits:
        env = dict(os.environ, OMP_NUM_THREADS=str(omp), OPENBLAS_NUM_THREADS=str(blas), MKL_NUM_THREADS=str(blas))
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker", name, str(omp)],
                             env=env, check=True, capture_output=True, text=True).stdout
        best = best_of(best, json.loads(out))
    return best


def best_of(best, r):
    """Keeps each side's best figure over repeated runs: on a shared machine a
    run is only ever slowed by others, so the best one is the closest to what
    the code can do, and both sides are treated alike."""
    if best is None:
        return r
    for k in ("train_tokens_per_s", "sample_tokens_per_s", "train_gflops", "gemm_gflops"):
        if k in r:
            best[k] = max(best[k], r[k])
    return best


# What --kernel-level sets for each side.
LEVELS = {
    "avx512": dict(INSTRUCTFLOW_ENGINE_KERNEL_LEVEL="avx512", OPENBLAS_CORETYPE="SkylakeX", ATEN_CPU_CAPABILITY="avx512"),
    "avx2": dict(INSTRUCTFLOW_ENGINE_KERNEL_LEVEL="avx2", OPENBLAS_CORETYPE="Haswell", ATEN_CPU_CAPABILITY="avx2"),
    "generic": dict(INSTRUCTFLOW_ENGINE_KERNEL_LEVEL="generic", OPENBLAS_CORETYPE="Prescott", ATEN_CPU_CAPABILITY="default"),
}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--torch-worker":
        print(json.dumps(torch_bench(sys.argv[2], int(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,small,gpt2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--go-cmd", default=None, help="command printing bench.Result JSON; gets --preset P --threads N")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per side and cell, taking turns; each side's best run counts (default 3)")
    ap.add_argument("--kernel-level", choices=sorted(LEVELS), default=None,
                    help="force both sides to this kind of CPU's kernels (default: what each detects)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat is {args.repeat}; it must be at least 1")
    if args.kernel_level:
        forced = dict(LEVELS[args.kernel_level])
        forced["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE", forced["OPENBLAS_CORETYPE"])
        os.environ.update(forced)
    go_cmd = args.go_cmd
    if go_cmd is None:
        exe = os.path.join(tempfile.mkdtemp(), "instructflow")
        subprocess.run(["go", "build", "-o", exe, "./cmd/instructflow"], cwd=ROOT, check=True)
        go_cmd = exe + " bench engine --json"
    rows = []
    for name in args.presets.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            cmd = shlex.split(go_cmd) + ["--preset", name, "--threads", str(threads)]
            go = pt = None
            for _ in range(args.repeat):  # the two sides take turns, so a noisy spell hits both
                g = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
                go = best_of(go, g)
                pt = best_of(pt, torch_run(name, threads))
            rows.append((name, threads, go, pt))
            print(f"  done {name} x{threads}", file=sys.stderr)
    hdr = (f"{'preset':<6} {'thr':>3} | {'go train tok/s':>14} {'torch':>10} {'ratio':>6} | "
           f"{'go sample tok/s':>15} {'torch':>10} {'ratio':>6} | {'go GFLOP/s':>10} {'torch':>7} {'peak%':>6} | {'go RSS MiB':>10}")
    print(hdr)
    print("-" * len(hdr))
    for name, threads, go, pt in rows:
        print(f"{name:<6} {threads:>3} | {go['train_tokens_per_s']:>14.0f} {pt['train_tokens_per_s']:>10.0f} "
              f"{go['train_tokens_per_s'] / pt['train_tokens_per_s']:>5.2f}x | "
              f"{go['sample_tokens_per_s']:>15.0f} {pt['sample_tokens_per_s']:>10.0f} "
              f"{go['sample_tokens_per_s'] / pt['sample_tokens_per_s']:>5.2f}x | "
              f"{go['train_gflops']:>10.1f} {pt['train_gflops']:>7.1f} {100 * go['train_gflops'] / go['gemm_gflops']:>5.0f}% | "
              f"{go['peak_rss_bytes'] / 2**20:>10.0f}")
    gemm = ", ".join("%d thr: %.0f" % (r[1], r[2]["gemm_gflops"]) for r in rows if r[0] == rows[0][0])
    go = rows[0][2]
    print(f"cpu: {go.get('cpu', '?')}; go kernels: {go['kernel']} at level {go.get('kernel_level', '?')}, "
          f"OpenBLAS core {go.get('blas_core', '?')} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}); "
          f"torch: ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '(unset)')}")
    print(f"peak% = Go train GFLOP/s / (one large SGEMM's GFLOP/s x threads) ({gemm} GFLOP/s)")
    print("GFLOP/s are model FLOPs (6N + 12LTC per token, T/2 mean attention span), the same formula for both.")


if __name__ == "__main__":
    main()
