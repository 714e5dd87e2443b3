#!/usr/bin/env python3
"""InstructFlow's reference external trainer: SFT, the reward model and PPO of a GPT-2 in PyTorch.

Started by a worker for a stage set to `trainer: exec` (docs/trainer-contract.md),
alone or under torchrun:

    command: [torchrun, --standalone, --nproc_per_node, "2", trainers/torch/train.py]

It computes what the built-in Go trainers compute (for SFT from the same
starting weights; the same batches, drawn with Go's PCG from the run's seed;
the same loss, schedule, AdamW and clipping; the reward model's new head and PPO's samples are
drawn from PyTorch's generator; PPO runs in one process), data-parallel over the processes (gloo on CPU, NCCL on GPU:
each rank takes every world-th sequence of the global batch and the
gradients are summed), and commits checkpoints the Go engine loads: same
file names, tensor names and state.json. It resumes from its own checkpoints
or the engine's. Needs only PyTorch (Debian's python3-torch).

args (a stage's `args`, all optional): any of the stage's settings (lr,
min_lr, warmup, weight_decay, clip_norm, batch_size, steps, checkpoint_every,
eval_every, margin for rm; ppo's: policy_lr, kl_coef, ...) to override, and
device: auto (CUDA when present), cpu or cuda.
"""
import base64
import json
import math
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import contract  # noqa: E402
import gpt2  # noqa: E402
import safetensors  # noqa: E402
from contract import BadInput  # noqa: E402

SCHEDULE = ("steps", "batch_size", "lr", "min_lr", "warmup", "weight_decay", "clip_norm", "checkpoint_every", "eval_every")
PPO = ("iterations", "rollout_batch", "max_new_tokens", "epochs", "mini_batch", "policy_lr", "value_lr", "clip_range",
       "value_clip", "entropy_coef", "gamma", "lambda", "kl_coef", "adaptive_kl", "target_kl", "kl_horizon",
       "normalize_reward", "ptx_coef", "ptx_batch", "clip_norm", "checkpoint_every")
SETTINGS = {"sft": SCHEDULE, "rm": SCHEDULE + ("margin",), "ppo": PPO}
DEVICES = ("auto", "cpu", "cuda")


def settings_of(job):
    """The stage's settings with the args laid over them, checked as the built-in trainers check them."""
    if job.stage not in SETTINGS:
        raise BadInput(f"stage {job.stage}: this reference trainer trains {', '.join(SETTINGS)}")
    s = dict(job.settings)
    for k, v in job.args.items():
        if k == "device":
            if v not in DEVICES:
                raise BadInput(f"args.device {v!r}: use one of {', '.join(DEVICES)}")
            continue
        if k not in SETTINGS[job.stage]:
            raise BadInput(f"args.{k}: unknown; this trainer takes {', '.join(SETTINGS[job.stage] + ('device',))}")
        if isinstance(s.get(k), bool) != isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BadInput(f"args.{k} is {v!r}; give a {'boolean' if isinstance(s.get(k), bool) else 'finite number'}")
        if isinstance(s.get(k), int) and not isinstance(s.get(k), bool) and v != int(v):
            raise BadInput(f"args.{k} is {v!r}; give a whole number")
        if isinstance(s.get(k), int) and not isinstance(v, bool):
            v = int(v)
        s[k] = v
    if job.stage == "ppo":
        return check_ppo(s)
    for k in ("steps", "batch_size", "checkpoint_every"):
        if s[k] <= 0:
            raise BadInput(f"{k} is {s[k]}; give a positive number")
    if not (s["lr"] > 0 and 0 <= s["min_lr"] <= s["lr"]):
        raise BadInput(f"lr {s['lr']} and min_lr {s['min_lr']}: need 0 <= min_lr <= lr, lr > 0")
    if min(s["warmup"], s["clip_norm"], s["weight_decay"], s.get("margin", 0)) < 0:
        raise BadInput("warmup, clip_norm, weight_decay and margin must not be negative")
    return s


