"""A short supervised warm-up that makes a random tiny model worth training with GRPO.

A random model never writes `<answer>X</answer>`, so every completion earns 0, every group's
rewards are equal, every advantage is 0 and GRPO learns nothing. The warm-up teaches the answer
format from a deliberately imperfect teacher:
  * `label_bias`: on that share of the rows the taught option is the question's default (its
    alphabetically first option: "1", "falling", "first", "high") whatever the audio says.
    Above 0.5 the model learns to answer the default, so its greedy answers start near chance,
    while on the other rows the taught option follows the audio: the model hears the
    difference but does not act on it. Its sampled completions are right on a good share of
    the items whose answer is not the default, so the completions of a group earn different
    rewards, and GRPO, rewarding the right ones, moves the greedy answer to the one the audio
    supports (`python -m local.demo.seeds` measures how far, over seeds).
  * `label_noise`: on that share of the other rows the option is a uniformly random one.
An honest teacher (both 0) would teach the tasks themselves, and step 0 would already be where
GRPO should take the model (`python -m local.demo --label_bias 0`: 100% (256/256) at step 0 on
seed 0's held-out items, measured at the commit that made 0.6 the demo's default, so the tiny
model can hear every task); a format-only one (`label_noise` 1) gives the model no reason to
use the audio, and GRPO would have to find it from the rewards alone.

The rows come from the real training-data builder (`local.train.dataset`) and go through the same
audio collation as training and evaluation (`local.core.collate`), so the audio reaches the model.
Loss: next-token cross-entropy on the answer tokens only (`<answer>X</answer><|im_end|>`).

Example:
    $ python -m local.warmup --model exp/demo/models/random --data exp/demo/data/avqa \\
        --out exp/demo/models/initial --steps 60
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from local.core.collate import encode_batch, load_clip, render_prompt
from local.core.models import load_model_and_processor
from local.core.prompts import clean_messages
from local.core.records import row_audio
from local.core.special_tokens import STOP_TOKENS
from local.train.dataset import build_train_dataset
from local.util.fsio import building, is_done

IGNORE = -100


def answer_target(answer: str, end_token: str = STOP_TOKENS[0]) -> str:
    """What the warm-up teaches the model to write after the prompt.

    >>> answer_target("rising")
    '<answer>rising</answer><|im_end|>'
    """
    return f"<answer>{answer}</answer>{end_token}"


def default_option(choices: list[str]) -> str:
    """The option a biased teacher gives regardless of the audio: the alphabetically first.

    >>> default_option(["low", "high"])
    'high'
    """
    return min(choices)


def pick_label(answer: str, choices: list[str], noise: float, rng: random.Random,
               bias: float = 0.0) -> str:
    """The taught option: with probability `bias` the default option, else with probability
    `noise` a uniformly random one (maybe correct), else the correct one.

    >>> pick_label("low", ["high", "low"], 0.0, random.Random(0))
    'low'
    >>> pick_label("low", ["high", "low"], 0.0, random.Random(0), bias=1.0)
    'high'
    """
    if rng.random() < bias:
        return default_option(choices)
    return rng.choice(list(choices)) if rng.random() < noise else answer


def answer_labels(input_ids: torch.Tensor, target_ids: list[list[int]]) -> torch.Tensor:
    """Labels for left-padded rows that end with their target: IGNORE everywhere else.

    >>> answer_labels(torch.tensor([[0, 5, 6, 7]]), [[6, 7]]).tolist()
    [[-100, -100, 6, 7]]
    """
    labels = torch.full_like(input_ids, IGNORE)
    for row, target in enumerate(target_ids):
        tail = input_ids[row, -len(target):].tolist()
        if tail != list(target):
            raise ValueError(f"row {row}: the encoded prompt does not end with the answer tokens "
                             f"({tail} != {target}); the tokenizer merged across the boundary.")
        labels[row, -len(target):] = input_ids[row, -len(target):]
    return labels


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
        ignore_index=IGNORE)


def row_clip(row: dict[str, Any], family: Any) -> np.ndarray:
    """The training row's audio (any of its audio columns), decoded for `family`'s model."""
    return load_clip(row_audio(row), family=family, sampling_rate=row["sampling_rate"],
                     name=row["id"]).array


def _batch(loaded: Any, rows: list[dict[str, Any]], labels: list[str]) -> dict[str, torch.Tensor]:
    processor, family = loaded.processor, loaded.family
    targets = [answer_target(label) for label in labels]
    texts = [render_prompt(processor, clean_messages(row["prompt"])) + target
             for row, target in zip(rows, targets, strict=True)]
    audios = [row_clip(row, family) for row in rows]
    batch = dict(encode_batch(processor, family, texts, audios, padding_side="left"))
    target_ids = [processor.tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
    batch["labels"] = answer_labels(batch["input_ids"], target_ids)
    return batch


def warmup_settings(model: str | Path, data: str | Path, *, steps: int = 60,
                    batch_size: int = 16, learning_rate: float = 2e-3, label_noise: float = 0.5,
                    label_bias: float = 0.0, template: str = "default",
                    seed: int = 0) -> dict[str, Any]:
    """What a warm-up is recorded with in its `.done` (a warm-up with other settings is redone).

    >>> warmup_settings("m", "d", label_bias=0.6)["label_bias"]
    0.6
    """
    return {"model": str(model), "data": str(data), "steps": steps, "batch_size": batch_size,
            "learning_rate": learning_rate, "label_noise": label_noise,
            "label_bias": label_bias, "template": template, "seed": seed}


def warmup(model: str | Path, data: str | Path, out: str | Path, *, steps: int = 60,
           batch_size: int = 16, learning_rate: float = 2e-3, label_noise: float = 0.5,
           label_bias: float = 0.0, template: str = "default", seed: int = 0,
           overwrite: bool = False) -> Path:
    """Fine-tune `model` on the answers of the AVQA-shaped set `data`; save it to `out`.

    Skips when `out/.done` records the same settings (unless `overwrite`). Writes the model,
    processor and `warmup_log.json` (loss per step) to a folder built aside and swapped in when
    done (`local.util.fsio.building`), its `.done` recording the settings.
    """
    out = Path(out)
    settings = warmup_settings(model, data, steps=steps, batch_size=batch_size,
                               learning_rate=learning_rate, label_noise=label_noise,
                               label_bias=label_bias, template=template, seed=seed)
    if not overwrite and is_done(out, settings):
        print(f"warm-up: {out} is done (delete it or pass --overwrite to redo)")
        return out
    torch.manual_seed(seed)
    rng = random.Random(seed)
    loaded = load_model_and_processor(str(model), dtype="float32")
    dataset, _ = build_train_dataset(data, "avqa", template=template)
    rows = [dataset[i] for i in range(len(dataset))]
    optimizer = torch.optim.AdamW(loaded.model.parameters(), lr=learning_rate, weight_decay=0.0)
    loaded.model.train()
    log: list[dict[str, float]] = []
    order: list[int] = []
    with tqdm(range(1, steps + 1), desc="warm-up", unit="step") as bar:
        for step in bar:
            if len(order) < batch_size:
                order += rng.sample(range(len(rows)), len(rows))
            chosen = [rows[order.pop()] for _ in range(batch_size)]
            labels = [pick_label(r["answer"], r["choices"], label_noise, rng, label_bias)
                      for r in chosen]
            batch = _batch(loaded, chosen, labels)
            target = batch.pop("labels")
            logits = loaded.model(**batch).logits
            loss = answer_loss(logits, target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(loaded.model.parameters(), 1.0)
            optimizer.step()
            value = loss.item()
            log.append({"step": step, "loss": value})
            bar.set_postfix(loss=f"{value:.3f}")
    loaded.model.eval()
    with building(out, settings) as tmp:
        loaded.model.save_pretrained(tmp)
        loaded.processor.save_pretrained(tmp)
        (tmp / "warmup_log.json").write_text(json.dumps({"settings": settings, "log": log},
                                                        indent=1))
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="starting checkpoint folder")
    parser.add_argument("--data", required=True, help="AVQA-shaped save_to_disk folder")
    parser.add_argument("--out", required=True, help="where the warmed-up model goes")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--label_noise", type=float, default=0.5,
                        help="share of rows taught a random option instead of the right one")
    parser.add_argument("--label_bias", type=float, default=0.0,
                        help="share of rows taught the default (alphabetically first) option")
    parser.add_argument("--template", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    return warmup(args.model, args.data, args.out, steps=args.steps, batch_size=args.batch_size,
                  learning_rate=args.learning_rate, label_noise=args.label_noise,
                  label_bias=args.label_bias, template=args.template, seed=args.seed,
                  overwrite=args.overwrite)


if __name__ == "__main__":
    main()
