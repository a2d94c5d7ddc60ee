# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NATIVE := vmm/native/fastpath.so

.PHONY: all run test test-full bench guests native unicorn clean linux

all: $(STAMP) unicorn native guests

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Unicorn 2.1.4 rebuilt with stores to RAM on the fast path and a gated block hook
# (vmm/native/patched_unicorn.py): fetched from PyPI, patched, built with CMake, put in
# the venv. The module keeps its own stamp beside the library and does nothing when the
# installed build matches the patches.
unicorn: $(STAMP)
	$(PY) -m vmm.native.patched_unicorn

# The monitor's hot path (preemption at block starts, port-I/O checks): a few lines of
# C, linked against the libunicorn that the Python binding loads.
native: $(NATIVE)
$(NATIVE): vmm/native/fastpath.c $(STAMP)
	$(PY) -m vmm.native

guests:
	$(MAKE) -C guests

# The demo machine: the scsi guest reads and writes its disk, a virtual disk in the file
# system of a RAID 5 volume of the default pool (./pool, made on the first run).
run: all
	$(PY) -m vmm.demo

# Debian's own Linux on our devices (guests/linux/README.md); the packages come first:
# sudo .venv/bin/python -m guests.linux.debian fetch --setup
linux: all
	$(PY) -m guests.linux

test: all
	$(PY) -m pytest -q -m 'not slow' tests

test-full: all
	$(PY) -m pytest -q tests

bench: all
	$(PY) -m benchmarks

clean:
	$(MAKE) -C guests clean
	rm -f $(NATIVE)
