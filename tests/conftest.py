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


DEVICES = "devices"
"""The xdist group of every test that uses the shared PulseAudio devices or a terminal
(marked ``audio`` or ``tmux``): they run one at a time, in one worker."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("audio") or item.get_closest_marker("tmux"):
            item.add_marker(pytest.mark.xdist_group(DEVICES))
