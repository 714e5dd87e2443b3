#!/usr/bin/env bash
# PPO iteration time, split into sampling, scoring and update, and the share
# of CPU time spent outside the engine's kernels (target < 10%), from a CPU
# profile of ppo.BenchmarkIteration (the demo's shape).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/ppo.test" ./ppo
"$work/ppo.test" -test.run '^$' -test.bench BenchmarkIteration -test.benchtime 20x -test.cpuprofile "$work/cpu.prof" | grep -E 'Benchmark|ok'
go tool pprof -top -nodecount=100000 "$work/ppo.test" "$work/cpu.prof" 2>/dev/null >"$work/top.txt"
awk '
	/^ *[0-9.]+m?s +[0-9.]+% / {
		v = $1; unit = 1
		if (v ~ /ms$/) { sub(/ms$/, "", v); unit = 0.001 } else { sub(/s$/, "", v) }
		t = v * unit; total += t
		if ($6 ~ /model\/kernel\.|_cgo|cgocall|sgemm|openblas|gotoblas|kernel_|libc[.]so/) kern += t
	}
	END { printf "kernel time %.2fs of %.2fs sampled: %.1f%% outside the kernels (target < 10%%)\n", kern, total, 100 * (total - kern) / total }
' "$work/top.txt"
