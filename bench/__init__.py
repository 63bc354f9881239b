"""Benchmark commands (one script per benchmark) and their shared helpers."""

import resource


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB: Linux's VmHWM (the high-water mark of the
    process's current address space, so it starts afresh at exec). `ru_maxrss` does not: the kernel
    carries it over fork and exec, so a benchmark's fresh child reported at least its parent's RSS
    (a child of a 1.9 GB parent read 1.9 GB, its VmHWM 19 MB). Elsewhere, ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
