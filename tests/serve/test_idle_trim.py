"""The idle heap trim: once after a burst of requests and a quiet spell, never during traffic."""

from __future__ import annotations

import asyncio
import time

import pytest

from maskops.serve import service as service_module
from maskops.serve.metrics import ServiceMetrics


def _run(coro_fn, seconds: float) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        task = asyncio.create_task(coro_fn())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(main())


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    monkeypatch.setattr(service_module, "trim_heap", lambda: calls.append(time.monotonic()) or True)
    return calls


def test_trims_once_after_requests_then_quiet(trims: list[float]) -> None:
    metrics = ServiceMetrics()

    async def one_request_then_quiet() -> None:
        trimmer = asyncio.create_task(service_module.trim_when_idle(metrics, 0.1))
        await asyncio.sleep(0.01)
        metrics.last_done = time.monotonic()  # a request ends after the trimmer started
        await asyncio.sleep(0.6)
        trimmer.cancel()

    asyncio.run(one_request_then_quiet())
    assert len(trims) == 1  # once, not every check while it stays quiet
    assert trims[0] - metrics.last_done >= 0.1


def test_no_trim_while_busy_or_without_new_requests(trims: list[float]) -> None:
    metrics = ServiceMetrics()
    metrics.busy = 1  # a request in flight the whole time
    metrics.last_done = time.monotonic() - 5
    _run(lambda: service_module.trim_when_idle(metrics, 0.1), 0.4)
    assert trims == []

    idle = ServiceMetrics()  # nothing served since the trimmer started: nothing to hand back
    _run(lambda: service_module.trim_when_idle(idle, 0.1), 0.4)
    assert trims == []


def test_steady_traffic_is_never_interrupted(trims: list[float]) -> None:
    metrics = ServiceMetrics()

    async def traffic_and_trimmer() -> None:
        trimmer = asyncio.create_task(service_module.trim_when_idle(metrics, 0.2))
        for _ in range(30):  # a request ends every 20 ms: never 0.2 s of quiet
            metrics.last_done = time.monotonic()
            await asyncio.sleep(0.02)
        trimmer.cancel()

    asyncio.run(traffic_and_trimmer())
    assert trims == []


def test_the_real_trim_runs_on_glibc() -> None:
    assert isinstance(service_module.trim_heap(), bool)
