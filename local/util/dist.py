"""Data parallel without a framework: where this process sits, and its share of the items.

Under torchrun (WORLD_SIZE > 1) `init_distributed` starts one process group (NCCL on GPUs, gloo
on CPUs) and each rank takes the deterministic shard ``items[rank::world_size]``: every item
once, the same split on every run. A single process needs no torch.distributed at all.

Logs are rank 0's (`setup_logging`): rank 0 logs INFO and above; another rank only what is its
own to say, through `ReplicaLogFilter`: warnings once per kind, errors always, and nothing from
the loggers every rank repeats alike (`SHARED_LOGGERS`: every rank reads the same question or
training file, so rank 0's warnings about it are everyone's).

torch is imported inside the functions that need it, so importing this module (and `shard`,
plain Python) stays as cheap as the standard library.

Example:
    >>> from local.util.dist import init_distributed, shard
    >>> dist = init_distributed()            # WORLD_SIZE unset: rank 0 of 1, no process group
    >>> (dist.rank, dist.world_size, dist.is_main)
    (0, 1, True)
    >>> shard(["a", "b", "c", "d", "e"], rank=1, world_size=2)
    ['b', 'd']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers whose records every rank repeats alike (module names; prefixes count): the readers and
# the bad-record policy run on every rank over the same file (evaluation and training both load
# the whole set, then shard), so rank 0's copy is the one shown.
SHARED_LOGGERS = ("local.data", "local.core.records")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank and world size (1 process: rank 0 of 1, no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        import torch  # heavy: only when a device is asked for

        return torch.device(f"cuda:{self.local_rank}") if torch.cuda.is_available() \
            else torch.device("cpu")

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch  # a process group exists, so torch is loaded already

            torch.distributed.barrier()


def init_distributed() -> DistContext:
    """Read torchrun's RANK/WORLD_SIZE; start a process group only when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch  # heavy: only under torchrun

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's deterministic share: every world_size-th item from `rank`.

    >>> shard(list(range(7)), 1, 3)
    [1, 4]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}.")
    return list(items[rank::world_size])


class ReplicaLogFilter(logging.Filter):
    """What a rank other than 0 shows: no record below WARNING, none of `shared` loggers
    (below ERROR), each kind of warning once (a kind: the logger and the message template,
    `record.msg` before its arguments, so "%s: %s; scored wrong." per item is one kind), errors
    always; what passes is prefixed "[rank N]", a warning with a note that its repeats are not
    shown.
    """

    def __init__(self, rank: int, shared: Sequence[str] = SHARED_LOGGERS) -> None:
        super().__init__()
        self.rank = rank
        self.shared = tuple(shared)
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rank_filtered", False):  # passed already (another root handler)
            return True
        if record.levelno < logging.WARNING:
            return False
        note = ""
        if record.levelno < logging.ERROR:
            if any(record.name == s or record.name.startswith(s + ".") for s in self.shared):
                return False
            kind = (record.name, str(record.msg))
            if kind in self.seen:
                return False
            self.seen.add(kind)
            note = f" [later ones of this kind on rank {self.rank} not shown]"
        record.msg, record.args = f"[rank {self.rank}] {record.getMessage()}{note}", None
        record.rank_filtered = True
        return True


def setup_logging(rank: int, fmt: str = LOG_FORMAT, force: bool = True) -> None:
    """Root logging for one process of a run: INFO on rank 0; on any other rank WARNING and
    above through a `ReplicaLogFilter` on every root handler (one log, not world_size copies).
    `force=False` keeps root handlers someone set up already (`logging.basicConfig`)."""
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=fmt,
                        force=force)
    if rank != 0:
        replica = ReplicaLogFilter(rank)  # one filter: a kind shown once, whatever the handler
        for handler in logging.getLogger().handlers:
            handler.addFilter(replica)
