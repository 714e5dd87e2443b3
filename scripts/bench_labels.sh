#!/usr/bin/env bash
# Side-by-side benchmark of the label import and the audit (issue: preference
# data). Imports the same N pairwise rows (default 1,000,000) through
# `instructflow labels import` and through psql \copy + the same set-based SQL
# into the same schema, each into a fresh database, prints both times and the
# ratio (psql time / import time: >= 0.8 means the import is at most 1.25x
# slower than psql), then times `labels audit` on the imported rows.
# Needs a running stack (`instructflow dev`, or the INSTRUCTFLOW_* variables of
# another server).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
. scripts/bench_dbs.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

go build -o "$work/instructflow" ./cmd/instructflow
go run ./scripts/genrows -kind pairs -n "$n" -jsonl "$work/pairs.jsonl" -csv "$work/pairs.csv"
ls -l "$work/pairs.jsonl" "$work/pairs.csv" | awk '{print $5, $9}'

bench_dbs bench_import bench_psql

t0=$(now)
INSTRUCTFLOW_POSTGRES_URL="$import_url" "$work/instructflow" labels import "$work/pairs.jsonl" --format pairwise
t1=$(now)
psql "$psql_url" -q -1 -v ON_ERROR_STOP=1 -f scripts/bench_labels.sql <"$work/pairs.csv"
t2=$(now)
INSTRUCTFLOW_POSTGRES_URL="$import_url" "$work/instructflow" labels audit >"$work/audit.txt"
t3=$(now)
head -3 "$work/audit.txt"

count() { psql "$1" -tAc "SELECT count(*) FROM comparisons"; }
awk -v ti="$(echo "$t1 - $t0" | bc)" -v tp="$(echo "$t2 - $t1" | bc)" -v ta="$(echo "$t3 - $t2" | bc)" \
	-v ci="$(count "$import_url")" -v cp="$(count "$psql_url")" -v n="$n" 'BEGIN {
	printf "rows %d: labels import %.1fs (%d comparisons), psql \\copy + SQL %.1fs (%d comparisons)\n", n, ti, ci, tp, cp
	printf "ratio psql/import = %.2f (target >= 0.8)\n", tp / ti
	printf "labels audit on %d comparisons: %.1fs (target < 30s)\n", ci, ta
}'
bench_dbs_drop
