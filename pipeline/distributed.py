"""torch.distributed for the stages: one process per device (or per CPU share), launched by torchrun.

    torchrun --nproc_per_node=8 -m pipeline.stages.train ...   # the stage's arguments; or train.nproc: 8 in params.yaml
    torchrun --nnodes=2 --node_rank=0 --master_addr=host0 --nproc_per_node=8 -m pipeline.stages.train ...

A stage calls `init(device)` first: under torchrun (WORLD_SIZE > 1 in the environment) it joins
the process group — NCCL when the stage runs on CUDA, gloo on CPU — and pins the process to its
local GPU; otherwise it does nothing and every helper below is the one-process identity, so the
same code runs on a laptop, eight GPUs or several nodes. `become_workers(nproc, module)` is how a
stage started by DVC (`python -m pipeline.stages.train`) with `train.nproc > 1` re-runs itself under
torch.distributed's own launcher (`torch.distributed.run`, what `torchrun` is).

The rules every distributed path here follows: all ranks draw the same shared random numbers (the
batch order and sampled negatives come from one seeded generator that every rank advances
identically), each rank does the work of its shard, results are gathered in rank order, and only
rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """True inside a torchrun / torch.distributed.run worker of a group of more than one."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> bool:
    """Join the torchrun group when launched in one (idempotent); True when running distributed."""
    if active():
        return True
    if not launched():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    log.info("rank %d of %d (%s)", rank(), world(), backend)
    if rank():  # one log per run: the other ranks report warnings and errors only
        logging.getLogger().setLevel(logging.WARNING)
    return True


def finish() -> None:
    if active():
        dist.barrier()
        dist.destroy_process_group()


def shard(n: int) -> slice:
    """This rank's contiguous share of range(n): sizes differ by at most one, rank order = index order."""
    r, w = rank(), world()
    return slice(r * n // w, (r + 1) * n // w)


def gather(array: np.ndarray) -> np.ndarray:
    """Every rank's array (first dimension may differ) concatenated in rank order, on every rank."""
    if not active():
        return array
    parts: list = [None] * world()
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)


def broadcast(obj):
    """Rank 0's value of `obj` on every rank (decisions that must not diverge, e.g. early stopping)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(value: float) -> float:
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def barrier() -> None:
    if active():
        dist.barrier()


def become_workers(nproc: int, module: str) -> None:
    """A stage's command line with `nproc` > 1 that is not yet a torchrun worker: run the same
    command as `nproc` workers (`relaunch`) and exit with their status. Otherwise return at once."""
    if nproc > 1 and not launched():
        raise SystemExit(relaunch(nproc, module))


def relaunch(nproc: int, module: str) -> int:
    """Run `python -m module <this process's arguments>` as `nproc` workers under
    torch.distributed.run on this node and return its exit status (rendezvous on a free local port)."""
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([f"--nproc_per_node={nproc}", "--standalone", "--no-python",
                                         sys.executable, "-m", module, *sys.argv[1:]])
    log.info("relaunching %s on %d processes (torch.distributed.run)", module, nproc)
    try:
        run(args)
    except Exception as e:  # noqa: BLE001 - ChildFailedError carries the failing rank's traceback
        log.error("%s failed on %d processes: %s", module, nproc, e)
        return 1
    return 0
