#!/usr/bin/env bash
# Installs, machine-wide and only when missing, what InstructFlow's local
# stack and engine need: Debian's postgresql (15), libopenblas-dev, chromium
# and python3-torch (the reference external trainer), and
# the Temporal CLI and versitygw into $(go env GOPATH)/bin. Safe to re-run:
# a machine that has everything spends well under a second here.
set -euo pipefail

TEMPORAL_VERSION=v1.5.1   # later versions do not install from the module proxy
VERSITYGW_VERSION=v1.8.0

sudo_if_needed() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		echo "install-deps: need root to run: $*; run this script as root or install sudo" >&2
		exit 1
	fi
}

missing_debs=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing_debs+=(postgresql)
# The browser tests of the labeling app drive Debian's headless Chromium.
[ -x /usr/bin/chromium ] || missing_debs+=(chromium)
dpkg -s libopenblas-dev >/dev/null 2>&1 || missing_debs+=(libopenblas-dev)
# The reference external trainer (trainers/torch) and its tests.
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || missing_debs+=(python3-torch)
if [ ${#missing_debs[@]} -gt 0 ]; then
	echo "install-deps: apt-get install ${missing_debs[*]}" >&2
	sudo_if_needed apt-get update -qq
	sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
	# Debian starts a system cluster on 5432; InstructFlow runs its own.
	if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 main'; then
		sudo_if_needed pg_ctlcluster 15 main stop 2>/dev/null || true
	fi
fi

gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
install_go_tool() { # name module@version
	if [ -x "$gobin/$1" ]; then return; fi
	echo "install-deps: go install $2 (a cold build takes several minutes)" >&2
	(cd / && GOFLAGS=-mod=mod go install "$2")
}
install_go_tool temporal "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_VERSION"
install_go_tool versitygw "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
