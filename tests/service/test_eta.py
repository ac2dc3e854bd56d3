"""The estimate of the seconds left: its arithmetic, and where agents see it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressEvent
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.eta import EtaTracker, eta_text
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend

Step = tuple[str, int, int, int, int, float]  # stage, step, stage_total, done, total, time


def run(steps: list[Step]) -> list[float | None]:
    tracker = EtaTracker()
    return [tracker.observe(ProgressEvent(stage, step, stage_total, done, total), at)  # type: ignore[arg-type]
            for stage, step, stage_total, done, total, at in steps]


def base_only(n: int, per_step: float, setup: float = 0.0) -> list[Step]:
    return [("base", i, n, i, n, setup + i * per_step) for i in range(1, n + 1)]


def with_refiner(base: int, refiner: int, base_s: float, refiner_s: float,
                 handover: float = 0.0) -> list[Step]:
    total = base + refiner
    steps: list[Step] = [("base", i, base, i, total, i * base_s) for i in range(1, base + 1)]
    start = base * base_s + handover
    steps += [("refiner", i, refiner, base + i, total, start + i * refiner_s)
              for i in range(1, refiner + 1)]
    return steps


# ------------------------------------------------------------------ arithmetic
@pytest.mark.parametrize(("steps", "expected"), [
    # The first steps: nothing timed yet, no estimate.
    (base_only(10, 1.0)[:2], [None, None]),
    # Two timed steps at 1 s: 7 steps left -> 7 s.
    (base_only(10, 1.0)[:3], [None, None, 7.0]),
    # The first step's set-up (5 s of prompt encoding) is not a step's cost.
    (base_only(10, 1.0, setup=5.0)[:3], [None, None, 7.0]),
    # Half-way through base, the refiner's steps to come cost base's mean.
    (with_refiner(8, 4, 1.0, 2.0)[:4], [None, None, 9.0, 8.0]),
])
def test_estimate_from_the_steps_done(steps: list[Step], expected: list[float | None]) -> None:
    assert run(steps) == pytest.approx(expected)


def test_stage_change_prices_the_new_stage_at_the_mean_until_it_is_timed() -> None:
    # Base 8 steps at 1 s, a 3 s hand-over, refiner 4 steps at 2 s each.
    estimates = run(with_refiner(8, 4, 1.0, 2.0, handover=3.0))
    first_refiner, second_refiner, third_refiner = estimates[8], estimates[9], estimates[10]
    assert first_refiner == pytest.approx(3 * 1.0)  # hand-over not timed; base's 1 s
    mean_after_one = (7 * 1.0 + 2.0) / 8  # one refiner step timed: not yet its own rate
    assert second_refiner == pytest.approx(2 * mean_after_one)
    assert third_refiner == pytest.approx(1 * 2.0)  # two timed: the refiner's own 2 s
    assert estimates[11] == pytest.approx(0.0)


@pytest.mark.parametrize(("refiner_s", "left"), [(2.0, 2.0), (0.5, 0.5)])
def test_slower_or_faster_refiner_steps_are_priced_at_their_own_rate(
    refiner_s: float, left: float
) -> None:
    # Base 10 steps at 1 s; at refiner step 3 of 4 one step is left.
    estimates = run(with_refiner(10, 4, 1.0, refiner_s))
    assert estimates[12] == pytest.approx(left)


def test_variations_price_the_next_images_at_the_mean() -> None:
    # Two variations of 4 base steps each at 1 s: done/total run across both.
    first = [("base", i, 4, i, 8, float(i)) for i in range(1, 5)]
    second = [("base", i, 4, 4 + i, 8, 4.5 + i) for i in range(1, 5)]
    estimates = run(first + second)
    assert estimates[3] == pytest.approx(4.0)  # 0 left in image 1, 4 to come at 1 s
    assert estimates[4] == pytest.approx(3.0)  # image 2's first step: its set-up untimed


def test_remaining_counts_down_from_the_last_estimate_and_stops_at_zero() -> None:
    tracker = EtaTracker()
    assert tracker.remaining(0.0) is None
    for stage, step, stage_total, done, total, at in base_only(10, 1.0)[:3]:
        tracker.observe(ProgressEvent(stage, step, stage_total, done, total), at)  # type: ignore[arg-type]
    assert tracker.remaining(3.0) == pytest.approx(7.0)
    assert tracker.remaining(5.5) == pytest.approx(4.5)
    assert tracker.remaining(60.0) == 0.0


@pytest.mark.parametrize(("eta", "text"), [
    (None, ""), (0.4, "under 1 s left"), (9.4, "about 9 s left"), (150.0, "about 2 min left"),
])
def test_eta_text(eta: float | None, text: str) -> None:
    assert eta_text(eta) == text


def test_progress_message_names_stage_step_and_time_left() -> None:
    assert ProgressEvent("base", 12, 40, 12, 50, eta_s=9.2).message == \
        "SDXL base 12/40, about 9 s left"
    assert ProgressEvent("refiner", 1, 10, 41, 50).message == "SDXL refiner 1/10"


# ------------------------------------------------------------------ over MCP
class SteppedBackend(GatedBackend):
    """Runs ``steps`` progress events a few ms apart; holds after ``hold_after`` steps."""

    def __init__(self, steps: int, hold_after: int | None = None) -> None:
        super().__init__(gate_open=True)
        self.steps, self.hold_after = steps, hold_after
        self.holding = threading.Event()
        self.release = threading.Event()

    def generate(self, req: GenerationRequest, seed: int, on_progress: Any = None,
                 cancel: CancelToken | None = None) -> EngineOutput:
        for step in range(1, self.steps + 1):
            threading.Event().wait(0.005)
            if on_progress:
                on_progress(ProgressEvent("base", step, self.steps, step, self.steps))
            if step == self.hold_after:
                self.holding.set()
                while not self.release.wait(0.01):
                    if cancel is not None and cancel.cancelled:
                        break
        self.gate.set()
        return super().generate(req, seed, None, cancel)


def stepped_server(make_settings: Callable[..., Any], backend: GatedBackend, **kw: Any) -> Any:
    settings = make_settings(**kw)
    return build_server(settings, ImageService(settings, backend=backend))


async def test_generate_progress_messages_carry_the_estimate(
    make_settings: Callable[..., Any],
) -> None:
    messages: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    async with Client(stepped_server(make_settings, SteppedBackend(8))) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox"},
                                        progress_callback=on_progress)
    assert not result.is_error
    assert messages[0] == "SDXL base 1/8"
    assert all(m and m.startswith(f"SDXL base {i}/8") for i, m in enumerate(messages, 1))
    assert any(m and "s left" in m for m in messages[2:])


async def test_get_generation_of_a_running_job_reports_eta_s(
    make_settings: Callable[..., Any],
) -> None:
    backend = SteppedBackend(20, hold_after=5)
    server = stepped_server(make_settings, backend, max_wait_s=0.05)
    async with Client(server) as client:
        started = await client.call_tool("generate_image", {"prompt": "a fox"})
        job_id = started.structured_content["job_id"]
        await anyio.to_thread.run_sync(backend.holding.wait)
        running = (await client.call_tool("get_generation", {"job_id": job_id}))
        backend.release.set()
        done = await client.call_tool("get_generation", {"job_id": job_id, "wait_seconds": 0.05})
        while done.structured_content["status"] == "running":
            done = await client.call_tool("get_generation",
                                          {"job_id": job_id, "wait_seconds": 0.05})
    body = running.structured_content
    assert body["status"] == "running" and isinstance(body["eta_s"], float)
    assert body["eta_s"] >= 0 and "s left" in body["message"]
    assert "(SDXL base 5/20, " in body["message"] and " left; 5/20 steps)" in body["message"]
    assert done.structured_content["status"] == "succeeded"
    assert done.structured_content["eta_s"] is None
