"""``python -m vmm.native`` compiles the hot path (used by ``make``)."""

from vmm.native import build

print(build(force=True))
