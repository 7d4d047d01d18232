# The two commands of a fresh clone (see README): `make plan` and `make test`.
# Each sets up what it needs itself: the virtual environment is created when missing and
# refreshed when pyproject.toml or constraints.txt changes. constraints.txt pins every version
# (the same file every workflow installs with).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV ?= dev
PYTEST_ARGS ?=
DEVICES ?= 20
ROUTING ?= failover

.PHONY: plan test lint clean drill drill-deps

# Set-up talks on stderr only, so `make plan` prints nothing but the JSON document on stdout.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "setting up $(VENV) (python, the project and its test extra)" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2
	@$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat --constraint constraints.txt \
		-e '.[test]' >&2
	@touch $@

## plan: the main job with no cloud account: every stack of $(ENV) evaluated under Pulumi mocks
plan: $(VENV)/.installed
	@$(BIN)/orchestrate --env $(ENV) plan --all --json

## drill-deps: Debian's mosquitto, the local drill's MQTT brokers, installed where missing (root + apt)
drill-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto (apt-get)" >&2; \
	    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >&2; \
	  else echo "the local drill needs mosquitto: sudo apt-get install -y mosquitto" >&2; exit 1; fi; }

## drill: the failover game day on this machine (no AWS account): report and timeline under .orchestrate/drills/
drill: $(VENV)/.installed drill-deps
	$(BIN)/orchestrate --env $(ENV) drill --local --devices $(DEVICES) --routing $(ROUTING)

## test: the whole suite (programs under mocks, orchestrator, ops against moto, real engine, a small drill)
test: $(VENV)/.installed drill-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check orchestrator programs tests bench

clean:
	rm -rf $(VENV) .pulumi-state .orchestrate
