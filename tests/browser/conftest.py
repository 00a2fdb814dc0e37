"""Fixtures more than one browser test module uses."""

from __future__ import annotations

import os

import pytest

import rtcam_harness as h


@pytest.fixture
def netns():
    """A network namespace with a veth pair, for the Firefox tests (root only)."""
    if os.geteuid() != 0:
        pytest.fail("the Firefox tests make a network namespace with a veth pair: run them as root (CI does)")
    ns = h.NetNs().start()
    yield ns
    ns.stop()
