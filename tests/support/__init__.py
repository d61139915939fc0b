"""Helpers the test tiers share (not tests): the repository's root, and `need`, which skips a
test whose system component is missing, naming it and how to install it, except under CI=true,
where a missing component is a failure of the set-up (.ci/run installs everything)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(ok: object, what: str, how: str) -> None:
    """Skip (fail under CI=true) unless `ok`: one line saying what is missing and how to get it."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"CI=true and {what}: .ci/run must install it ({how})", pytrace=False)
    pytest.skip(f"{what}; {how}")
