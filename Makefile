# shibafu: build, test and demo entry points. Run as root on a fresh Debian machine:
#   make demo    build, start a 3-node lab, show networks and nodes (make demo-down removes it)
#   make test    dependencies, format, clippy, then the unit, host and lab test tiers
#   make chaos   the lab chaos test for 5 minutes (SHIBAFU_CHAOS_SEED=N replays a run)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
BIN_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug
TIER := scripts/test-tier.sh
export SHIBAFU_BIN_DIR := $(BIN_DIR)

# Integration test files, one cargo --test per file. In tests/tests, lab_*.rs is the lab tier
# and every other file the host tier.
OVERLAY_ITESTS := $(patsubst overlay/tests/%.rs,--test %,$(wildcard overlay/tests/*.rs))
LAB_FILES := $(wildcard tests/tests/lab_*.rs)
HOST_FILES := $(filter-out $(LAB_FILES),$(wildcard tests/tests/*.rs))
HOST_TESTS := $(patsubst tests/tests/%.rs,--test %,$(HOST_FILES))
LAB_TESTS := $(patsubst tests/tests/%.rs,--test %,$(LAB_FILES))

.PHONY: build deps lint fmt-check clippy test unit host lab chaos demo demo-down

deps:
	deploy/install-deps.sh

build:
	$(CARGO) build --workspace --bins

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy

# Tiers run in order; the first failing tier stops the run with a non-zero exit.
test: deps lint build unit host lab
	@echo "make test: all tiers passed"

unit: build
	$(TIER) unit $(CARGO) test --workspace --lib --bins
	$(if $(OVERLAY_ITESTS),$(TIER) unit-overlay $(CARGO) test -p shibafu-overlay $(OVERLAY_ITESTS),@echo "unit-overlay: no integration tests")

host: build
	$(if $(HOST_TESTS),$(TIER) host $(CARGO) test -p shibafu-tests $(HOST_TESTS),@echo "host: no host tier tests")

lab: build
	$(if $(LAB_TESTS),$(TIER) lab $(CARGO) test -p shibafu-tests $(LAB_TESTS),@echo "lab: no lab_*.rs tests")

# The chaos test alone, longer than in `make test` (60 s there).
chaos: build
	SHIBAFU_CHAOS_SECS=$${SHIBAFU_CHAOS_SECS:-300} $(TIER) chaos $(CARGO) test -p shibafu-tests --test lab_chaos -- --nocapture

demo: deps build
	scripts/demo.sh

demo-down:
	$(BIN_DIR)/shibafu-lab --name demo down
	rm -rf /tmp/shibafu-demo
