"""The trainer side of InstructFlow's external-trainer contract (docs/trainer-contract.md).

A worker starts the trainer with the job file named in $INSTRUCTFLOW_JOB and the
object store's credentials in the environment. The trainer reads its inputs and
data with `$INSTRUCTFLOW_BIN ckpt get`, commits checkpoints under the job's
output prefix with `$INSTRUCTFLOW_BIN ckpt put`, prints progress as JSON lines
on stdout, and exits 0 when done, 3 for bad input, anything else to be retried.
"""
import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

EXIT_BAD_INPUT = 3
BAD_INPUT_FILE = "bad_input"  # in the job's work_dir


class BadInput(Exception):
    """A problem with the job's input or settings: the stage fails without a retry, with this message."""


class Job:
    def __init__(self, path):
        try:
            with open(path) as f:
                self.raw = json.load(f)
        except (OSError, ValueError) as e:
            raise BadInput(f"job file {path}: {e}")
        if self.raw.get("contract") != 1:
            raise BadInput(f"job file {path}: contract {self.raw.get('contract')!r}; this trainer speaks contract 1")
        for k in ("run", "stage", "attempt", "seed", "threads", "inputs", "data", "settings", "output",
                  "resume_from", "heartbeat_seconds", "grace_seconds", "work_dir", "tokenizer"):
            setattr(self, k, self.raw.get(k))
        self.args = self.raw.get("args") or {}
        self.prefix = self.output["prefix"]
        self.bin = os.environ.get("INSTRUCTFLOW_BIN", "instructflow")

    def ckpt_get(self, cp, into):
        """Fetches a committed checkpoint ({key, sha256}) into a fresh folder, every file verified."""
        shutil.rmtree(into, ignore_errors=True)
        _run([self.bin, "ckpt", "get", cp["key"], into, "--sha256", cp["sha256"], "--json"])
        return into

    def ckpt_put(self, folder, step):
        """Commits a folder as the stage's checkpoint at step; returns its key."""
        key = f"{self.prefix}{step}/"
        _run([self.bin, "ckpt", "put", folder, key, "--json"])
        return key

    def read_jsonl(self, role, folder):
        name = self.data["files"].get(role)
        if name is None:
            return []
        with open(os.path.join(folder, name)) as f:
            return [json.loads(line) for line in f if line.strip()]


def _run(argv):
    # A session of its own: the SIGTERM sent to the trainer's process group must not cut
    # short the commit the trainer makes on SIGTERM.
    p = subprocess.run(argv, capture_output=True, text=True, start_new_session=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}: {p.stderr.strip() or p.stdout.strip()}")
    return json.loads(p.stdout)


class Progress:
    """Prints progress lines (rank 0 only) and repeats the last one while a step runs
    longer than a third of the heartbeat timeout, so a slow step is not taken for a hang."""

    def __init__(self, job, enabled):
        self.enabled, self.lock = enabled, threading.Lock()
        self.last = None
        if enabled:
            every = max(0.5, float(job.heartbeat_seconds or 30) / 3)
            t = threading.Thread(target=self._beat, args=(every,), daemon=True)
            t.start()

    def report(self, step, total, metrics=None, checkpoint=None):
        if not self.enabled:
            return
        line = {"step": step, "total": total}
        metrics = {k: v for k, v in (metrics or {}).items() if math.isfinite(v)}  # JSON has no NaN
        if metrics:
            line["metrics"] = metrics
        if checkpoint:
            line["checkpoint"] = checkpoint
        self._print(line)

    def _print(self, line):
        with self.lock:
            self._write(line)

    def _write(self, line):
        self.last = time.monotonic(), {"step": line["step"], "total": line["total"]}
        sys.stdout.write(json.dumps(line, allow_nan=False) + "\n")
        sys.stdout.flush()

    def _beat(self, every):
        while True:
            time.sleep(every / 2)
            with self.lock:  # checked and printed at once: never an older step after a newer one
                if self.last is not None and time.monotonic() - self.last[0] >= every:
                    self._write(self.last[1])


class Stop:
    """SIGTERM (a pause, a cancel, a worker stopping): the training loop saves and exits."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True


def die_with_parent():
    """Linux: get SIGKILL when the parent (the worker, or torchrun) dies, so no orphan keeps training."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:
        os._exit(1)


def main(train):
    """Runs train(job) with the contract's exit statuses."""
    die_with_parent()
    path, job = os.environ.get("INSTRUCTFLOW_JOB"), None
    try:
        if not path:
            raise BadInput("INSTRUCTFLOW_JOB is not set: this trainer is started by an InstructFlow worker (trainer: exec)")
        job = Job(path)
        code = train(job)
    except BadInput as e:
        print(f"train.py: {e}", file=sys.stderr, flush=True)
        if job is not None and job.work_dir:
            # The verdict survives launchers that change the exit status (torchrun exits 1).
            with open(os.path.join(job.work_dir, BAD_INPUT_FILE), "w") as f:
                f.write(str(e) + "\n")
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code or 0)
