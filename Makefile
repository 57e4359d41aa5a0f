# relay: the two commands of the README are `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test test-twice bench bench-report schema docs clean demo

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the relay with local defaults (Redis at 127.0.0.1:6379, or a private one)
run: $(STAMP)
	$(BIN)/relay serve $(ARGS)

## demo: Redis, the VideoDB and ASAPP emulators, the relay and simulated bots; the live stream on screen (Ctrl-C stops)
demo: $(STAMP)
	$(BIN)/relay demo $(ARGS)

## test: type-check relay/ (mypy --strict, configured in pyproject.toml), then the whole test suite (starts its own redis-server on a free port)
test: $(STAMP)
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-twice: what CI runs; the suite must pass twice in a row
test-twice: test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

## bench: every benchmark workload against the baselines and the py-spy profiles (about 25 min), then docs/performance.md
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench all $(BENCH_ARGS)

## bench-report: regenerate docs/performance.md and docs/performance.png from bench/results/
bench-report: $(BENCH_STAMP)
	$(BIN)/python -m bench.report

## schema: print the event JSON Schema
schema: $(STAMP)
	$(BIN)/relay schema

## docs: regenerate docs/events.md and docs/asyncapi.yaml from the schema and the real parsers
docs: $(STAMP)
	$(BIN)/python -m relay.tools.eventdocs > docs/events.md
	$(BIN)/python -m relay.tools.asyncapi > docs/asyncapi.yaml

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
