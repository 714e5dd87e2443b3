#!/usr/bin/env bash
# Peak resident memory of each pipeline stage as the data grows (issue:
# memory bounded by the batch, not by the data). Runs the tiny preset at 1x,
# 4x and 16x its data -- demo prompts (5,000 -> 80,000, one in five held
# out), labels.prompts and labels.heldout_prompts (so 16x samples ~1.5M
# responses and the RM trains on ~16x the comparisons), and with them the
# SFT demonstrations, the PPO prompts and the evaluation's held-out prompts
# -- and prints the stage metric peak_rss_mb (the worker's VmHWM over the
# stage, reset at its start) per stage and scale, with the 16x/1x ratio.
#
# Training work is cut down (20 SFT and RM steps, 2 PPO iterations): memory
# depends on batch sizes, the model and the data a stage holds, not on how
# many steps it takes, so the figures are those of full runs at these data
# sizes. Responses are cut to 8 new tokens (the preset: 14) in the labels
# stage and in PPO (and so in the evaluation) to keep 16x to about 15
# minutes on 2 cores: the KV cache and the responses' size depend on it, so
# the absolute figures are a little below a run with 14, the growth with the
# data the same; BENCH_MEMORY_MAX_NEW_TOKENS=14 measures the preset's
# lengths. A short SFT gives a nearly untrained policy, whose samples are
# longer and more often distinct than a trained one's: the worst case for
# the labels and RM stages.
#
# Each scale gets a fresh database (bench_memory_xN) and a worker process of
# its own (on a task queue of its own), so the figures are one worker's,
# computing one stage at a time. Needs a running stack (`instructflow dev`,
# or the INSTRUCTFLOW_* variables of another one, e.g. /work/notes/testenv.sh).
#
# Usage: scripts/bench_memory.sh [SCALE ...]   (default: 1 4 16)
# BENCH_MEMORY_OUT=DIR keeps each scale's run report, run and worker logs.
set -euo pipefail
cd "$(dirname "$0")/.."
scales=("$@")
[ ${#scales[@]} -gt 0 ] || scales=(1 4 16)
url="${INSTRUCTFLOW_POSTGRES_URL:-postgres://instructflow:instructflow@127.0.0.1:5432/instructflow?sslmode=disable}"
owner_url="${INSTRUCTFLOW_POSTGRES_OWNER_URL:-postgres://instructflow_owner:instructflow_owner@127.0.0.1:5432/instructflow?sslmode=disable}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# OpenBLAS may pick slower kernels than the CPU has (the worker warns);
# memory does not depend on them, time does.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
	if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=SkylakeX
	elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then export OPENBLAS_CORETYPE=Haswell; fi
fi
go build -o "$work/instructflow" ./cmd/instructflow
bin="$work/instructflow"
base="${url%%\?*}"; base="${base%/*}"; query="${url#*\?}"
obase="${owner_url%%\?*}"; obase="${obase%/*}"; oquery="${owner_url#*\?}"
stamp="$(date +%s)"
tokens="${BENCH_MEMORY_MAX_NEW_TOKENS:-8}"

for f in "${scales[@]}"; do
	db="bench_memory_x$f"
	psql "$owner_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
	INSTRUCTFLOW_POSTGRES_URL="$base/$db?$query" INSTRUCTFLOW_POSTGRES_OWNER_URL="$obase/$db?$oquery" "$bin" db migrate >/dev/null
	(
		export INSTRUCTFLOW_POSTGRES_URL="$base/$db?$query"
		export INSTRUCTFLOW_TEMPORAL_TASK_QUEUE="bench-memory-$stamp-x$f"
		export INSTRUCTFLOW_WORKER_METRICS_ADDRESS=127.0.0.1:0
		id="bench-memory-$stamp-x$f"
		"$bin" data load-demo --prompts $((5000 * f)) >/dev/null
		cat >"$work/x$f.yaml" <<-EOF
			preset: tiny
			id: $id
			sft: {steps: 20, warmup: 2, checkpoint_every: 20, eval_every: 20}
			labels: {prompts: $((4000 * f)), heldout_prompts: $((400 * f)), max_new_tokens: $tokens}
			rm: {steps: 20, warmup: 2, checkpoint_every: 20, eval_every: 20}
			gate: {min_rm_accuracy: 0}
			ppo: {iterations: 2, checkpoint_every: 2, max_new_tokens: $tokens}
		EOF
		"$bin" worker >"$work/worker-x$f.log" 2>&1 &
		worker=$!
		"$bin" labels simulate --run "$id" --wait 2h >"$work/simulate-x$f.log" 2>&1 &
		simulate=$!
		trap 'kill -INT $simulate $worker 2>/dev/null || true; wait $simulate $worker 2>/dev/null || true' EXIT
		t0=$(date +%s)
		status=0
		"$bin" run start -f "$work/x$f.yaml" --wait >"$work/run-x$f.log" 2>&1 || status=$?
		if [ "$status" != 0 ]; then
			echo "bench_memory: run $id (x$f) failed:" >&2
			tail -20 "$work/run-x$f.log" "$work/worker-x$f.log" >&2
			exit 1
		fi
		"$bin" run report "$id" --json >"$work/report-x$f.json"
		echo "x$f: run $id took $(($(date +%s) - t0))s" >&2
	) || exit 1
	if [ -n "${BENCH_MEMORY_OUT:-}" ]; then
		mkdir -p "$BENCH_MEMORY_OUT"
		cp "$work"/*-x"$f".* "$BENCH_MEMORY_OUT"/
	fi
	psql "$owner_url" -qc "DROP DATABASE $db WITH (FORCE)"
done

# table UNIT FIELD: one row per stage, one column per scale (the stage
# result's FIELD, a jq path), and the ratio of the last scale to the first.
table() {
	for f in "${scales[@]}"; do
		jq -r --arg f "$f" ".stages[] | select(.result.metrics.peak_rss_mb != null) | \"\(.name) \(\$f) \($2)\"" \
			"$work/report-x$f.json"
	done | awk -v scales="${scales[*]}" -v unit="$1" '
	{ v[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
	END {
		ns = split(scales, s, " ")
		printf "%-9s", "stage"
		for (i = 1; i <= ns; i++) printf "%12s", s[i] "x " unit
		if (ns > 1) printf "%12s", s[ns] "x/" s[1] "x"
		printf "\n"
		for (j = 1; j <= n; j++) {
			st = order[j]
			printf "%-9s", st
			for (i = 1; i <= ns; i++) printf "%12s", ((st, s[i]) in v) ? sprintf("%.0f", v[st, s[i]]) : "-"
			if (ns > 1 && (st, s[1]) in v && (st, s[ns]) in v && v[st, s[1]] > 0) printf "%12.2f", v[st, s[ns]] / v[st, s[1]]
			printf "\n"
		}
	}'
}
echo "peak RSS of the worker per stage (stage metric peak_rss_mb):"
table MB .result.metrics.peak_rss_mb
echo
echo "time computing per stage (stage result seconds):"
table s .result.seconds
