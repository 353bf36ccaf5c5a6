# Everyday commands; see README.md.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo proto lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,fuse]'
	touch $@

test: install
	scripts/test.sh

demo: install
	scripts/demo.sh

proto: install
	$(PY) proto/generate.py

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/bench_transfer.py

clean:
	rm -rf $(VENV) data node_storage_*
