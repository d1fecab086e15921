"""Light worker processes for the frozen-encoder cache tests (spawned: keep the imports few)."""

from __future__ import annotations

import torch

from local.train.audio_cache import AudioEncoderCache


def agreement_worker(rank: int, port: int) -> None:
    """Rank `rank` of 2: two towers equal everywhere but on rank 1 must count as not shared on
    both ranks (an AssertionError here fails the spawning test)."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                         rank=rank, world_size=2)
    try:
        towers = [torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)]
        towers[1].load_state_dict(towers[0].state_dict())
        if rank == 1:  # this rank's shard of the reference differs; rank 0's does not
            with torch.no_grad():
                towers[1].weight.add_(1.0)
        shared = AudioEncoderCache(towers).shared
        assert not shared, f"rank {rank} would share the store"
    finally:
        torch.distributed.destroy_process_group()
