"""Device choice shared by every stage: `auto` is CUDA when present, else CPU."""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
from pathlib import Path

import torch

from pipeline.config import PRECISIONS
from pipeline.params import ConfigError

log = logging.getLogger("pipeline.device")
RUNS = Path(os.environ.get("MMREC_RUNS_DIR", Path(tempfile.gettempdir()) / "mmrec-runs"))
_said: set[tuple[int, int, int]] = set()
_registered: set[Path] = set()


def resolve_device(name: str = "auto", where: str = "train.device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{where}={name!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


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
    """Torch CPU threads for this process: `requested`, or with 0 (the default) the cores left by the
    fixed-thread pipeline processes running now on this machine, divided by the auto ones. Every
    pipeline process registers a file under RUNS holding its requested count (dead ones are swept),
    so two queued experiments on 2 cores take one core each, and an auto run beside a benchmark
    pinned to one thread takes the other core instead of oversubscribing both."""
    RUNS.mkdir(parents=True, exist_ok=True)
    me = RUNS / str(os.getpid())
    if me not in _registered:  # a stale file of a dead process with this pid must not skip the clean-up
        _registered.add(me)
        atexit.register(lambda: me.unlink(missing_ok=True))
    tmp = RUNS / f".{os.getpid()}.tmp"  # readers never see a half-written count
    tmp.write_text(str(requested))
    os.replace(tmp, me)
    if requested:
        return requested
    fixed = auto = 0
    for f in RUNS.iterdir():
        if not (f.name.isdigit() and _alive(int(f.name))):
            f.unlink(missing_ok=True)
            continue
        try:
            k = int(f.read_text() or 0)
        except (OSError, ValueError):  # being written or swept right now: count it as auto
            k = 0
        fixed, auto = (fixed + k, auto) if k else (fixed, auto + 1)
    cores = os.cpu_count() or 1
    n = max(1, (cores - fixed) // max(auto, 1))
    if (auto > 1 or fixed) and (auto, fixed, n) not in _said:
        _said.add((auto, fixed, n))
        log.info("%s: 0 -> %d thread(s): %d auto-thread and fixed-thread processes using %d thread(s) share %d cores "
                 "(set %s to override)", where, n, auto, fixed, cores, where)
    return n
