"""Log-probs at the sampling temperature (TRL 1.16) against raw logits (R1-AQA): the effect.

TRL 1.16 scores every completion token with ``log_softmax(logits / T)``, T the sampling
temperature (trl/trainer/grpo_trainer.py, GRPOTrainer.__init__:
``add_fused_lm_head(..., temperature=self.temperature)``, for the policy and the reference);
R1-AQA, the ancestor of the reference recipe (WeST's GRPO example), scores with
``log_softmax(logits)``. The recipe keeps TRL's behaviour; this script measures what it changes.

On each model: one rollout of 2 prompts x 4 completions sampled at T = 0.7, the policy nudged off
the reference (random noise on every weight, so the KL term is not zero), then for both scorings:
mean |logp_T - logp_1| per completion token, the mean k3 KL per token, the loss
``-(A * ratio - beta * k3)`` (token mean per completion, then mean; A = +-1 per group) and its
gradient. Prints one JSON line per model.

    $ .venv/bin/python -m bench.logp_temperature                     # both tiny checkpoints
    $ .venv/bin/python -m bench.logp_temperature --model exp/demo/models/initial   # warmed-up
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import datasets
import torch

from local.core.collate import AUDIO_KEYS
from local.core.models import load_model_and_processor
from local.core.records import Record
from local.demo.data import _wav_bytes, make_items
from local.demo.tiny import build_tiny_checkpoint
from local.train.config import parse_args
from local.train.dataset import training_row
from local.train.trainer import AudioGRPOTrainer

G, BETA = 4, 0.04


def _rows(n: int = 2) -> datasets.Dataset:
    rows = [training_row(Record(id=f"t-{i}", audio=_wav_bytes(item.audio), question=item.question,
                                choices=item.choices, answer=item.answer), "default")
            for i, item in enumerate(make_items(n, 0))]
    return datasets.Dataset.from_list(rows)


def _reward(completions: list[Any], **_: Any) -> list[float]:
    return [0.0] * len(completions)  # advantages are set by hand below


def _logits(model: Any, out: dict[str, Any]) -> torch.Tensor:
    """Raw next-token logits at the completion positions (float32)."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    keep = out["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=mask,
                   **{k: out[k] for k in AUDIO_KEYS}).logits[:, -keep - 1:-1]
    return logits.float()


def _token_logps(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, ids[..., None])[..., 0]


def measure(model_path: str, temperature: float = 0.7, nudge: float = 0.02,
            seed: int = 0) -> dict[str, Any]:
    """The numbers for one model (see the module docstring)."""
    torch.manual_seed(seed)
    loaded = load_model_and_processor(model_path, dtype="float32")
    with tempfile.TemporaryDirectory() as out_dir:
        config, _ = parse_args([
            "--output_dir", out_dir, "--use_cpu", "true", "--bf16", "false",
            "--model_dtype", "float32", "--gradient_checkpointing", "false",
            "--num_generations", str(G), "--per_device_train_batch_size", str(2 * G),
            "--max_completion_length", "16", "--temperature", str(temperature),
            "--beta", str(BETA), "--report_to", "none", "--log_completions", "false"])
        trainer = AudioGRPOTrainer(model=loaded.model, processing_class=loaded.processor,
                                   family=loaded.family, reward_funcs=[_reward], args=config,
                                   train_dataset=_rows())
    trainer.model.train()
    out = trainer._generate_and_score_completions([trainer.train_dataset[i // G]
                                                   for i in range(2 * G)])
    mask = out["completion_mask"].float()
    ids = out["completion_ids"]
    with torch.no_grad():
        ref_logits = _logits(trainer.ref_model, out)
        for parameter in trainer.model.parameters():
            parameter.add_(nudge * torch.randn_like(parameter))
    advantages = torch.tensor([1.0, -1.0] * G)[:, None]
    logits = _logits(trainer.model, out)
    trl_logps = out["ref_per_token_logps"]  # TRL's own scoring of the reference, at T
    results: dict[str, Any] = {
        "model": Path(model_path).name, "temperature": temperature,
        "tokens": int(mask.sum()),
        "trl_reference_matches_log_softmax_logits_over_T": bool(torch.allclose(
            (trl_logps * mask), _token_logps(ref_logits, ids, temperature) * mask, atol=1e-4)),
    }
    grads = {}
    for name, t in (("at_T", temperature), ("raw", 1.0)):
        logps, ref = _token_logps(logits, ids, t), _token_logps(ref_logits, ids, t)
        k3 = torch.exp(ref - logps) - (ref - logps) - 1
        ratio = torch.exp(logps - logps.detach())
        per_token = -(advantages * ratio - BETA * k3)
        loss = ((per_token * mask).sum(1) / mask.sum(1)).mean()
        trainer.model.zero_grad()
        loss.backward(retain_graph=True)
        grads[name] = torch.cat([p.grad.flatten() for p in trainer.model.parameters()
                                 if p.grad is not None])
        results[f"kl_per_token_{name}"] = float((k3 * mask).sum() / mask.sum())
        results[f"loss_{name}"] = float(loss)
        results[f"logp_mean_{name}"] = float((logps.detach() * mask).sum() / mask.sum())
    delta = (_token_logps(logits, ids, temperature) - _token_logps(logits, ids, 1.0)).abs()
    results["mean_abs_logp_diff_per_token"] = float((delta * mask).sum() / mask.sum())
    results["grad_norm_ratio_at_T_over_raw"] = float(grads["at_T"].norm() / grads["raw"].norm())
    results["grad_cosine"] = float(torch.nn.functional.cosine_similarity(
        grads["at_T"], grads["raw"], dim=0))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="*", help="checkpoint folders (default: tiny ones)")
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models = args.model or [str(build_tiny_checkpoint(f, Path(tmp) / f"tiny-{f}"))
                                for f in ("qwen2_audio", "qwen2_5_omni")]
        for model in models:
            results.append(measure(model, args.temperature))
            print(json.dumps(results[-1]))
    return results


if __name__ == "__main__":
    main()
