# InstructFlow: `make quickstart` runs the main job on the local stack,
# `make test` runs every test against real services. Both install what is
# missing first (scripts/install-deps.sh), machine-wide and only once.
.PHONY: quickstart test deps build dev clean

build:
	go build -o bin/instructflow ./cmd/instructflow

deps:
	scripts/install-deps.sh

quickstart: deps build
	. scripts/openblas-env.sh && bin/instructflow quickstart

test:
	scripts/test.sh

dev: deps build
	. scripts/openblas-env.sh && bin/instructflow dev

clean:
	rm -rf bin .instructflow-test
