"""Score every training item: k samples with the audio and k without, resumable, data parallel.

Each pass (`audio`, `no_audio`) is the evaluation runner's predict step with k samples an item:
this rank's deterministic shard (`local.util.dist.shard`, items[rank::world_size]), minus the
items an earlier run logged, in batches, one flushed JSONL line per item
(`local.eval.prediction_log`: torn last lines cut, settings guarded), a progress bar on rank 0;
after a barrier rank 0 reads every rank's log. A line holds the item's k responses, their errors
and which are right under the training reward (`local.core.rewards.REWARDS`, `accuracy` by
default: the reward whose spread makes a GRPO group learn).

Example:
    >>> logs = score_pass(sampler, records, Path("data/curate/m/abc/passes/audio"), dist,
    ...                   reward="accuracy", template="default", batch_size=8,
    ...                   settings={"k": 4})                              # doctest: +SKIP
    >>> logs["avqa-train-0"]["correct"]                                     # doctest: +SKIP
    [1, 0, 1, 1]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from local.core.records import Record
from local.core.rewards import REWARDS
from local.curate.sampling import Sampler
from local.eval.generation import Output
from local.eval.prediction_log import read_logs, resumable_shard
from local.util.dist import DistContext

logger = logging.getLogger(__name__)


def judged(record: Record, outputs: Sequence[Output], reward: str) -> list[int]:
    """1/0 per sample: right under the training reward `reward`; an error is wrong."""
    texts = [o.response or "" for o in outputs]
    scores = REWARDS[reward](texts, answer=[record.answer] * len(texts),
                             choices=[list(record.choices)] * len(texts))
    return [int(s > 0 and o.error is None and o.response is not None)
            for s, o in zip(scores, outputs, strict=True)]


def log_entry(record: Record, outputs: Sequence[Output], reward: str, rank: int
              ) -> dict[str, Any]:
    """One item's line: its k responses, errors and verdicts."""
    return {"id": record.id, "responses": [o.response for o in outputs],
            "errors": [o.error for o in outputs], "correct": judged(record, outputs, reward),
            "audio_truncated": any(o.audio_truncated for o in outputs), "rank": rank}


def score_pass(make_sampler: Callable[[], Sampler], records: Sequence[Record], work_dir: Path,
               dist: DistContext, *, reward: str, template: str, batch_size: int,
               settings: dict[str, Any], desc: str = "curate"
               ) -> dict[str, dict[str, Any]] | None:
    """Sample every record not yet logged under `work_dir`; rank 0 returns every item's line.

    `make_sampler` is called (once, cache it) only if this rank has items left."""
    if reward not in REWARDS or not reward.startswith("accuracy"):
        raise ValueError(f"reward {reward!r}: pick an accuracy reward of "
                         f"{sorted(r for r in REWARDS if r.startswith('accuracy'))}")
    missing = [r.id for r in records if r.answer is None]
    if missing:
        raise ValueError(f"items {missing[:3]} have no answer (a withheld test split): "
                         "nothing to score them against")
    with resumable_shard(records, work_dir, dist, make_sampler, settings=settings, desc=desc,
                         verb="sample") as run:
        for start in range(0, len(run.todo), batch_size):
            batch = run.todo[start:start + batch_size]
            for record, outputs in zip(batch, run.backend.sample(batch, template), strict=True):
                run.log.append(log_entry(record, outputs, reward, dist.rank))
                run.bar.update(1)
    dist.barrier()
    return read_logs(work_dir) if dist.is_main else None
