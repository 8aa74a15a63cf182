# The two commands a newcomer needs:  make simulate   and   make test
# Every target sets the project up first (a no-op when nothing changed).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
ARGS ?=

.PHONY: setup simulate test test-embedded test-anvil audit bench experiment

setup:
	@bash tools/setup.sh

# The main job on an anvil of its own (ARGS="--network ethereum:local:test" for the embedded chain).
simulate: setup
	ape run simulate $(ARGS)

# The whole suite on the embedded provider, the contract tests again on anvil, then Slither.
test: setup test-embedded test-anvil audit

test-embedded:
	ape test tests -q

test-anvil:
	ape test tests/contracts -q --network ethereum:local:foundry

audit:
	@if [ -f tools/audit.sh ]; then bash tools/audit.sh; fi
