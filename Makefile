# Sworn: `make run` starts the whole product, `make test` checks all of it.
# Both call `setup` first, which installs and verifies libtorch, Foundry and the default
# model (scripts/setup.sh); it is quick when nothing changed.

SHELL := /bin/bash
CARGO ?= cargo
export SWORN_CACHE ?= $(HOME)/.cache/sworn
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
# Builds on 2 cores run out of patience before they run out of memory.
export CARGO_TERM_COLOR ?= never

.PHONY: setup build release run test test-rust test-contracts bench lint fmt fixtures clean-cache fuzz

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --workspace --all-targets

release: setup
	$(CARGO) build --release -p sworn-service -p sworn-verifier

run: release
	@bash scripts/run.sh

test: setup
	@bash scripts/test.sh

bench: setup
	$(CARGO) bench --workspace

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Golden fixtures from Hugging Face transformers + gguf (PyPI); needs ~5 GB for the
# reference virtual environment. Not part of `make test`: the fixtures are committed.
fixtures: setup
	@bash scripts/fixtures.sh

# Every parser of untrusted bytes under cargo-fuzz, FUZZ_SECONDS each, one core (nightly;
# scripts/fuzz.sh). Not part of `make test`: the crashes it found are regression tests there.
FUZZ_SECONDS ?= 60
fuzz: setup
	@bash scripts/fuzz.sh $(FUZZ_SECONDS)
