"""Shared fixtures: small pools in a temporary directory."""

from __future__ import annotations

import pytest

import storage.durability
from storage.pool import Pool

# Persistence is modelled by the tests themselves (storage.crashsim); waiting for the
# host's disk on every fdatasync would only make the suite slow.
storage.durability.HOST_FSYNC = False

MiB = 1024 * 1024
DEV_SIZE = 8 * MiB


@pytest.fixture
def pool(tmp_path):
    """A fresh pool of four 8 MiB device files."""
    p = Pool.create(tmp_path / "pool", 4, DEV_SIZE, name="test")
    yield p
    p.close()
