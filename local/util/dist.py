"""Data parallel without a framework: where this process sits, and its share of the items.

Under torchrun (WORLD_SIZE > 1) `init_distributed` starts one process group (NCCL on GPUs, gloo
on CPUs) and each rank takes the deterministic shard ``items[rank::world_size]``: every item
once, the same split on every run. A single process needs no torch.distributed at all.

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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


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
