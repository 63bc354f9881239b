"""Device choice shared by every stage: `auto` is CUDA when present, else CPU."""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
from pathlib import Path

import torch

from pipeline.params import ConfigError

log = logging.getLogger("pipeline.device")
RUNS = Path(os.environ.get("MMREC_RUNS_DIR", Path(tempfile.gettempdir()) / "mmrec-runs"))
_said: set[tuple[int, int]] = set()


def resolve_device(name: str = "auto", where: str = "train.device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{where}={name!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "bf16")


def use_bf16(precision: str, device: torch.device, where: str = "train.precision") -> bool:
    """Whether training steps run under bf16 autocast: `bf16` always (CPU autocast exists, mostly for
    tests), `auto` only on a CUDA device that supports bf16, `fp32` never. Evaluation always runs in
    fp32, so ranks and ties are those of the full-precision scores."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}={precision!r}: use one of {PRECISIONS}")
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on `device`: through pinned memory and a non-blocking copy on CUDA, as is on CPU."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def host() -> dict:
    """Who ran it: torch threads, cores, machine, CUDA (for timing files only; never in a hashed output)."""
    import platform

    return {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "cuda": torch.cuda.is_available()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cpu_threads(requested: int, where: str = "train.threads") -> int:
    """Torch CPU threads for this process: `requested`, or with 0 (the default) the cores divided by
    the pipeline processes running now on this machine (each registers a file under RUNS; dead ones
    are swept), so two queued experiments on 2 cores take one core each instead of oversubscribing."""
    if requested:
        return requested
    RUNS.mkdir(parents=True, exist_ok=True)
    me = RUNS / str(os.getpid())
    if not me.exists():
        me.touch()
        atexit.register(lambda: me.unlink(missing_ok=True))
    live = 0
    for f in RUNS.iterdir():
        if f.name.isdigit() and _alive(int(f.name)):
            live += 1
        else:
            f.unlink(missing_ok=True)
    cores = os.cpu_count() or 1
    n = max(1, cores // max(live, 1))
    if live > 1 and (live, n) not in _said:
        _said.add((live, n))
        log.info("%s: 0 -> %d thread(s): %d pipeline processes share %d cores (set %s to override)", where, n, live,
                 cores, where)
    return n
