# The two commands of a fresh clone (see README): `make plan` and `make test`.
# Each sets up what it needs itself: the virtual environment is created when missing and
# refreshed when pyproject.toml or constraints.txt changes. constraints.txt pins every version
# (the same file every workflow installs with).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV ?= dev
PYTEST_ARGS ?=

.PHONY: plan test lint clean

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

## test: the whole suite (programs under mocks, orchestrator, ops against moto, real engine)
test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check orchestrator programs tests bench

clean:
	rm -rf $(VENV) .pulumi-state .orchestrate
