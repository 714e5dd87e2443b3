#!/usr/bin/env bash
# The real-text run of the README ("A real-text run"): imports the HH-RLHF
# sample (../shared/data/hh-rlhf, or the file given) as a dataset and as
# labels, makes and imports a random-init GPT-2-BPE base model
# (scripts/hf_gpt2.py, with Debian's python3-torch, installed when missing),
# trains an independent judge (the reward model of run hh-judge, seed 2, on
# the other half of the pairs),
# then runs examples/hh.yaml (SFT -> RM on the imported pairs -> PPO -> eval
# judged by both reward models) through Temporal with a worker of its own,
# and prints the report with three samples. Needs a running stack
# (`instructflow dev`, or the INSTRUCTFLOW_* variables of another server).
set -euo pipefail
cd "$(dirname "$0")/.."
hh="${1:-../shared/data/hh-rlhf/harmless-base-test.jsonl.gz}"
[ -r "$hh" ] || { echo "hh_example: no HH-RLHF file at $hh; give its path" >&2; exit 1; }
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	echo "hh_example: apt-get install python3-torch (to make the random-init base model)" >&2
	if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq python3-torch >/dev/null; else sudo apt-get install -y -qq python3-torch >/dev/null; fi
fi
work="$(mktemp -d)"
worker=
trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/instructflow" ./cmd/instructflow
if="$work/instructflow"

# The base: GPT-2's tokenizer files (tokenizer/testdata/gpt2) on a small
# random-init GPT-2 (no pretrained weights can be had offline).
mkdir -p "$work/tok"
gunzip -c tokenizer/testdata/gpt2/vocab.json.gz >"$work/tok/vocab.json"
gunzip -c tokenizer/testdata/gpt2/merges.txt.gz >"$work/tok/merges.txt"
/usr/bin/python3 scripts/hf_gpt2.py random-folder "$work/base" --n-embd 64 --n-layer 2 --n-head 2 \
	--n-positions 192 --dtype f32 --shards 1 --tokenizer "$work/tok" --seed 1
"$if" model import gpt2-mini "$work/base"

# The data: chosen transcripts as demonstrations (4 with a blank chosen
# response are skipped, and listed), a tenth of the prompts held out by
# their hash. The pairs are split in two by line: the odd lines' labels
# (labeler hh-a) train the run's reward model, the even lines' (hh-b) the
# independent judge's, so that the judge has seen none of the run's
# preference labels (both runs' SFT imitate the same chosen responses).
"$if" data import "$hh" --dataset hh --format hh --heldout-fraction 0.1 --skip-invalid
gzip -cdf "$hh" | awk 'NR % 2 == 1' >"$work/pairs-a.jsonl"
gzip -cdf "$hh" | awk 'NR % 2 == 0' >"$work/pairs-b.jsonl"
"$if" labels import "$work/pairs-a.jsonl" --format hh --heldout-fraction 0.1 --labeler hh-a
"$if" labels import "$work/pairs-b.jsonl" --format hh --heldout-fraction 0.1 --labeler hh-b
"$if" labels snapshot hh-pairs --labeler hh-a --exclude-flagged
"$if" labels snapshot hh-judge-pairs --labeler hh-b --exclude-flagged
"$if" data show hh --model gpt2-mini --template hh

"$if" worker >"$work/worker.log" 2>&1 &
worker=$!
"$if" run start -f examples/hh.yaml --set id=hh-judge --set seed=2 --set labels.snapshot=hh-judge-pairs \
	--set ppo.iterations=1 --set eval.samples=0 --wait >/dev/null
"$if" run start -f examples/hh.yaml --set eval.judge=hh-judge:rm --wait >/dev/null
"$if" run report hh-judge | grep '^reward model:' | sed 's/^/judge (hh-judge) /'
"$if" run report hh-1 --samples 3
