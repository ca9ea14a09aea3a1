# deploy-guard: `make test` runs every check; `make demo` guards a throwaway local host.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STATE ?= /tmp/deploy-guard-demo

.PHONY: venv lint typecheck unit integration test demo demo-down clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration -q

# One pytest run for every tier, so its closing line counts them all.
test: lint typecheck
	$(PY) -m pytest tests -q

# Installs what the machine lacks (scripts/install-deps.sh), boots a Debian container with
# systemd as PID 1, sshd on 127.0.0.1 and sample backup units (real restic), then shows the
# gate at work: init and plan, a guarded apply, a failing backup closing the gate, an
# override and its audit record (scripts/demo.sh, one function per scene). No `venv`
# prerequisite: python3-venv may be what the machine lacks.
demo:
	DEMO_STATE=$(DEMO_STATE) VENV=$(VENV) scripts/demo.sh

demo-down:
	$(PY) -m tests.testbed down --state $(DEMO_STATE)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
