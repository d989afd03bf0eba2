"""How many threads to use (:func:`resolve_threads`): one rule for the API, the configs and every command.

Torch-free. psutil (a core dependency) measures how busy the cores are now.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_cores(sample_seconds: float = 0.2) -> int:
    """The cores not busy now (at least 1): with another process on one of two cores, one thread runs
    faster than two that wait on each other's time slices.

    Busy cores are sampled over ``sample_seconds`` now, not read from the load average, which trails by
    minutes (a job that has just ended would still count). The sample is short because every command
    that takes ``--threads 0`` waits for it before its first row.
    """
    import psutil

    cores = usable_cores()
    busy = psutil.cpu_percent(interval=sample_seconds) / 100 * (os.cpu_count() or cores)
    return max(1, min(cores, cores - int(busy + 0.5)))


def resolve_threads(threads: int | None) -> int:
    """The one rule for a thread count, everywhere: a positive number as given; ``0``: as many as
    :func:`free_cores` (sampled now); ``None`` (not given): :func:`usable_cores`.

    Raises:
        ValueError: a negative number or not an integer.
    """
    if threads is None:
        return usable_cores()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ValueError(f"threads: expected an integer >= 0 (0: as many as free cores) or None (all usable "
                         f"cores), found {threads!r}")
    return threads or free_cores()


def share_threads(threads: int | None, sharers: int) -> int:
    """The thread count of each of ``sharers`` workers started together on one machine (Ray actors):
    a positive number as given (per worker); ``0``: :func:`free_cores` now, divided among them;
    ``None``: :func:`usable_cores`, divided among them. At least 1.

    Raises:
        ValueError: ``threads`` as in :func:`resolve_threads`, or ``sharers`` below 1.
    """
    if isinstance(sharers, bool) or not isinstance(sharers, int) or sharers < 1:
        raise ValueError(f"sharers: expected a positive integer, found {sharers!r}")
    if threads:
        return resolve_threads(threads)
    return max(1, resolve_threads(threads) // sharers)
