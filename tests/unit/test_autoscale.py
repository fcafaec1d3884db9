"""The KPA-like decision, table-driven: samples in, replicas out."""

from __future__ import annotations

import pytest
from lepton_operator.reconcile.autoscale import Policy, Sample, decide, window_mean

POLICY = Policy(target=4, stable_window=60, panic_window=6, panic_threshold=2.0, max_scale_down_rate=2.0,
                min_replicas=1, max_replicas=10)  # fmt: skip


def steady(level: float, seconds: int, end: float = 100.0) -> list[Sample]:
    """One sample per second at `level`, the last at `end`."""
    return [Sample(end - seconds + 1 + i, level) for i in range(seconds)]


def step(before: float, after: float, after_seconds: int, end: float = 100.0) -> list[Sample]:
    return steady(before, 60 - after_seconds, end - after_seconds) + steady(after, after_seconds, end)


CASES = [
    # name, samples, current, ready, panic_since, want replicas, want panic
    ("no-metrics-keeps-current", [], 3, 3, None, 3, False),
    ("at-target", steady(8, 60), 2, 2, None, 2, False),
    ("ceil-above-target", steady(8.4, 60), 2, 2, None, 3, False),
    ("idle-scales-down-at-most-halving", steady(0, 60), 8, 8, None, 4, False),
    ("idle-to-min", steady(0, 60), 1, 1, None, 1, False),
    ("clamped-to-max", steady(400, 60), 2, 2, None, 10, True),
    ("2x-step-panics-after-the-panic-window", step(4, 8, 6), 1, 1, None, 2, True),
    ("2x-step-not-yet-a-full-panic-window", step(4, 8, 3), 1, 1, None, 2, False),  # the stable mean says 2 already
    ("below-threshold-no-panic", step(2, 6, 6), 1, 1, None, 1, False),  # stable mean 2.4 -> 1 replica
    ("4x-burst-jumps-at-once", step(4, 16, 6), 1, 1, None, 4, True),
    ("panic-never-scales-down", steady(0, 60), 6, 6, 90.0, 6, True),
    ("panic-ends-after-a-stable-window", steady(0, 60), 6, 6, 40.0, 3, False),
    ("warming-up-never-scales-down", steady(0, 20), 5, 5, None, 5, False),
    ("warming-up-may-scale-up", steady(12, 20), 1, 1, None, 3, True),
]


@pytest.mark.parametrize(("name", "samples", "current", "ready", "panic_since", "want", "panic"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_decision(
    name: str, samples: list[Sample], current: int, ready: int, panic_since: float | None, want: int, panic: bool
) -> None:
    d = decide(samples, 100.0, current, ready, POLICY, panic_since)
    assert (d.replicas, d.panic) == (want, panic), d


def test_min_replicas_floor_and_window_mean() -> None:
    policy = Policy(target=4, stable_window=60, panic_window=6, min_replicas=2, max_replicas=4)
    assert decide(steady(0, 60), 100.0, 2, 2, policy, None).replicas == 2
    samples = [Sample(10, 2.0, span=1), Sample(11, 6.0, span=3)]
    assert window_mean(samples, 11, 10) == pytest.approx(5.0)  # weighted by span
    assert window_mean(samples, 30, 10) is None


def test_a_load_step_then_idle_scales_up_then_back_down() -> None:
    """Simulate second by second: 1 replica, load doubles past capacity, then stops."""
    policy = Policy(target=2, stable_window=12, panic_window=6, min_replicas=1, max_replicas=4)
    samples: list[Sample] = []
    replicas, panic_since, history = 1, None, []
    for t in range(1, 61):
        load = 1.0 if t <= 15 else (min(4.0, 2.0 * replicas) * 2 if t <= 30 else 0.0)  # 2x capacity while loaded
        samples.append(Sample(float(t), load))
        d = decide(samples, float(t), replicas, replicas, policy, panic_since)
        replicas, panic_since = d.replicas, d.panic_since
        history.append(replicas)
    first_up = history.index(2) + 1
    assert 15 < first_up <= 15 + 6, history  # reacts within the panic window
    assert max(history) == 4 and history[-1] == 1, history