def check_ppo(s):
    """PPO's settings, checked as the built-in ppo.Config.Validate checks them."""
    for k in ("iterations", "rollout_batch", "max_new_tokens", "epochs", "mini_batch", "policy_lr", "value_lr",
              "clip_range", "value_clip", "checkpoint_every"):
        if not s[k] > 0:
            raise BadInput(f"{k} is {s[k]}; give a positive number")
    if not (0 <= s["gamma"] <= 1 and 0 <= s["lambda"] <= 1):
        raise BadInput(f"gamma {s['gamma']} and lambda {s['lambda']} must lie in [0, 1]")
    if min(s["kl_coef"], s["entropy_coef"], s["ptx_coef"], s["clip_norm"]) < 0:
        raise BadInput("kl_coef, entropy_coef, ptx_coef and clip_norm must not be negative")
    if s["adaptive_kl"] and not (s["target_kl"] > 0 and s["kl_horizon"] > 0):
        raise BadInput("adaptive_kl needs target_kl > 0 and kl_horizon > 0")
    if s["ptx_coef"] > 0 and s["ptx_batch"] <= 0:
        raise BadInput("ptx_coef > 0 needs ptx_batch > 0")
    if s["mini_batch"] > s["rollout_batch"]:
        raise BadInput(f"mini_batch {s['mini_batch']} is larger than rollout_batch {s['rollout_batch']}")
    return s


class World:
    """This process's place in the data-parallel group (torchrun's environment, or alone)."""

    def __init__(self, device_arg):
        self.size, self.rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        cuda = torch.cuda.is_available() if device_arg == "auto" else device_arg == "cuda"
        if cuda and not torch.cuda.is_available():
            raise BadInput("args.device is cuda, but PyTorch sees no CUDA device on this worker")
        self.device = torch.device("cpu")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        if self.size > 1:
            dist.init_process_group("nccl" if cuda else "gloo")

    def sum(self, t):
        if self.size > 1:
            dist.all_reduce(t)
        return t

    def any(self, flag):
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        if self.size > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self):
        if self.size > 1:
            dist.barrier()


