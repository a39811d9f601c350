"""Admission control for a one-lease campaign: which runs will finish training AND evaluation in time.

A run unfinished when the lease ends is lost (checkpoints do not fit the returned files), so a run is
started, or kept running, only when its estimate, with a safety margin, ends before the deadline:

    estimate = start-up (not yet started) + epochs left x training images / measured img/s
               + evaluation seconds (from measured per-measure timings) - evaluation already done
    admitted when  now + SAFETY_FACTOR x estimate + SAFETY_SECONDS <= deadline

The rates are the lease's own: img/s of each control (an epoch's training images over its wall time,
per-epoch test pass included, with the runs sharing the GPU as they do), seconds per measure of the
runs evaluated so far, start-up seconds of the runs started so far. Runs share `slots` places on the GPU;
a queued run starts when the earliest admitted one ends (list scheduling, in the plan's order), so a
queued run is judged from when it can start, not from now.

`admit` is a pure function of (runs planned, measured rates, clock, deadline): the lease (`sharpness.studies.lease`)
calls it at every poll, and the tests call it with a fake clock.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

SAFETY_FACTOR = 1.15  # estimates x 1.15 ...
SAFETY_SECONDS = 10.0  # ... + 10 s: the stated margin (scheduling jitter, the last pack, a slower epoch)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan. `running`: its process has started; `rate`: its own measured img/s (None:
    no epoch yet), else its control's rate is used; `evaluation_elapsed`: seconds it has spent evaluating."""

    key: str
    control: str
    epochs_left: int
    train_images: int
    running: bool = False
    rate: float | None = None
    evaluation_elapsed: float = 0.0


@dataclass(frozen=True)
class Rates:
    """What the lease has measured so far (None or absent: not yet)."""

    images_per_second: Mapping[str, float] = field(default_factory=dict)  # per control
    evaluation_seconds: float | None = None  # one run's whole evaluation
    startup_seconds: float | None = None  # process start to first epoch, less one steady epoch


@dataclass(frozen=True)
class Decision:
    """'admitted' (start it / keep it), 'refused' (cannot finish: do not start / stop it), 'probe' (no rate
    measured for its control: start it to measure one), or 'waiting' (a rate is missing, no slot is free)."""

    verdict: str
    estimate: float | None  # seconds from its start (or from now, when running) to evaluated; None: unknown
    finish: float | None  # clock value it is expected to be evaluated at
    reason: str


def check_clock(now: float, deadline: float) -> None:
    """The clock and deadline must be finite, non-negative times: a NaN deadline would admit nothing or
    everything without saying why."""
    for name, value in (("now", now), ("deadline", deadline)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"admission needs a finite, non-negative {name} (seconds on the clock), got {value!r}: "
                             f"give --deadline as a positive number of seconds, e.g. --deadline 540")


def _check_rates(rates: Rates) -> None:
    bad = {f"img/s of {control}": value for control, value in rates.images_per_second.items() if not value > 0}
    bad |= {name: value for name, value in (("evaluation seconds", rates.evaluation_seconds),
                                            ("start-up seconds", rates.startup_seconds))
            if value is not None and not (math.isfinite(value) and value >= 0)}  # fmt: skip
    if bad:
        raise ValueError(f"measured rates must be positive and finite, got {bad}: a run's metrics.jsonl or "
                         "metrics.json holds a broken timing; delete that run folder and rerun it")


def estimate(run: PlannedRun, rates: Rates) -> tuple[float, bool]:
    """(seconds to evaluated, whether every part is measured); unmeasured parts count 0, so the first
    value is a lower bound when the second is False."""
    rate = run.rate if run.rate is not None else rates.images_per_second.get(run.control)
    known = True
    seconds = 0.0
    if run.epochs_left > 0:
        if rate is None:
            known = False
        else:
            seconds += run.epochs_left * run.train_images / rate
    if not run.running:
        if rates.startup_seconds is None:
            known = False
        else:
            seconds += rates.startup_seconds
    if rates.evaluation_seconds is None:
        known = False
    else:
        seconds += max(0.0, rates.evaluation_seconds - run.evaluation_elapsed)
    return seconds, known


def padded(seconds: float) -> float:
    """An estimate with the safety margin."""
    return SAFETY_FACTOR * seconds + SAFETY_SECONDS


def _refused(seconds: float, known: bool, finish: float, deadline: float, counted: str) -> Decision:
    """A run that would end after the deadline, with the arithmetic that says so (`counted`: from when)."""
    at_least = "" if known else "at least "
    return Decision("refused", seconds, finish,
                    f"{at_least}{seconds:.0f} s (+ margin) {counted} ends {finish - deadline:.0f} s after the deadline")


def admit(planned: Sequence[PlannedRun], rates: Rates, now: float, deadline: float, *, slots: int) -> dict[str, Decision]:
    """A decision per planned run (see `Decision`), running runs first, then the queue in its order."""
    check_clock(now, deadline)
    _check_rates(rates)
    if slots < 1:
        raise ValueError(f"slots (runs sharing the GPU) must be >= 1, got {slots}")
    busy: list[float] = []  # clock values at which the admitted runs free their slots
    decisions: dict[str, Decision] = {}
    for run in [run for run in planned if run.running]:
        seconds, known = estimate(run, rates)
        finish = now + padded(seconds)
        if finish > deadline:
            decisions[run.key] = _refused(seconds, known, finish, deadline, "more")
        else:  # kept; a run with a part unmeasured holds its slot for an unknown time
            heapq.heappush(busy, finish if known else math.inf)
            decisions[run.key] = Decision("admitted", seconds if known else None, finish if known else None,
                                          "ends in time" if known else "running; not yet measured")
    for run in [run for run in planned if not run.running]:
        free_now = len(busy) < slots
        start = now if free_now else busy[0]
        if start == math.inf:
            decisions[run.key] = Decision("waiting", None, None, "no slot frees before the running runs are measured")
            continue
        seconds, known = estimate(run, rates)
        finish = start + padded(seconds)
        if finish > deadline:
            decisions[run.key] = _refused(seconds, known, finish, deadline, f"from its start at +{start - now:.0f} s")
            continue
        if known:
            if not free_now:
                heapq.heappop(busy)
            heapq.heappush(busy, finish)
            decisions[run.key] = Decision("admitted", seconds, finish, f"ends {deadline - finish:.0f} s before the deadline")
        elif free_now and run.control not in rates.images_per_second and run.rate is None:
            heapq.heappush(busy, math.inf)
            decisions[run.key] = Decision("probe", None, None, f"no img/s measured for {run.control} yet: started to measure it")
        else:
            decisions[run.key] = Decision("waiting", None, None, "a rate is not measured yet (evaluation or start-up)")
    return decisions
