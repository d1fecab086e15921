"""Selection rules: which scored items to train on, and the id list training takes.

Each rule keeps an item by its table row (`local.curate.table`):

  audio_and_spread  (default) audio_contribution > 0 and 0 < acc_audio < 1: the audio helps
                    (the model answers better hearing it than not), and a GRPO group of this
                    item has reward spread (not always right, not always wrong), so it has an
                    advantage to learn from, and what it learns from is listening
  spread            0 < acc_audio < 1: every item that gives GRPO a gradient, audio or not
  audio             audio_contribution > 0, whatever the spread
  strong_audio      acc_no_audio < threshold: an AudioMCQ-style split (He et al., "Measuring
                    Audio's Impact on Correctness", arXiv:2509.21060, partition their data into
                    weak and strong audio-contribution subsets and run RL on the strong one);
                    here by the starting model's own no-audio accuracy, not the paper's exact
                    procedure: an item the model answers without the audio (acc_no_audio >=
                    threshold) is weak, the rest strong
  strong_audio_and_spread
                    strong_audio and 0 < acc_audio < 1: the strong items that give GRPO a
                    gradient
  weak_audio        acc_no_audio >= threshold (the complement of strong_audio)
  all               every item (the baseline a curated run is compared with)

Why the default: an item the model answers as well without the audio teaches listening
nothing, and an item whose k samples all score the same gives a zero advantage, so no gradient
(the cost of its rollouts is spent for nothing). The two conditions are estimates from k
samples: a small k drops some useful items by chance (zero spread in k samples with 0 < p < 1
happens with probability p^k + (1-p)^k).

`selection(rows, rule)` is what `selection.json` holds: the rule, its ids (in table order) and
counts kept / dropped per rule and per category, for every rule.

Example:
    >>> rows = [{"id": "a", "category": "count", "acc_audio": 0.5, "acc_no_audio": 0.25,
    ...          "audio_contribution": 0.25},
    ...         {"id": "b", "category": "count", "acc_audio": 1.0, "acc_no_audio": 1.0,
    ...          "audio_contribution": 0.0}]
    >>> selection(rows, "audio_and_spread")["ids"]
    ['a']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
DEFAULT_RULE = "audio_and_spread"
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Rule:
    name: str
    keep: Callable[[Row, float], bool]
    description: str


def _spread(row: Row) -> bool:
    return 0.0 < row["acc_audio"] < 1.0


RULES: dict[str, Rule] = {rule.name: rule for rule in (
    Rule("audio_and_spread", lambda r, _: r["audio_contribution"] > 0 and _spread(r),
         "audio contribution > 0 and 0 < with-audio accuracy < 1"),
    Rule("spread", lambda r, _: _spread(r), "0 < with-audio accuracy < 1"),
    Rule("audio", lambda r, _: r["audio_contribution"] > 0, "audio contribution > 0"),
    Rule("strong_audio", lambda r, t: r["acc_no_audio"] < t,
         "no-audio accuracy < threshold (AudioMCQ-style strong audio contribution)"),
    Rule("strong_audio_and_spread", lambda r, t: r["acc_no_audio"] < t and _spread(r),
         "no-audio accuracy < threshold and 0 < with-audio accuracy < 1"),
    Rule("weak_audio", lambda r, t: r["acc_no_audio"] >= t,
         "no-audio accuracy >= threshold (AudioMCQ-style weak audio contribution)"),
    Rule("all", lambda r, _: True, "every item"),
)}


def get_rule(name: str) -> Rule:
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose one of {sorted(RULES)}")
    return RULES[name]


def kept(rows: Sequence[Row], rule: str, threshold: float = DEFAULT_THRESHOLD) -> list[bool]:
    """Per row, whether `rule` keeps it."""
    keep = get_rule(rule).keep
    return [bool(keep(row, threshold)) for row in rows]


def counts(rows: Sequence[Row], rule: str, threshold: float = DEFAULT_THRESHOLD
           ) -> dict[str, Any]:
    """{kept, dropped, by_category: {category: {kept, dropped}}} of `rule` over `rows`."""
    flags = kept(rows, rule, threshold)
    by_category: dict[str, dict[str, int]] = {}
    for row, keep in zip(rows, flags, strict=True):
        tally = by_category.setdefault(row["category"], {"kept": 0, "dropped": 0})
        tally["kept" if keep else "dropped"] += 1
    return {"kept": sum(flags), "dropped": len(flags) - sum(flags),
            "by_category": dict(sorted(by_category.items()))}


def selection(rows: Sequence[Row], rule: str = DEFAULT_RULE,
              threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """What `selection.json` holds: the rule, its ids in table order, every rule's counts."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: an accuracy, between 0 and 1")
    chosen = get_rule(rule)
    ids = [row["id"] for row, keep in zip(rows, kept(rows, rule, threshold), strict=True)
           if keep]
    return {"rule": rule, "description": chosen.description, "threshold": threshold,
            "items": len(rows), "kept": len(ids), "ids": ids,
            "counts": {name: counts(rows, name, threshold) for name in RULES}}
