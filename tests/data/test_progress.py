"""The package's progress bars: every item passes through; MASKOPS_NO_PROGRESS and enabled=False draw none."""

from __future__ import annotations

import pytest

from maskops.data.progress import progress_bar, track


@pytest.mark.parametrize("env", [None, "1"])
def test_track_yields_every_item(env: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if env is None:
        monkeypatch.delenv("MASKOPS_NO_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("MASKOPS_NO_PROGRESS", env)
    assert list(track(iter(range(5)), 5, "items")) == [0, 1, 2, 3, 4]
    assert list(track(range(3), None, "items", enabled=False, transient=True)) == [0, 1, 2]


def test_progress_bar_is_off_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKOPS_NO_PROGRESS", raising=False)
    assert not progress_bar().disable
    assert progress_bar(enabled=False).disable
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    assert progress_bar().disable
