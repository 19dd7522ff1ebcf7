"""Waiting for a condition that a background thread brings about, with a generous bound."""

from __future__ import annotations

import time

WAIT_S = 5.0


def wait_until(condition, what: str):
    """Polls condition() until it returns something truthy, and returns that; fails after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
