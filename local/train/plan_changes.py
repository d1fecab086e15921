"""The cheapest change that makes a run fit its GPUs, for the memory planner's verdict.

Candidates come in order of cost, each re-planned with `local.train.plan_memory.estimate`:
first those that keep the training itself (same loss, same updates), cheapest in speed first,
then those that change what is trained:

1. a smaller vLLM share (`--vllm_gpu_memory_utilization`, with `--vllm_max_model_length` the
   rollout's length so the KV cache it needs is small), or a larger one where vLLM cannot start;
2. vLLM sleep mode (`--vllm_enable_sleep_mode true`: weights and KV cache leave the GPU for the
   update, re-sent before each rollout);
3. ZeRO-2 (gradients partitioned too; a DeepSpeed config with "stage": 2);
4. fewer completions per micro-step with more accumulation (same global batch);
5. ZeRO-3 generating without gathering the whole policy (`--ds3_gather_for_generation false`);
6. ZeRO-3 without offload; 7. ZeRO-3 with parameters and optimizer on the host
   (conf/ds_zero3.json; the host RAM it needs is in the plan);
8. LoRA (`--use_peft true`: no reference model, adapters trained only);
9. shorter completions (`--max_completion_length`).

`num_generations` (G) changes nothing per GPU: TRL counts `per_device_train_batch_size` in
completions. When no single change fits, pairs are tried in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from peft import LoraConfig

from local.core.families import family_named
from local.train.plan_memory import estimate
from local.train.plan_model import ADAPTER_TARGETS_HINT, ModelShape
from local.train.plan_settings import GIB, VLLM_ALLOWANCE_GIB, Estimate, Settings, tokens

LORA = dict(r=64, lora_alpha=128, target_modules=ADAPTER_TARGETS_HINT.split())


@dataclass(frozen=True)
class Change:
    kind: str  # one of KINDS
    label: str  # what to pass, e.g. "--vllm_enable_sleep_mode true"
    settings: Settings


KINDS = ("vllm share", "sleep mode", "zero-2", "batch", "ds3 gather", "zero-3",
         "zero-3 offload", "lora", "completion")


@dataclass
class Fix:
    change: Change
    estimate: Estimate

    @property
    def label(self) -> str:
        return self.change.label


def fits(est: Estimate, card_gib: float) -> bool:
    return not est.problems and est.peak <= card_gib


def _vllm_share(shape: ModelShape, s: Settings) -> Iterator[Change]:
    _, length = tokens(shape, s)
    max_len = s.vllm_max_len
    if max_len is None or max_len > length:
        max_len = 256 * math.ceil(length / 256)
    need_tokens = max(max_len, s.batch * s.steps_per_generation * length)
    need_gib = 2 * shape.total / GIB + VLLM_ALLOWANCE_GIB + \
        need_tokens * shape.kv_bytes_per_token() / GIB
    share = math.ceil(need_gib / s.card_gib * 100) / 100
    if share < 1 and share != s.vllm_share:
        label = f"--vllm_gpu_memory_utilization {share:g}"
        if max_len != s.vllm_max_len:
            label += f" --vllm_max_model_length {max_len}"
        yield Change("vllm share", label, replace(s, vllm_share=share, vllm_max_len=max_len))


def candidates(shape: ModelShape, s: Settings) -> Iterator[Change]:
    """Single changes, cheapest first (see the module docstring)."""
    if s.use_vllm:
        yield from _vllm_share(shape, s)
        if not s.vllm_sleep:
            yield Change("sleep mode", "--vllm_enable_sleep_mode true", replace(s, vllm_sleep=True))
    if s.zero in (0, 1):
        yield Change("zero-2", 'ZeRO-2: a DeepSpeed config with "stage": 2 (gradients partitioned)',
                     replace(s, zero=2))
    batch = s.batch // 2
    while batch >= 1:
        k = s.batch // batch
        if s.batch % batch == 0:
            yield Change("batch", f"--per_device_train_batch_size {batch} "
                         f"--gradient_accumulation_steps {s.grad_accum * k} (same global batch)",
                         replace(s, batch=batch, grad_accum=s.grad_accum * k,
                                 steps_per_generation=s.steps_per_generation * k))
        batch //= 2
    if s.zero == 3 and not s.use_vllm and s.ds3_gather:
        yield Change("ds3 gather", "--ds3_gather_for_generation false (slower generation)",
                     replace(s, ds3_gather=False))
    zero3 = dict(zero=3, deepspeed="ZeRO-3")
    if s.zero != 3 or s.offload_param != "none" or s.offload_optimizer != "none":
        yield Change("zero-3", 'ZeRO-3 without offload (conf/ds_zero3.json with '
                     '"offload_param" and "offload_optimizer" device none)',
                     replace(s, **zero3, offload_param="none", offload_optimizer="none"))
    if s.zero != 3 or s.offload_param == "none" or s.offload_optimizer == "none":
        yield Change("zero-3 offload", "--deepspeed conf/ds_zero3.json (ZeRO-3, parameters "
                     "and optimizer on the host)",
                     replace(s, **{**zero3, "deepspeed": "conf/ds_zero3.json"},
                             offload_param="cpu", offload_optimizer="cpu"))
    if s.peft is None and family_named(shape.family).lora_targets_by_default:
        # the family's targets (Qwen3-Omni: attention and the fused experts, which take no
        # dropout in PEFT): train.py applies them to --use_peft without targets
        yield Change("lora", f"--use_peft true --lora_r {LORA['r']} --lora_alpha "
                     f"{LORA['lora_alpha']} --lora_dropout 0 (the family's targets)",
                     replace(s, peft=LoraConfig(r=LORA["r"], lora_alpha=LORA["lora_alpha"],
                                                lora_dropout=0.0)))
    elif s.peft is None:
        yield Change("lora", f"--use_peft true --lora_r {LORA['r']} --lora_alpha "
                     f"{LORA['lora_alpha']} --lora_target_modules {ADAPTER_TARGETS_HINT}",
                     replace(s, peft=LoraConfig(**LORA)))
    if s.completion > 256:
        yield Change("completion", f"--max_completion_length {s.completion // 2}",
                     replace(s, completion=s.completion // 2))


def fitting_changes(shape: ModelShape, s: Settings) -> list[Fix]:
    """Every single change that makes the run fit, cheapest first; when there is none, the
    fitting pairs of changes of two kinds (at most five), cheapest first."""
    singles = list(candidates(shape, s))
    found = [Fix(c, e) for c in singles if fits(e := estimate(shape, c.settings), s.card_gib)]
    if found:
        return found
    pairs = []
    for rank, first in enumerate(singles):
        for second in candidates(shape, first.settings):
            if KINDS.index(second.kind) > KINDS.index(first.kind):
                cost = rank + next(i for i, c in enumerate(singles) if c.kind == second.kind)
                pairs.append((cost, Change(second.kind, f"{first.label} and {second.label}",
                                           second.settings)))
    for _, change in sorted(pairs, key=lambda pair: pair[0]):
        if fits(e := estimate(shape, change.settings), s.card_gib):
            found.append(Fix(change, e))
            if len(found) == 5:
                break
    return found
