PY := .venv/bin/python
UV := .venv/bin/uv
LOCK := requirements/dev.lock
VENV_STAMP := .venv/.installed
# The uv that installs .venv is the one the lock pins, like every other tool (any uv before the lock names one).
UV_PIN = $(shell sed -n 's/^\(uv==[^ ;]*\).*/\1/p' $(LOCK))
# `make lock` keeps every pin it can; `make lock LOCK_ARGS=--upgrade` (or `--upgrade-package ruff`) moves them.
LOCK_ARGS ?=

.PHONY: gen test lint lint-check venv lock check bench serve clean import diff sync

# .venv holds exactly what requirements/dev.lock pins (the dev extra for Python 3.11 on Linux), plus this checkout
# as an editable install: a path in a .pth file, which mypy and pyright follow from any directory. Bytecode is compiled
# at install, as pip does (uv does not unless asked): where PYTHONDONTWRITEBYTECODE is set, every process would
# otherwise compile black, pydantic and datamodel-code-generator from source (~1 s of a one-spec `make gen`).
$(VENV_STAMP): pyproject.toml $(LOCK) | $(UV)
	$(UV) pip sync -q --compile-bytecode --python $(PY) $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $(VENV_STAMP)

# uv itself comes from the host's pip (or, without one, pip bootstrapped into .venv); everything else from uv.
$(UV):
	test -x $(PY) || python3 -m venv --without-pip .venv
	python3 -m pip --python $(PY) install -q $(or $(UV_PIN),uv) \
		|| { $(PY) -m ensurepip && $(PY) -m pip install -q $(or $(UV_PIN),uv); }

venv: $(VENV_STAMP)

# Rewrites the lock from pyproject.toml: every dependency of the dev extra, pinned with hashes, for Python 3.11 on Linux.
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 --python-platform linux \
		--generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS) -o $(LOCK)

gen: $(VENV_STAMP)
	$(PY) -m codegen gen

test: $(VENV_STAMP)
	$(PY) -m codegen check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q
	$(PY) -m mypy generated fal_runtime codegen fal_cli

lint: $(VENV_STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# What CI's lint job runs on a pull request: `make test` without the tests, changing nothing.
lint-check: $(VENV_STAMP)
	$(PY) -m codegen check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(VENV_STAMP)
	$(PY) bench/run.py

serve: $(VENV_STAMP)
	$(PY) -m fal_runtime.local --port $${PORT:-8765} --ca-file $${CA_FILE:-.local-ca.pem}

clean:
	rm -rf .venv .pytest_cache .mypy_cache dist

import: $(VENV_STAMP)
	$(PY) -m codegen import $(SOURCE)

diff: $(VENV_STAMP)
	$(PY) -m codegen diff $(BASE)

sync: $(VENV_STAMP)
	$(PY) -m codegen sync $(SYNC_ARGS)

check: $(VENV_STAMP)
	$(PY) -m codegen check
