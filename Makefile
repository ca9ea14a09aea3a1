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

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration -q

# One pytest run for every tier, so its closing line counts them all.
test: lint typecheck
	$(PY) -m pytest tests -q

# Boots a Debian container with systemd as PID 1, sshd on 127.0.0.1 and sample backup
# units (real restic), guards it over SSH with the live view, then shuts it down.
demo: venv
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root (systemd-nspawn)"; exit 1; fi
	$(PY) -m tests.testbed down --state $(DEMO_STATE) >/dev/null
	$(PY) -m tests.testbed up forge --state $(DEMO_STATE)
	@export HOME=$(DEMO_STATE)/home DEPLOY_GUARD_SSH_CONFIG=$(DEMO_STATE)/home/.ssh/config; \
	echo; echo '$$ deploy-guard plan forge'; $(VENV)/bin/deploy-guard plan forge; \
	echo; echo '$$ deploy-guard run forge'; $(VENV)/bin/deploy-guard run forge; status=$$?; \
	$(PY) -m tests.testbed down --state $(DEMO_STATE); exit $$status

demo-down:
	$(PY) -m tests.testbed down --state $(DEMO_STATE)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
