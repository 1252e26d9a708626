PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: gen test lint check bench serve clean import diff sync

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV_STAMP)

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

bench: $(VENV_STAMP)
	$(PY) bench/run.py

serve: $(VENV_STAMP)
	$(PY) -m fal_runtime.local --port $${PORT:-8765} --ca-file $${CA_FILE:-.local-ca.pem}

clean:
	rm -rf .venv .pytest_cache .mypy_cache

import: $(VENV_STAMP)
	$(PY) -m codegen import $(SOURCE)

diff: $(VENV_STAMP)
	$(PY) -m codegen diff $(BASE)

sync: $(VENV_STAMP)
	$(PY) -m codegen sync $(SYNC_ARGS)

check: $(VENV_STAMP)
	$(PY) -m codegen check
