# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NATIVE := vmm/native/fastpath.so
UNICORN_DIR = $(shell $(PY) -c 'import os, unicorn; print(os.path.dirname(unicorn.__file__))')

.PHONY: all run test test-full bench guests native clean

all: $(STAMP) native guests

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The monitor's hot path (preemption at block starts, port-I/O checks): a few lines of
# C, linked against the libunicorn that the Python binding loads.
native: $(NATIVE)
$(NATIVE): vmm/native/fastpath.c $(STAMP)
	$(PY) -m vmm.native

guests:
	$(MAKE) -C guests

run: all
	$(VENV)/bin/vmm run guests/build/hello.elf --max-seconds 30

test: all
	$(PY) -m pytest -q -m 'not slow' tests

test-full: all
	$(PY) -m pytest -q tests

bench: all
	$(PY) -m benchmarks

clean:
	$(MAKE) -C guests clean
	rm -f $(NATIVE)
