"""The autoscaling decision, after Knative's KPA: pure, time passed in.

desired = ceil(mean in-flight requests over the stable window / target per replica). When the mean over
the short panic window reaches `panic_threshold` x the current capacity (ready replicas x target), the
scaler panics: it scales to the panic-window demand at once and never scales down until the demand has
stayed below the threshold for a whole stable window. Outside panic, one decision at most divides the
replicas by `max_scale_down_rate`, and never scales down before the samples cover a stable window (a
restarted operator knows nothing yet). The result is clamped to [min, max].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..api.inferenceservice import InferenceServiceSpec


@dataclass(frozen=True)
class Sample:
    """Mean in-flight requests of all replicas over the `span` seconds ending at `time`."""

    time: float
    in_flight: float
    span: float = 1.0


@dataclass(frozen=True)
class Policy:
    target: float
    stable_window: float
    panic_window: float
    panic_threshold: float = 2.0
    max_scale_down_rate: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 1

    @classmethod
    def of(cls, spec: InferenceServiceSpec) -> Policy:
        a = spec.autoscaling
        return cls(
            target=a.target_in_flight,
            stable_window=float(a.stable_window_seconds),
            panic_window=float(a.panic_window_seconds),
            panic_threshold=a.panic_threshold,
            max_scale_down_rate=a.max_scale_down_rate,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
        )


@dataclass(frozen=True)
class Decision:
    replicas: int
    panic_since: float | None  # carried to the next decision
    stable: float  # mean in-flight over the stable window
    burst: float  # mean in-flight over the panic window
    reason: str

    @property
    def panic(self) -> bool:
        return self.panic_since is not None


def window_mean(samples: Sequence[Sample], now: float, window: float) -> float | None:
    """Time-weighted mean of the samples ending within (now - window, now]."""
    inside = [s for s in samples if now - window < s.time <= now]
    weight = sum(s.span for s in inside)
    return sum(s.in_flight * s.span for s in inside) / weight if weight > 0 else None


def wanted(load: float, target: float) -> int:
    """Replicas that serve `load` in-flight requests at `target` each; saturates, since servers may report any
    finite figure (the ratio, or the window's sum, can overflow to infinity)."""
    ratio = load / target - 1e-9
    return math.ceil(ratio) if ratio < 2**31 else 2**31


def decide(
    samples: Sequence[Sample], now: float, current: int, ready: int, policy: Policy, panic_since: float | None
) -> Decision:
    """Replicas wanted now, given the samples so far, the replicas wanted (`current`) and ready."""
    p = policy

    def clamp(n: int) -> int:
        return max(p.min_replicas, min(p.max_replicas, n))

    stable = window_mean(samples, now, p.stable_window)
    burst = window_mean(samples, now, p.panic_window)
    if stable is None or burst is None:
        return Decision(clamp(current), panic_since, 0.0, 0.0, "NoMetrics")
    capacity = max(ready, 1) * p.target
    want_stable, want_burst = wanted(stable, p.target), wanted(burst, p.target)
    if burst >= p.panic_threshold * capacity:
        panic_since = now  # entering or extending panic
    elif panic_since is not None and now - panic_since >= p.stable_window:
        panic_since = None
    if panic_since is not None:
        return Decision(clamp(max(want_burst, current)), panic_since, stable, burst, "Panic")
    desired, reason = want_stable, "Stable"
    if desired < current:
        covered = now - min(s.time - s.span for s in samples) >= p.stable_window
        if not covered:
            desired, reason = current, "WarmingUp"
        else:
            desired = max(desired, math.ceil(current / p.max_scale_down_rate))
    return Decision(clamp(desired), None, stable, burst, reason)
