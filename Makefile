# The two commands of a fresh clone (see README): `make plan` and `make test`.
# Each sets up what it needs itself, and only that: `make plan` installs the runtime dependencies,
# `make drill` adds the drill extra, `make test` / `make test-fast` / `make lint` the test extra.
# The virtual environment is created when missing and each part is refreshed when pyproject.toml or
# constraints.txt changes (one stamp per part). constraints.txt pins every version, with either
# installer (INSTALLER=auto picks uv where it is here or installable, pip otherwise; see
# scripts/setup_venv.sh). Set-up talks on stderr only: `make plan` prints the JSON document alone.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV ?= dev
INSTALLER ?= auto
PYTEST_ARGS ?=
# When set, each test tier writes its JUnit XML there (<tier>.xml); .ci/run sets it.
JUNIT_DIR ?=
DEVICES ?= 20
# Workers for the tiers whose tests are independent of each other (programs, orchestrator, ops):
# pytest-xdist, one per core by default; JOBS=0 runs them in this process, one test after another.
JOBS ?= auto
# Workers for the engine tier: two (each test runs a Pulumi CLI, its plugins and a moto server, so
# one worker per core on a big machine would mostly wait on each other), whole test files per
# worker (--dist loadfile: a module's shared deployment is built once); JOBS=0 runs it in one process.
ENGINE_JOBS ?= $(if $(filter 0,$(JOBS)),0,2)
ROUTING ?= failover
# test-fast: the revision a change is measured against (default: the merge base of HEAD with main),
# and ALL=1 to run every quick test (less those marked slow) whatever changed.
BASE ?=
ALL ?=

export PYTHON INSTALLER

.PHONY: plan test test-quick test-fast test-map test-slow lint clean drill drill-deps browser-deps

SETUP := scripts/setup_venv.sh
SETUP_INPUTS := pyproject.toml constraints.txt $(SETUP)

# The runtime dependencies: what `orchestrate` needs to plan, preview and deploy.
$(VENV)/.runtime: $(SETUP_INPUTS)
	@$(SETUP) $(VENV) "" $@ >&2

# The drill extra (device SDK, DNS server, local CA, moto) on top.
$(VENV)/.drill: $(VENV)/.runtime
	@$(SETUP) $(VENV) drill $@ >&2

# The test extra (and the drill's, which the drill tier needs): the whole suite's set-up.
$(VENV)/.installed: $(VENV)/.runtime
	@$(SETUP) $(VENV) test,drill $@ >&2

## plan: the main job with no cloud account: every stack of $(ENV) evaluated under Pulumi mocks
plan: $(VENV)/.runtime
	@$(BIN)/orchestrate --env $(ENV) plan --all --json

# A Debian package installed where its program is missing: $(call apt_need,PROGRAM,PATH,PACKAGE,WHO NEEDS IT).
# As root with apt-get it is installed; otherwise the line says what to install and the target fails.
define apt_need
	@command -v $(1) >/dev/null 2>&1 || test -x $(2) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(3) (apt-get)" >&2; \
	    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(3) >&2; \
	  else echo "$(4) needs $(3): sudo apt-get install -y $(3)" >&2; exit 1; fi; }
endef

## drill-deps: Debian's mosquitto, the local drill's MQTT brokers, installed where missing (root + apt)
drill-deps:
	$(call apt_need,mosquitto,/usr/sbin/mosquitto,mosquitto,the local drill)

## browser-deps: Debian's chromium, which the drill tier's picture test draws the timeline in (root + apt)
browser-deps:
	$(call apt_need,chromium,/usr/bin/chromium,chromium,the drill tier's picture test)

## drill: the failover game day on this machine (no AWS account): report and timeline under .orchestrate/drills/
drill: $(VENV)/.drill drill-deps
	$(BIN)/orchestrate --env $(ENV) drill --local --devices $(DEVICES) --routing $(ROUTING)

# One test tier: $(call tier,NAME,PATHS AND OPTIONS). Its JUnit XML goes to $(JUNIT_DIR)/NAME.xml when
# JUNIT_DIR is set. pytest's exit 5 (no test collected, e.g. a -k that selects nothing in this tier)
# is not a failure of the tier; .ci/run fails a run in which no test ran at all.
define tier
	@echo "test tier $(1): $(2)" >&2
	@status=0; $(BIN)/python -m pytest $(2) $(if $(JUNIT_DIR),--junitxml=$(JUNIT_DIR)/$(1).xml) $(PYTEST_ARGS) \
	  || status=$$?; [ $$status = 0 ] || [ $$status = 5 ] || exit $$status
endef

# The quick tiers, each stopping at its first failure; $(1): more arguments for the lint tier,
# $(2): for the programs and orchestrator tiers.
define quick_tiers
	$(call tier,lint,-x tests/test_lint.py$(1))
	$(call tier,programs,-x -n $(JOBS) tests/programs$(2))
	$(call tier,orchestrator,-x -n $(JOBS) tests/orchestrator$(2))
endef

## test-quick: the quick tiers (lint with ruff, mypy and the import rules; programs under mocks; orchestrator)
test-quick: $(VENV)/.installed
	$(call quick_tiers,)

## test-fast: the edit-run loop: ruff and the import rules, then the programs and orchestrator tests your change can reach (scripts/affected_tests.py: against the merge base with main, or BASE=REV; ALL=1: every one of them; with a test map from `make test-map`, a change inside function bodies runs only the test files that ran those functions), without mypy and the tests marked slow (`make test` runs everything)
test-fast: $(VENV)/.installed
	$(call tier,lint,-x tests/test_lint.py --deselect tests/test_lint.py::test_mypy_finds_nothing)
	@$(BIN)/python scripts/affected_tests.py --run --tier programs --tier orchestrator --jobs $(JOBS) \
	  $(if $(ALL),--all) $(if $(BASE),--base $(BASE)) $(if $(JUNIT_DIR),--junit-dir $(JUNIT_DIR)) -- $(PYTEST_ARGS)

## test-map: record which functions each programs and orchestrator test file runs (each file in its own traced pytest process; 43 min on a busy 2-core machine, see docs/performance.md) into .cache/test-map.json (not committed), for test-fast's per-function selection; run it again on a fresh main (test-fast says when files differ from the map)
test-map: $(VENV)/.installed
	@$(BIN)/python scripts/affected_tests.py --build-map --jobs $(if $(filter auto,$(JOBS)),auto,$(if $(filter 0,$(JOBS)),1,$(JOBS)))

## test-slow: the slow tiers (ops against moto, the real engine, a small drill)
test-slow: $(VENV)/.installed drill-deps browser-deps
	$(call tier,ops,-n $(JOBS) tests/ops)
	$(call tier,engine,-n $(ENGINE_JOBS) --dist loadfile tests/engine)
	$(call tier,drill,tests/drill)

## test: the whole suite: the quick tiers first (a failure there stops the run), then the slow ones
test: $(VENV)/.installed
	@$(MAKE) --no-print-directory test-quick
	@$(MAKE) --no-print-directory test-slow

lint: $(VENV)/.installed
	$(BIN)/ruff check orchestrator programs tests bench

clean:
	rm -rf $(VENV) .pulumi-state .orchestrate .ci-results .cache
