# The README's two commands: `make demo` and `make test`. Both bootstrap first (idempotent).
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: bootstrap demo test lint perf clean

bootstrap:
	@bash bootstrap.sh

demo: bootstrap
	$(VENV)/bin/tectra demo

test: bootstrap
	$(PY) -m pytest tests

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy tectra adapters

perf: bootstrap
	$(PY) perf/run.py all

clean:
	rm -rf build *.egg-info .bootstrap tectra/_*.so tectra/_*.c tectra/mgmt/v1/*_pb2*
