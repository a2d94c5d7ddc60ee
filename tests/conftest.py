import pytest

from tests.helpers import QEMU

requires_qemu = pytest.mark.skipif(
    QEMU is None,
    reason="qemu-system-i386 is not installed: apt-get install -y qemu-system-x86",
)
