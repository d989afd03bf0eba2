"""How many threads to use: ``0`` means "as many as there are free cores", for every command.

Torch-free. psutil (a core dependency) measures how busy the cores are now.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_cores(sample_seconds: float = 0.2) -> int:
    """The cores not busy now (at least 1). With another process on one of two cores, one thread
    trains about twice as fast as two (measured: 3.7 vs 1.8 pairs/s), because two threads wait on
    each other's time slices.

    Busy cores are measured over ``sample_seconds`` now, not read from the load average: the load
    average trails by minutes, so a job that has just ended would still count (an idle machine got
    one thread right after a benchmark). The sample is short because every command that takes
    ``--threads 0`` (``score`` included) waits for it before its first row.
    """
    import psutil

    cores = usable_cores()
    busy = psutil.cpu_percent(interval=sample_seconds) / 100 * (os.cpu_count() or cores)
    return max(1, min(cores, cores - int(busy + 0.5)))


def resolve_threads(threads: int) -> int:
    """``threads`` as given when positive; ``0``: :func:`free_cores`.

    Raises:
        ValueError: a negative number.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ValueError(f"threads: expected an integer >= 0 (0: as many as free cores), found {threads!r}")
    return threads or free_cores()
