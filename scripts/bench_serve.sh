#!/usr/bin/env bash
# Load benchmark of the labeling app (issue: labeling app): N labelers
# (default 50), each an HTTP client with a session of its own, submit L
# labels (default 5000) concurrently, each taking THINK (default 1s) per item to a real `instructflow serve` on a
# fresh database; prints p50/p99 submit latency and checks that no label is
# lost or duplicated. Needs a running stack (`instructflow dev`, or the
# INSTRUCTFLOW_* variables of another server). All labelers come from one
# address here, so the sign-in rate limit is raised for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
labelers="${1:-50}"
labels="${2:-5000}"
think="${3:-1s}"   # per item and labeler; 0 = a closed loop that saturates the server
. scripts/bench_dbs.sh
work="$(mktemp -d)"
go build -o "$work/instructflow" ./cmd/instructflow
go build -o "$work/loadlabels" ./scripts/loadlabels

bench_dbs bench_serve bench_serve_unused
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
INSTRUCTFLOW_POSTGRES_URL="$import_url" INSTRUCTFLOW_SERVE_ADDRESS="127.0.0.1:$port" INSTRUCTFLOW_SERVE_SIGNIN_RATE=1000 "$work/instructflow" serve >"$work/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; bench_dbs_drop; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
"$work/loadlabels" -url "http://127.0.0.1:$port" -db "$import_url" -labelers "$labelers" -labels "$labels" -think "$think"
