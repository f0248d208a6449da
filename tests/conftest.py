"""Shared fixtures and the rule for optional components.

Under ``CI=true`` a test whose component (PortAudio, PulseAudio, tmux, espeak-ng) is
missing fails; elsewhere it skips with the reason shown.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(component: str, available: bool, hint: str = "") -> None:
    """Skip (or, under CI, fail) the calling test when ``component`` is missing."""
    if available:
        return
    reason = f"{component} is not available{': ' + hint if hint else ''}"
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
