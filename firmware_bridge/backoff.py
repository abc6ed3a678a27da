"""Reconnect backoff: a pure function of the attempt number and a random source."""

from __future__ import annotations

__all__ = ["backoff_s"]


def backoff_s(attempt: int, rng, base_s: float = 0.25, cap_s: float = 30.0,
              factor: float = 2.0) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 = first retry).

    Exponential growth capped at ``cap_s``, with "equal jitter": the wait is
    uniformly drawn from the upper half of the capped delay, so it is never
    zero (no busy loop) and boards that dropped together do not retry in
    lockstep.

    Parameters
    ----------
    attempt : int
        Retries made so far since the link was last good (0, 1, 2, ...).
    rng : random.Random or numpy.random.Generator
        Anything with a ``random()`` method returning a float in [0, 1).
        Passed in so callers and tests control it.
    base_s, cap_s, factor : float
        First delay, largest delay, growth per attempt.

    Returns
    -------
    float
        Delay in seconds, in ``[d / 2, d]`` with ``d = min(cap_s, base_s * factor**attempt)``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> [round(backoff_s(k, rng), 2) for k in range(4)]
    [0.23, 0.44, 0.71, 1.26]
    >>> 15.0 <= backoff_s(100, rng) <= 30.0
    True
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # cap the exponent before computing the power: attempt may grow all night
    exp = min(attempt, 64)
    delay = min(cap_s, base_s * factor ** exp)
    return delay / 2.0 + rng.random() * delay / 2.0
