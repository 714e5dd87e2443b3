#!/usr/bin/env bash
# `make test`: installs what is missing, starts the real services on test
# ports (its own data dir, so a running `instructflow dev` is not disturbed),
# runs gofmt, go vet and the tests against them, then stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
. scripts/openblas-env.sh

export INSTRUCTFLOW_DATA_DIR="$PWD/.instructflow-test"
# The runtime role (what workers and the CLI use) and the schema's owner
# (migrations, fresh test databases); dev creates both.
export INSTRUCTFLOW_POSTGRES_URL="postgres://instructflow:instructflow@127.0.0.1:15432/instructflow?sslmode=disable"
export INSTRUCTFLOW_POSTGRES_OWNER_URL="postgres://instructflow_owner:instructflow_owner@127.0.0.1:15432/instructflow?sslmode=disable"
export INSTRUCTFLOW_TEMPORAL_ADDRESS=127.0.0.1:17233
export INSTRUCTFLOW_TEMPORAL_UI_PORT=18233
export INSTRUCTFLOW_TEMPORAL_TASK_QUEUE=instructflow-test
export INSTRUCTFLOW_S3_ENDPOINT=http://127.0.0.1:19000

unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "test: gofmt needed on:" >&2; echo "$unformatted" >&2; exit 1
fi
go vet ./...
# Without cgo (and so off amd64) the pure-Go kernels build in.
for arch in amd64 arm64; do CGO_ENABLED=0 GOARCH=$arch go build ./...; done

go build -o bin/instructflow ./cmd/instructflow
mkdir -p "$INSTRUCTFLOW_DATA_DIR"
log="$INSTRUCTFLOW_DATA_DIR/dev.log"
bin/instructflow dev >"$log" 2>&1 &
dev=$!
stop_stack() {
	kill -INT "$dev" 2>/dev/null || true
	for _ in $(seq 1 120); do
		kill -0 "$dev" 2>/dev/null || break
		sleep 0.5
	done
	kill -KILL "$dev" 2>/dev/null || true
	wait "$dev" 2>/dev/null || true
}
trap stop_stack EXIT
for _ in $(seq 1 600); do
	grep -q 'instructflow dev: ready' "$log" && break
	if ! kill -0 "$dev" 2>/dev/null; then
		echo "test: the local stack did not start:" >&2; cat "$log" >&2; exit 1
	fi
	sleep 0.5
done
grep -q 'instructflow dev: ready' "$log" || { echo "test: the local stack was not ready after 5 minutes:" >&2; cat "$log" >&2; exit 1; }
cat "$log"

export INSTRUCTFLOW_INTEGRATION=1 INSTRUCTFLOW_E2E=1
# Numerics-heavy packages (the trainers and the end-to-end demo run) run
# without -race: it makes them ~10x slower, and the engine they run on
# shares nothing between goroutines but fixed, disjoint chunks - which the
# engine's own tests, in the -race group, check.
# The pipeline's fault-injection test trains three short runs end to end
# on a private stack of its own; it runs last, alone, without -race.
numeric='/sft$|/rewardmodel$|/ppo$|/demo$|/internal/ownmodel$|/internal/owndata$|/internal/exttrainer$'
faults=./internal/faulttest
go test -race -count=1 -timeout 30m $(go list ./... | grep -Ev "$numeric|/internal/faulttest$")
go test -count=1 -timeout 30m $(go list ./... | grep -E "$numeric")
go test -count=1 -timeout 30m "$faults"
# The pure-Go kernels (no cgo, no OpenBLAS) pass the same tests.
go test -count=1 -tags purego ./model/... ./tokenizer/... ./sft ./rewardmodel ./ppo
