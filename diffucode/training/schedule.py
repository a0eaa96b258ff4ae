"""Learning-rate schedules of `diffucode train`.

* ``cosine``: linear warmup, then a cosine from the peak to ``lr * min_lr_frac`` at the planned last
  step, flat after it. One horizon for the whole run: right for a GPU run planned in advance.
* ``wsd`` (warmup–stable–decay, Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
  Fixed Training Durations"): every call warms up again, holds the peak, and decays linearly to the
  floor over the last ``decay_frac`` of *this call* (of its time budget, or of its steps). Any call
  therefore ends with a decayed model worth exporting, and the next call simply continues: the shape
  of a training campaign made of many runs of a few hours whose total length nobody knows in advance.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd")


def cosine_lr(step: int, *, lr: float, warmup: int, floor_frac: float, max_steps: int) -> float:
    """Linear warmup, cosine to lr * floor_frac at max_steps, then flat."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, max_steps - warmup)
    p = min(1.0, (step - warmup) / span)
    floor = lr * floor_frac
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * p))


def wsd_lr(call_step: int, *, lr: float, warmup: int, floor_frac: float, decay_left: float) -> float:
    """Warmup over the call's first `warmup` steps, then the peak; during the decay window the rate
    falls linearly with `decay_left` (1 when the window starts, 0 at its end) to lr * floor_frac."""
    if call_step < warmup:
        return lr * (call_step + 1) / warmup
    floor = lr * floor_frac
    return floor + (lr - floor) * min(1.0, max(0.0, decay_left))


def decay_left_by_steps(step: int, *, call_start: int, max_steps: int, decay_frac: float) -> float:
    """Share of the decay window still ahead when the call ends at `max_steps`: the window is the last
    `decay_frac` of the steps from this call's first step to `max_steps`."""
    window = max(1.0, decay_frac * (max_steps - call_start))
    return (max_steps - step) / window


def decay_left_by_time(now: float, *, call_start: float, call_end: float, decay_frac: float) -> float:
    """The same for a call that ends at the clock time `call_end` (its time budget)."""
    window = max(1e-9, decay_frac * (call_end - call_start))
    return (call_end - now) / window
