#!/usr/bin/env bash
# Peak memory of the Hugging Face import and export (issue: "GPT-2 124M (random
# init, HF layout, F16, 2 shards): import and export each within 2x the model's
# F32 size in peak RSS"). Not run in CI.
#
# Needs a running stack: `bin/instructflow dev` in another terminal (or the
# INSTRUCTFLOW_* variables of another server), /usr/bin/time (Debian package
# `time`) and /usr/bin/python3 with python3-torch.
#
# Makes a random-init GPT-2 124M folder (F16, 2 shards, the real GPT-2
# tokenizer files from tokenizer/testdata/gpt2), then runs under /usr/bin/time -v
#   bin/instructflow model import bench-gpt2-<random> DIR
#   bin/instructflow model export --from models/bench-gpt2-<random> OUT
# and prints for each: wall seconds, peak RSS MiB, the F32 size MiB (parameters*4)
# and the ratio peak/F32 (target <= 2). Last, checks the export is the same
# model: scripts/hf_gpt2.py computes logits of the original folder and of the
# export in float64; F16 -> F32 is exact, so they must agree exactly.
# The imported model stays in the stack's model store.
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3
if [[ ! -x /usr/bin/time ]]; then
	echo "bench_hf.sh: /usr/bin/time is missing; install it with: apt-get install -y time" >&2
	exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

go build -o bin/instructflow ./cmd/instructflow

mkdir "$work/tok"
gunzip -c tokenizer/testdata/gpt2/vocab.json.gz >"$work/tok/vocab.json"
gunzip -c tokenizer/testdata/gpt2/merges.txt.gz >"$work/tok/merges.txt"
"$py" scripts/hf_gpt2.py random-folder "$work/gpt2" --n-embd 768 --n-layer 12 --n-head 12 --n-positions 1024 \
	--dtype f16 --shards 2 --tokenizer "$work/tok" --seed 0
params="$("$py" -c '
import glob, math, sys
sys.path.insert(0, "scripts")
import hf_gpt2
print(sum(math.prod(e["shape"]) for f in glob.glob(sys.argv[1] + "/*.safetensors")
          for e in hf_gpt2.read_header(f)[0].values()))' "$work/gpt2")"
f32_mb="$(awk -v p="$params" 'BEGIN { printf "%.1f", p * 4 / 1048576 }')"

# report NAME TIMEFILE prints one line from /usr/bin/time -v's output.
report() {
	awk -v what="$1" -v f32="$f32_mb" '
		/Elapsed \(wall clock\)/ { n = split($NF, a, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + a[i] }
		/Maximum resident set size/ { rss = $NF / 1024 }
		END { printf "%-7s wall %7.2f s  peak RSS %8.1f MiB  F32 size %8.1f MiB  peak/F32 %.2f (target <= 2)\n", what, wall, rss, f32, rss / f32 }
	' "$2"
}

name="bench-gpt2-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
/usr/bin/time -v -o "$work/import.time" bin/instructflow model import "$name" "$work/gpt2"
/usr/bin/time -v -o "$work/export.time" bin/instructflow model export --from "models/$name" "$work/export"
echo "GPT-2 124M, $params parameters, F16, 2 shards ($name)"
report import "$work/import.time"
report export "$work/export.time"

"$py" -c '
import json, random, sys
random.seed(0)
V = json.load(open(sys.argv[1] + "/config.json"))["vocab_size"]
print(json.dumps([[random.randrange(V) for _ in range(32)] for _ in range(2)]))' "$work/gpt2" >"$work/ids.json"
"$py" scripts/hf_gpt2.py logits "$work/gpt2" --ids "$work/ids.json" --out "$work/orig.safetensors"
"$py" scripts/hf_gpt2.py compare "$work/export" --ids "$work/ids.json" --logits "$work/orig.safetensors" --tol 0
