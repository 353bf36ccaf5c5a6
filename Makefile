# Everyday commands; see README.md.
# `make demo` and `make test` work on a bare Debian 12 machine: each first makes sure the
# Debian packages it needs are there (scripts/system-packages.sh: installed as root, named in
# one line otherwise), then builds the virtualenv, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := scripts/system-packages.sh

.PHONY: install test demo proto lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(SYSTEM_PACKAGES) install
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,fuse]'
	touch $@

test:
	@$(SYSTEM_PACKAGES) test
	$(MAKE) --no-print-directory install
	scripts/test.sh

demo:
	@$(SYSTEM_PACKAGES) demo
	$(MAKE) --no-print-directory install
	scripts/demo.sh

proto: install
	$(PY) proto/generate.py

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/bench_transfer.py

clean:
	rm -rf $(VENV) data node_storage_*
