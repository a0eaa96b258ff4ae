"""Multi-process training under torchrun (DDP): joining the process group and agreeing on decisions.

Every rank runs the same loop, and every collective (gradient all-reduce, barrier) must be reached by
all of them the same number of times. So a decision that ends or shapes the loop (the schedule's
length, stopping for the time budget) must not be taken by each rank from its own clock: one rank
would leave the loop while the others wait for it at the next all-reduce until the timeout. The
functions here make such decisions common: `broadcast_int` hands rank 0's value to every rank,
`any_rank` stops everyone as soon as one rank must stop.

Without torchrun (WORLD_SIZE unset or 1) they are no-ops, so the loop calls them unconditionally.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

# Ranks other than 0 wait in the first collective while rank 0 builds the corpus, the tokenizer and
# the shards (minutes to an hour on a large corpus), and during rank 0's evaluations; the default
# timeout (10-30 minutes) would kill them.
TIMEOUT = datetime.timedelta(hours=2)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init(device: str | None = None) -> torch.device:
    """Join torchrun's process group (once per process) and return this rank's device.

    NCCL on CUDA; gloo when `device` asks for the CPU or no GPU exists (tests run DDP that way)."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = want.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not active():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def shutdown() -> None:
    """Leave the process group (NCCL warns about, and may hang on, groups left open at exit)."""
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's `value` on every rank."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one: the earliest deadline wins, so no rank
    runs past its own budget and all leave the loop at the same step."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
