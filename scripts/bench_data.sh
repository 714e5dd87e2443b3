#!/usr/bin/env bash
# Side-by-side benchmark of the dataset import (issue: your own data).
# Imports the same N prompt-completion rows (default 1,000,000) through
# `instructflow data import` and through psql \copy + the same set-based SQL
# into the same schema, each into a fresh database, and prints both times
# and the ratio (psql time / import time: >= 0.8 means the import is at most
# 1.25x slower than psql).
# Needs a running stack (`instructflow dev`, or the INSTRUCTFLOW_* variables of
# another server).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
. scripts/bench_dbs.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

go build -o "$work/instructflow" ./cmd/instructflow
go run ./scripts/genrows -kind demos -n "$n" -jsonl "$work/demos.jsonl" -csv "$work/demos.csv"
ls -l "$work/demos.jsonl" "$work/demos.csv" | awk '{print $5, $9}'

bench_dbs bench_data_import bench_data_psql

t0=$(now)
INSTRUCTFLOW_POSTGRES_URL="$import_url" "$work/instructflow" data import "$work/demos.jsonl" --dataset bench --format prompt-completion
t1=$(now)
psql "$psql_url" -q -1 -v ON_ERROR_STOP=1 -f scripts/bench_data.sql <"$work/demos.csv"
t2=$(now)

count() { psql "$1" -tAc "SELECT count(*) FROM dataset_rows"; }
awk -v ti="$(echo "$t1 - $t0" | bc)" -v tp="$(echo "$t2 - $t1" | bc)" \
	-v ci="$(count "$import_url")" -v cp="$(count "$psql_url")" -v n="$n" 'BEGIN {
	printf "rows %d: data import %.1fs (%d dataset rows), psql \\copy + SQL %.1fs (%d dataset rows)\n", n, ti, ci, tp, cp
	printf "ratio psql/import = %.2f (target >= 0.8)\n", tp / ti
}'
bench_dbs_drop
