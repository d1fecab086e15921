"""`train.py` with the tests' reward `length` registered, for runs launched in a subprocess
(torchrun): the shipped rewards score 0 on a random tiny model, so its weights would not move.

    $ python -m torch.distributed.run --nproc_per_node 2 tests/train_entry.py <train.py options>
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train  # noqa: E402
from local.core.rewards import REWARDS  # noqa: E402
from tests.helpers_train import length_reward  # noqa: E402

if __name__ == "__main__":
    REWARDS["length"] = length_reward
    try:
        train.main(sys.argv[1:])
    finally:
        train._shutdown()
