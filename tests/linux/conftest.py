"""The Debian kernel and busybox the Linux tests use, from the cache `.ci/run` fills."""

from __future__ import annotations

import pytest

from guests.linux import debian


@pytest.fixture(scope="session")
def linux():
    found = debian.find_cached()
    if found is None:
        pytest.skip(f"Debian's kernel and busybox are not in {debian.CACHE}: run {debian.FETCH_COMMAND}")
    return found