class Run:
    """What both stages share: the job, the model and optimizer, checkpoints and the step loop."""

    def __init__(self, job):
        self.job, self.s = job, settings_of(job)
        # The run's threads are this machine's budget: shared by the processes on it.
        torch.set_num_threads(max(1, int(job.threads or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
        self.world = World(job.args.get("device", "auto"))
        if self.world.device.type == "cpu":
            # Some CPU kernels (the embedding's backward) sum in a thread-dependent order
            # otherwise: on CPU a run is bit-reproducible, resumed or not.
            torch.use_deterministic_algorithms(True)
        self.progress = contract.Progress(job, self.world.rank == 0)
        # PPO counts iterations (its state.json's "iteration"), the others steps.
        self.key, self.total = ("iteration", self.s["iterations"]) if job.stage == "ppo" else ("step", self.s["steps"])
        self.progress.report(0, self.total)  # alive before the slow part
        self.stop = contract.Stop()
        self.scratch = os.path.join(job.work_dir, f"rank-{self.world.rank}")
        os.makedirs(self.scratch, exist_ok=True)
        self.data = job.ckpt_get(job.data, os.path.join(self.scratch, "data"))
        self.pad = int(job.tokenizer["eos_id"])

    def rows(self, role):
        return self.job.read_jsonl(role, self.data)

    def start(self, fresh):
        """Returns state: the resumed checkpoint's, or fresh() = (config, weights, state) for a new run."""
        job = self.job
        if job.resume_from:
            folder = job.ckpt_get(job.resume_from, os.path.join(self.scratch, "resume"))
            with open(os.path.join(folder, "state.json")) as f:
                state = json.load(f)
            if state.get("stage") != job.stage:
                raise BadInput(f"resume_from {job.resume_from['key']} was written by stage {state.get('stage')!r}, not {job.stage!r}")
            cfg, weights = gpt2.read_config(folder), gpt2.load_weights(folder)
        else:
            folder, (cfg, weights, state) = None, fresh()
        try:
            self.model = gpt2.GPT2(cfg, weights, value_head=job.stage == "rm").to(self.world.device)
        except ValueError as e:
            raise BadInput(f"model: {e}")
        self.cfg = cfg
        self.opt = gpt2.adamw(self.model, self.s["lr"], self.s["weight_decay"])
        if folder:
            gpt2.load_optimizer(os.path.join(folder, "optimizer.safetensors"), self.model, self.opt)
        self.saved = state[self.key] if folder else -1
        return state

    def update(self, step):
        """Sums the ranks' gradients, clips them as the engine does and takes an AdamW step."""
        params = [p for _, p in self.model.named()]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = self.world.sum(torch.cat([p.grad.reshape(-1) for p in params]))
        off = 0
        for p in params:
            p.grad.copy_(flat[off:off + p.numel()].view_as(p))
            off += p.numel()
        clip = self.s["clip_norm"]
        if clip > 0:
            norm = float(torch.tensor(math.sqrt(float(sum((p.grad.double() ** 2).sum() for p in params))), dtype=torch.float32))
            if norm > clip:
                scale = float(torch.tensor(clip, dtype=torch.float32) / torch.tensor(norm, dtype=torch.float32))
                for p in params:
                    p.grad.mul_(scale)
        lr = gpt2.cosine_lr(step, self.s["warmup"], self.s["steps"], self.s["lr"], self.s["min_lr"])
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)

    def models(self):
        """What a checkpoint holds: (file prefix, model, optimizer, weight decay) each."""
        return [("", self.model, self.opt, self.s["weight_decay"])]

    def save(self, state):
        """Rank 0 commits a checkpoint at state's step; returns its key (None on other ranks)."""
        key = None
        if self.world.rank == 0:
            step = state[self.key]
            folder = os.path.join(self.scratch, f"ckpt-{step}")
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            for prefix, model, opt, decay in self.models():
                with open(os.path.join(folder, prefix + "config.json"), "w") as f:
                    f.write(gpt2.config_json(self.cfg, model.value_head))
                safetensors.save(os.path.join(folder, prefix + "model.safetensors"), model.state())
                gpt2.save_optimizer(os.path.join(folder, prefix + "optimizer.safetensors"), model, opt, decay)
            with open(os.path.join(folder, "state.json"), "w") as f:
                f.write(json.dumps(state, indent=2))
            key = self.job.ckpt_put(folder, step)
            shutil.rmtree(folder, ignore_errors=True)
        self.saved = state[self.key]
        self.world.barrier()
        return key

    def loop(self, state, step_fn, done, summary):
        """Runs steps until done(state); step_fn(state) trains one and returns its metrics.
        summary(state) are the final metrics again, for an attempt that finds the work done."""
        total, k = self.total, self.key
        if done(state):  # the final checkpoint was committed by an attempt that died before it exited
            self.progress.report(state[k], total, summary(state), self.job.resume_from["key"])
            return 0
        while not done(state):
            metrics = step_fn(state)
            state[k] += 1
            last = done(state)
            key = None
            if last or state[k] % self.s["checkpoint_every"] == 0:
                key = self.save(state)
            self.progress.report(state[k], total, metrics, key)
            if not last and self.world.any(self.stop.requested):
                if self.saved != state[k]:
                    key = self.save(state)
                    self.progress.report(state[k], total, checkpoint=key)
                print(f"stopped by SIGTERM after {k} {state[k]}, checkpoint committed", file=sys.stderr, flush=True)
                return 128 + 15
        return 0


def padded(seqs, pad, T, device):
    """The engine's stage.Padded: tokens, next-token targets and the response mask of a (B, T) batch."""
    B = len(seqs)
    tokens = torch.full((B, T), pad, dtype=torch.long)
    targets = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.float32)
    for b, (toks, plen) in enumerate(seqs):
        n = len(toks) - 1
        tokens[b, :n] = torch.tensor(toks[:-1])
        targets[b, :n] = torch.tensor(toks[1:])
        mask[b, max(0, plen - 1):n] = 1
    return tokens.to(device), targets.to(device), mask.to(device)


def sft(job):
    r = Run(job)
    s, world = r.s, r.world

    def seqs_of(role):
        return [(row["prompt_ids"] + row["response_ids"] + [r.pad], len(row["prompt_ids"])) for row in r.rows(role)]

    train, heldout = seqs_of("train"), seqs_of("heldout")
    if not train:
        raise BadInput("no training demonstrations in the job's data")

    def fresh():
        folder = job.ckpt_get(job.inputs["init"], os.path.join(r.scratch, "init"))
        return gpt2.read_config(folder), gpt2.load_weights(folder), {
            "stage": "sft", "step": 0, "tokens": 0, "cursor": {"epoch": 0, "pos": 0}, "train_loss": 0, "heldout_loss": 0}

    state = r.start(fresh)
    ctx = r.cfg["n_positions"]
    for toks, _ in train + heldout:
        if len(toks) - 1 > ctx:
            raise BadInput(f"a demonstration has {len(toks)} tokens, more than the model's context {ctx}; shorten it or enlarge n_positions")
    cursor = gpt2.Cursor(**state["cursor"])

    def loss_sums(batch):
        """The summed response-token negative log-likelihood of this rank's share of batch, and its graph."""
        mine = batch[world.rank::world.size]
        if not mine:
            return None
        T = max(len(t) - 1 for t, _ in batch)
        tokens, targets, mask = padded(mine, r.pad, T, world.device)
        logp = r.model.logprobs(tokens, targets)
        return -(logp * mask).sum()

    def heldout_loss():
        total = torch.zeros(2, dtype=torch.float64, device=world.device)
        bs = s["batch_size"]
        with torch.no_grad():
            for k, i in enumerate(range(0, len(heldout), bs)):
                if k % world.size != world.rank:
                    continue
                part = heldout[i:i + bs]
                tokens, targets, mask = padded(part, r.pad, max(len(t) - 1 for t, _ in part), world.device)
                logp = r.model.logprobs(tokens, targets)
                total[0] -= (logp.double() * mask.double()).sum()
                total[1] += mask.double().sum()
        world.sum(total)
        return float(total[0] / total[1]) if total[1] > 0 else float("nan")

    def done(st):
        return st["step"] >= s["steps"] or (s.get("token_budget", 0) > 0 and st["tokens"] >= s["token_budget"])

    def step(st):
        batch = [train[j] for j in cursor.next(job.seed, len(train), s["batch_size"])]
        count = sum(len(t) - p for t, p in batch)  # response tokens and the end of text, every rank's
        r.model.zero_grad(set_to_none=False)
        summed = loss_sums(batch)
        if summed is not None:
            (summed / count).backward()
        r.update(st["step"])
        loss = world.sum(torch.tensor([0.0 if summed is None else float(summed.detach())], dtype=torch.float64, device=world.device))
        st["tokens"] += count
        st["cursor"] = cursor.json()
        st["train_loss"] = float(torch.tensor(float(loss) / count, dtype=torch.float32))
        metrics = {"loss": st["train_loss"], "tokens": float(st["tokens"])}
        nxt = dict(st, step=st["step"] + 1)
        if heldout and (done(nxt) or (s["eval_every"] > 0 and nxt["step"] % s["eval_every"] == 0)):
            st["heldout_loss"] = heldout_loss()
            metrics["heldout_loss"] = st["heldout_loss"]
        return metrics

    def summary(st):
        out = {"loss": st["train_loss"], "tokens": float(st["tokens"])}
        if heldout:
            out["heldout_loss"] = st["heldout_loss"]
        return out

    return r.loop(state, step, done, summary)


def rm(job):
    r = Run(job)
    s, world = r.s, r.world

    def comparisons(role):
        out = []
        for row in r.rows(role):
            seqs = [row["prompt_ids"] + ids + [r.pad] for ids in row["response_ids"]]
            ranks = row["ranks"]
            if any(a < b for a in ranks for b in ranks):  # ties alone give no pair
                out.append((seqs, ranks))
        return out

    train, heldout = comparisons("train"), comparisons("heldout")
    demos = [row["prompt_ids"] + row["response_ids"] + [r.pad] for row in r.rows("demonstrations")]
    if not train:
        raise BadInput("no training comparisons with at least one decided pair in the job's data")

    def fresh():
        folder = job.ckpt_get(job.inputs["sft"], os.path.join(r.scratch, "sft"))
        cfg, weights = gpt2.read_config(folder), gpt2.load_weights(folder)
        if any(n.startswith("v_head.") for n in weights):
            raise BadInput("the SFT checkpoint has a value head: it is a reward or value model, not an SFT policy")
        g = torch.Generator().manual_seed(job.seed)
        weights["v_head.summary.weight"] = torch.randn((1, cfg["n_embd"]), generator=g) / math.sqrt(cfg["n_embd"] + 1)
        weights["v_head.summary.bias"] = torch.zeros(1)
        return cfg, weights, {"stage": "rm", "step": 0, "cursor": {"epoch": 0, "pos": 0}, "train_loss": 0,
                              "heldout": {"accuracy": 0, "pairs": 0, "loss": 0}, "offset": 0}

    state = r.start(fresh)
    ctx = r.cfg["n_positions"]
    for seqs, _ in train + heldout:
        if max(len(t) for t in seqs) > ctx:
            raise BadInput(f"a comparison has a response of {max(len(t) for t in seqs)} tokens with its prompt, more than the model's context {ctx}")
    cursor = gpt2.Cursor(**state["cursor"])

    def scores(seqs):
        T = max(len(t) for t in seqs)
        tokens = torch.full((len(seqs), T), r.pad, dtype=torch.long)
        for b, t in enumerate(seqs):
            tokens[b, :len(t)] = torch.tensor(t)
        values = r.model.values(r.model.hidden(tokens.to(world.device)))
        at = torch.tensor([len(t) - 2 if len(t) > 1 and t[-1] == r.pad else len(t) - 1 for t in seqs], device=world.device)
        return values.gather(1, at.unsqueeze(1)).squeeze(1)

    def comparison_loss(sc, ranks, margin):
        terms = [torch.nn.functional.softplus(-(sc[i] - sc[j] - margin))
                 for i in range(len(ranks)) for j in range(len(ranks)) if ranks[i] < ranks[j]]
        return torch.stack(terms).mean(), len(terms)

    def evaluate():
        acc = torch.zeros(3, dtype=torch.float64, device=world.device)  # right pairs, pairs, loss sum
        with torch.no_grad():
            for k, (seqs, ranks) in enumerate(heldout):
                if k % world.size != world.rank:
                    continue
                sc = scores(seqs)
                loss, _ = comparison_loss(sc, ranks, 0.0)
                acc[2] += float(loss)
                for a in range(len(ranks)):
                    for b in range(len(ranks)):
                        if ranks[a] < ranks[b]:
                            acc[1] += 1
                            acc[0] += float(sc[a] > sc[b])
        world.sum(acc)
        n = max(1, len(heldout))
        return {"accuracy": float(acc[0] / acc[1]) if acc[1] > 0 else 0.0, "pairs": int(acc[1]), "loss": float(acc[2]) / n}

    def normalise():
        """The score's zero: the demonstrations' mean score, folded into the head's bias."""
        total = torch.zeros(2, dtype=torch.float64, device=world.device)
        with torch.no_grad():
            for k, i in enumerate(range(0, len(demos), 64)):
                if k % world.size == world.rank:
                    sc = scores(demos[i:i + 64])
                    total[0] += sc.double().sum()
                    total[1] += len(sc)
        world.sum(total)
        offset = float(total[0] / total[1]) if total[1] > 0 else 0.0
        with torch.no_grad():
            r.model.p("v_head.summary.bias").sub_(offset)
        return offset

    def done(st):
        return st["step"] >= s["steps"]

    def step(st):
        batch = [train[j] for j in cursor.next(job.seed, len(train), s["batch_size"])]
        r.model.zero_grad(set_to_none=False)
        mine = batch[world.rank::world.size]
        loss = torch.zeros(1, dtype=torch.float64, device=world.device)
        if mine:
            total = sum(comparison_loss(scores(seqs), ranks, s["margin"])[0] for seqs, ranks in mine) / len(batch)
            total.backward()
            loss += float(total.detach())
        r.update(st["step"])
        world.sum(loss)
        st["cursor"], st["train_loss"] = cursor.json(), float(loss)
        metrics = {"loss": st["train_loss"]}
        last = st["step"] + 1 >= s["steps"]
        if heldout and (last or (s["eval_every"] > 0 and (st["step"] + 1) % s["eval_every"] == 0)):
            st["heldout"] = evaluate()
            metrics["heldout_accuracy"], metrics["heldout_loss"] = st["heldout"]["accuracy"], st["heldout"]["loss"]
        if last:
            st["offset"] = normalise()
            metrics["offset"], metrics["accuracy"] = st["offset"], st["heldout"]["accuracy"]
        return metrics

    def summary(st):
        return {"loss": st["train_loss"], "heldout_accuracy": st["heldout"]["accuracy"], "heldout_loss": st["heldout"]["loss"],
                "offset": st["offset"], "accuracy": st["heldout"]["accuracy"]}

    return r.loop(state, step, done, summary)


def ppo(job):
    """PPO as the built-in ppo package runs it (Ziegler et al.): rollouts from the policy, rewards from
    the frozen reward model minus beta * KL to the frozen SFT reference, GAE, clipped policy and value
    steps, PPO-ptx, an adaptive beta. In one process; its draws come from PyTorch's generator."""
    r = Run(job)
    s, world, pad = r.s, r.world, r.pad
    if world.size > 1:
        raise BadInput("this trainer runs PPO in one process: drop torchrun, or give it --nproc_per_node 1")
    dev = world.device
    prompts = [row["prompt_ids"] for row in r.rows("prompts")]
    if any(not p for p in prompts):
        raise BadInput("a prompt has no tokens")
    ptx = [(row["prompt_ids"] + row["response_ids"] + [pad], len(row["prompt_ids"])) for row in r.rows("demonstrations")]
    if not prompts:
        raise BadInput("no prompts in the job's data")
    if s["ptx_coef"] > 0 and not ptx:
        raise BadInput("ptx_coef > 0 but no demonstrations in the job's data")

    def shape(cfg):
        return {k: cfg[k] for k in gpt2.CONFIG_KEYS}

    def load(role, folder, prefix="", value_head=False, want=None):
        """A model of a checkpoint folder, refused as bad input unless it loads (with the shape want)."""
        try:
            cfg, weights = gpt2.read_config(folder, prefix), gpt2.load_weights(folder, prefix)
            if not value_head and any(n.startswith("v_head.") for n in weights):
                raise ValueError("it has a value head: it is a reward or value model, not an SFT policy")
            if want is not None and shape(cfg) != shape(want):
                raise ValueError(f"its model shape {shape(cfg)} is not the SFT policy's {shape(want)}")
            return cfg, gpt2.GPT2(cfg, weights, value_head=value_head).to(dev)
        except (OSError, KeyError, ValueError) as e:
            raise BadInput(f"{role} checkpoint: {e}")

    r.cfg, reference = load("sft", job.ckpt_get(job.inputs["sft"], os.path.join(r.scratch, "sft")))
    _, reward = load("rm", job.ckpt_get(job.inputs["rm"], os.path.join(r.scratch, "rm")), value_head=True, want=r.cfg)
    for m in (reference, reward):
        m.requires_grad_(False)
    if max(len(p) for p in prompts) + s["max_new_tokens"] + 1 > r.cfg["n_positions"]:
        raise BadInput(f"prompts of {max(len(p) for p in prompts)} tokens plus max_new_tokens {s['max_new_tokens']} exceed the context {r.cfg['n_positions']}")
    gen = torch.Generator().manual_seed(job.seed)
    if job.resume_from:
        folder = job.ckpt_get(job.resume_from, os.path.join(r.scratch, "resume"))
        with open(os.path.join(folder, "state.json")) as f:
            state = json.load(f)
        if state.get("stage") != "ppo":
            raise BadInput(f"resume_from {job.resume_from['key']} was written by stage {state.get('stage')!r}, not 'ppo'")
        if not state.get("torch_rng"):
            raise BadInput(f"resume_from {job.resume_from['key']} was written by another PPO trainer (no torch_rng); resume it there")
        _, policy = load("resume_from", folder, want=r.cfg)
        _, value = load("resume_from (value model)", folder, "value_", value_head=True, want=r.cfg)
        gen.set_state(torch.tensor(list(base64.b64decode(state["torch_rng"])), dtype=torch.uint8))
    else:
        folder, state = None, {"stage": "ppo", "iteration": 0, "cursor": {"epoch": 0, "pos": 0}, "ptx_cursor": {"epoch": 0, "pos": 0},
                               "rng": "", "beta": float(s["kl_coef"]), "score_count": 0, "score_mean": 0, "score_m2": 0, "metrics": {}}
        policy = gpt2.GPT2(r.cfg, reference.state()).to(dev)
        value = gpt2.GPT2(r.cfg, reward.state(), value_head=True).to(dev)
    popt, vopt = gpt2.adamw(policy, s["policy_lr"], 0.0), gpt2.adamw(value, s["value_lr"], 0.0)
    if folder:
        try:
            gpt2.load_optimizer(os.path.join(folder, "optimizer.safetensors"), policy, popt)
            gpt2.load_optimizer(os.path.join(folder, "value_optimizer.safetensors"), value, vopt)
        except (OSError, ValueError) as e:
            raise BadInput(f"resume_from {job.resume_from['key']}: {e}")
    r.model, r.opt = policy, popt
    r.models = lambda: [("", policy, popt, 0.0), ("value_", value, vopt, 0.0)]
    r.saved = state["iteration"] if folder else -1
    cursor, ptx_cursor = gpt2.Cursor(**state["cursor"]), gpt2.Cursor(**state["ptx_cursor"])

    def batch_of(seqs):
        """Right-padded (B, T) tokens of whole sequences, for forwards that read positions up to each one's end."""
        T = max(len(t) for t in seqs)
        tokens = torch.full((len(seqs), T), pad, dtype=torch.long)
        for b, t in enumerate(seqs):
            tokens[b, :len(t)] = torch.tensor(t)
        return tokens.to(dev)

    @torch.no_grad()
    def sample(ps):
        seqs, live = [list(p) for p in ps], list(range(len(ps)))
        for _ in range(s["max_new_tokens"]):
            tokens = batch_of([seqs[i] for i in live])
            logits = policy.logits(policy.hidden(tokens))
            last = torch.tensor([len(seqs[i]) - 1 for i in live], device=dev)
            probs = logits[torch.arange(len(live), device=dev), last].float().softmax(-1).cpu()
            if not torch.isfinite(probs).all():
                raise BadInput("the policy's probabilities are not finite: the update diverged; lower ppo.policy_lr or ppo.clip_norm and resume")
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1).tolist()
            for i, t in zip(live, nxt):
                seqs[i].append(t)
            live = [i for i, t in zip(live, nxt) if t != pad]
            if not live:
                break
        return seqs

    def per_token(model, seqs, plens, ns, what):
        """Log-probabilities of the response tokens (what="logp", with the entropies) or the values at the
        positions that predict them (what="value")."""
        tokens = batch_of([t[:-1] for t in seqs])
        h = model.hidden(tokens)
        if what == "value":
            v = model.values(h)
            return [v[b, p - 1:p - 1 + n] for b, (p, n) in enumerate(zip(plens, ns))], None
        logp_all = model.logits(h).log_softmax(-1)
        targets = batch_of([t[1:] for t in seqs])
        logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        ent = -(logp_all.exp() * logp_all).sum(-1)
        return ([logp[b, p - 1:p - 1 + n] for b, (p, n) in enumerate(zip(plens, ns))],
                [ent[b, p - 1:p - 1 + n] for b, (p, n) in enumerate(zip(plens, ns))])

    def clip_grads(model):
        params = [p for _, p in model.named()]
        norm = math.sqrt(float(sum((p.grad.double() ** 2).sum() for p in params)))
        if s["clip_norm"] > 0 and norm > s["clip_norm"]:
            for p in params:
                p.grad.mul_(s["clip_norm"] / norm)

    def step(st):
        idx = cursor.next(job.seed, len(prompts), s["rollout_batch"])
        ps = [prompts[j] for j in idx]
        seqs = sample(ps)
        plens, ns = [len(p) for p in ps], [len(t) - len(p) for t, p in zip(seqs, ps)]
        with torch.no_grad():
            scored = [t if t[-1] == pad else t + [pad] for t in seqs]  # cut at max_new_tokens: scored as ended
            hs = reward.values(reward.hidden(batch_of(scored)))
            at = torch.tensor([len(t) - 2 for t in scored], device=dev)
            scores = hs.gather(1, at.unsqueeze(1)).squeeze(1).double().cpu().tolist()
            old, _ = per_token(policy, seqs, plens, ns, "logp")
            ref, _ = per_token(reference, seqs, plens, ns, "logp")
            vals, _ = per_token(value, seqs, plens, ns, "value")
        for sc in scores:  # running statistics of the scores (Welford)
            st["score_count"] += 1
            d = sc - st["score_mean"]
            st["score_mean"] += d / st["score_count"]
            st["score_m2"] += d * (sc - st["score_mean"])
        scale = 1.0
        if s["normalize_reward"] and st["score_count"] > 1:
            sd = math.sqrt(st["score_m2"] / (st["score_count"] - 1))
            scale = 1 / sd if sd > 1e-6 else 1.0
        advs, rets, kl_sum = [], [], 0.0
        for b in range(len(seqs)):
            kl = (old[b] - ref[b]).double()
            kl_sum += float(kl.sum())
            rew = -st["beta"] * kl
            rew[-1] += scores[b] * scale
            v = vals[b].double()
            adv, gae, nxt = torch.zeros_like(v), 0.0, 0.0
            for j in range(len(v) - 1, -1, -1):
                delta = float(rew[j]) + s["gamma"] * nxt - float(v[j])
                gae = delta + s["gamma"] * s["lambda"] * gae
                adv[j], nxt = gae, float(v[j])
            advs.append(adv)
            rets.append(adv + v)
        flat = torch.cat(advs)
        mean, sd = float(flat.mean()), math.sqrt(max(float((flat ** 2).mean()) - float(flat.mean()) ** 2, 0)) + 1e-8
        advs = [(a - mean) / sd for a in advs]
        mean_kl = kl_sum / len(seqs)
        metrics = {"score_mean": sum(scores) / len(scores), "kl": mean_kl, "beta": st["beta"], "response_length": sum(ns) / len(ns)}
        clipped = tokens = approx_kl = entropy = vloss = ptx_loss = updates = 0.0
        lo, hi = 1 - s["clip_range"], 1 + s["clip_range"]
        for _ in range(s["epochs"]):
            perm = torch.randperm(len(seqs), generator=gen).tolist()
            for start in range(0, len(perm), s["mini_batch"]):
                mb = perm[start:start + s["mini_batch"]]
                mseqs, mpl, mns = [seqs[k] for k in mb], [plens[k] for k in mb], [ns[k] for k in mb]
                ntok = sum(mns)
                popt.zero_grad(set_to_none=False)
                logp, ent = per_token(policy, mseqs, mpl, mns, "logp")
                loss = 0
                for i, k in enumerate(mb):
                    o, a = old[k].to(logp[i].dtype), advs[k].to(logp[i].dtype)
                    ratio = (logp[i] - o).exp()
                    loss = loss + torch.maximum(-a * ratio, -a * ratio.clamp(lo, hi)).sum() - s["entropy_coef"] * ent[i].sum()
                    with torch.no_grad():
                        clipped += float(((ratio < lo) | (ratio > hi)).sum())
                        approx_kl += float(((ratio - 1) - (logp[i] - o)).sum())
                        entropy += float(ent[i].sum())
                (loss / ntok).backward()
                tokens += ntok
                if s["ptx_coef"] > 0:
                    batch = [ptx[j] for j in ptx_cursor.next(job.seed + 1, len(ptx), s["ptx_batch"])]
                    tk, tg, mask = padded(batch, pad, max(len(t) - 1 for t, _ in batch), dev)
                    lp = policy.logprobs(tk, tg)
                    pl = -(lp * mask).sum() / mask.sum()
                    (s["ptx_coef"] * pl).backward()
                    ptx_loss += float(pl)
                clip_grads(policy)
                popt.step()
                vopt.zero_grad(set_to_none=False)
                vnow, _ = per_token(value, mseqs, mpl, mns, "value")
                vl = 0
                for i, k in enumerate(mb):
                    v, o, ret = vnow[i], vals[k].to(vnow[i].dtype), rets[k].to(vnow[i].dtype)
                    vc = o + (v - o).clamp(-s["value_clip"], s["value_clip"])
                    term = 0.5 * torch.maximum((v - ret) ** 2, (vc - ret) ** 2)
                    vl = vl + term.sum()
                (vl / ntok).backward()
                vloss += float(vl)
                clip_grads(value)
                vopt.step()
                updates += 1
        metrics.update({"clip_fraction": clipped / tokens, "approx_kl": approx_kl / tokens, "entropy": entropy / tokens,
                        "value_loss": vloss / tokens})
        if s["ptx_coef"] > 0:
            metrics["ptx_loss"] = ptx_loss / updates
        if any(not math.isfinite(v) for v in metrics.values()):
            raise BadInput(f"iteration {st['iteration'] + 1}: a metric is not finite ({metrics}): the update diverged; lower ppo.policy_lr or ppo.clip_norm and resume")
        if s["adaptive_kl"]:
            e = max(-0.2, min(0.2, (mean_kl - s["target_kl"]) / s["target_kl"]))
            st["beta"] *= 1 + e * len(seqs) / s["kl_horizon"]
        st["cursor"], st["ptx_cursor"], st["metrics"] = cursor.json(), ptx_cursor.json(), metrics
        st["torch_rng"] = base64.b64encode(bytes(gen.get_state().tolist())).decode()
        return metrics

    return r.loop(state, step, lambda st: st["iteration"] >= s["iterations"], lambda st: st["metrics"])


def train(job):
    settings_of(job)  # refuses the stages this trainer does not train
    return {"sft": sft, "rm": rm, "ppo": ppo}[job.stage](job)


if __name__ == "__main__":
    contract.main(train)
