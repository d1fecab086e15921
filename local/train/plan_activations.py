"""The memory planner's transient rows: vLLM's share, activations, logits and the rollout.

How each is estimated (each row's `how` says it too):
- activations: gradient checkpointing keeps every decoder layer's input (B x L x h x 2 B) and
  recomputes one layer in the backward, ~(8h + 4 ffn + 2 kv) values per token in bf16; without it
  every layer keeps that. Attention is SDPA/flash: no L^2 term. L = prompt + completion, the prompt
  being 25 audio tokens per second of audio (`audio_seconds`, 30 by default) + 128 text tokens.
  A trained audio encoder adds its layers' inputs over its positions (50 per second; Qwen2-Audio
  always 1500, its 30 s window).
- logits: TRL 1.16 never builds B x L x vocabulary logits: its fused LM head scores 4096-token x
  32768-column float32 tiles, plus the head's float32 weight gradient when the head trains.
- rollout (HF generate): K and V of every layer for B x steps_per_generation rows of L tokens, and
  one layer's prefill; under ZeRO-3 TRL gathers the whole policy first (ds3_gather_for_generation).
  The no-grad log-prob passes of a rollout (old policy, reference) need less than the update.
- vLLM (colocate): `vllm_gpu_memory_utilization` x card, which must hold its 16-bit weights, a
  2 GiB allowance (profiling activations, CUDA graphs) and a KV cache of at least max_model_len
  tokens, else vLLM refuses to start; with sleep mode it is held during rollouts only.
"""

from __future__ import annotations

from local.train.plan_model import ModelShape
from local.train.plan_settings import (
    AUDIO_TOKENS_PER_SECOND,
    ENCODER_FRAMES_PER_SECOND,
    GIB,
    LM_HEAD_TILE,
    PROMPT_TEXT_TOKENS,
    VLLM_ALLOWANCE_GIB,
    Estimate,
    Row,
    Settings,
    billions,
    tokens,
)
from local.train.vllm_rollouts import default_max_model_length


def vllm_row(shape: ModelShape, s: Settings, est: Estimate) -> None:
    """vLLM's share of the card and what it holds; a share vLLM cannot start in is a problem."""
    share = s.vllm_share * s.card_gib
    weights = 2 * shape.total / GIB
    kv_gib = share - weights - VLLM_ALLOWANCE_GIB
    per_token = shape.kv_bytes_per_token()
    capacity = max(0, int(kv_gib * GIB / per_token))
    # unset: what training gives vLLM (local.train.vllm_rollouts.default_max_model_length)
    max_len = s.vllm_max_len or default_max_model_length(shape.max_audio_seconds, s.completion)
    _, length = tokens(shape, s)
    rollout = s.batch * s.steps_per_generation * length
    est.vllm = dict(share_gib=share, weights_gib=weights, kv_gib=kv_gib, kv_tokens=capacity,
                    max_model_len=max_len, rollout_tokens=rollout)
    how = (f"{s.vllm_share:g} x {s.card_gib:g} GiB: 16-bit weights {weights:.2f} + allowance "
           f"{VLLM_ALLOWANCE_GIB:g} + KV cache {kv_gib:.2f} GiB ({capacity:,} tokens; "
           f"max_model_len {max_len:,}, the rollout's {rollout:,})")
    if s.vllm_sleep:
        how += "; sleep mode: freed during the update"
    est.rows.append(Row("vLLM colocate share", share, "rollout" if s.vllm_sleep else "always",
                        "vllm", how))
    if kv_gib <= 0:
        est.problems.append(f"vLLM's share ({share:.1f} GiB) does not hold its weights "
                            f"({weights:.1f} GiB) and the {VLLM_ALLOWANCE_GIB:g} GiB allowance: "
                            "it stops at start")
    elif capacity < max_len:
        est.problems.append(f"vLLM's KV cache holds {capacity:,} tokens, fewer than max_model_len "
                            f"{max_len:,}: vLLM refuses to start")
    elif capacity < rollout:
        est.notes.append(f"vLLM's KV cache holds {capacity:,} of the rollout's {rollout:,} "
                         "tokens: it queues the rest (slower, no error)")


def activation_rows(shape: ModelShape, s: Settings, est: Estimate, audio_trains: bool,
                     head_trains: bool) -> None:
    """The update's activations and logits, and the HF rollout's KV cache (see above)."""
    prompt, length = tokens(shape, s)
    b, h = s.batch, shape.hidden
    per_token = 8 * h + 4 * shape.ffn + 2 * shape.kv_heads * shape.head_dim
    layer = b * length * per_token * 2
    seconds = min(s.audio_seconds, shape.max_audio_seconds)
    if s.gradient_checkpointing:
        act = shape.layers * b * length * h * 2 + layer
        how = (f"gradient checkpointing: {shape.layers} layer inputs (B x L x h x 2 B) + one "
               f"layer recomputed (B x L x (8h + 4 ffn + 2 kv) x 2 B)")
    else:
        act, how = shape.layers * layer, f"no checkpointing: {shape.layers} x B x L x " \
            "(8h + 4 ffn + 2 kv) x 2 B"
    est.rows.append(Row(
        "activations, policy update (estimate)", act / GIB, "update", "activations",
        f"{how}; B {b}, L {length} = {int(AUDIO_TOKENS_PER_SECOND * seconds)} audio tokens "
        f"({seconds:g} s) + {PROMPT_TEXT_TOKENS} text + {s.completion} completion"))
    if audio_trains:
        frames = 1500 if shape.pads_audio_to_window else int(ENCODER_FRAMES_PER_SECOND * seconds)
        d = shape.audio_hidden
        enc = b * frames * (shape.audio_layers * d + 8 * d + 4 * shape.audio_ffn) * 2
        est.rows.append(Row(
            "audio encoder activations, update (estimate)", enc / GIB, "update", "activations",
            f"{shape.audio_layers} layer inputs + one layer, {frames} positions x B {b}"))
    tile = min(b * s.completion, LM_HEAD_TILE[0]) * min(shape.vocab, LM_HEAD_TILE[1]) * 4
    grad_w = shape.lm_head * 4 if head_trains else 0
    grad_h = b * s.completion * h * 4
    est.rows.append(Row(
        "logits: TRL's fused LM head, update (estimate)", (tile + grad_w + grad_h) / GIB,
        "update", "activations",
        f"one float32 tile of {LM_HEAD_TILE[0]} tokens x {LM_HEAD_TILE[1]} of {shape.vocab:,} "
        "columns (no B x L x vocabulary logits)" + (
            f" + the head's float32 weight gradient ({shape.vocab:,} x {h} x 4 B)"
            if head_trains else "") + " + the hidden states' float32 gradient"))
    if s.use_vllm:
        return
    rows = b * s.steps_per_generation
    kv = rows * length * shape.kv_bytes_per_token()
    prefill = rows * prompt * per_token * 2
    est.rows.append(Row(
        "rollout: HF generate KV cache + prefill (estimate)", (kv + prefill) / GIB, "rollout",
        "activations", f"{rows} rows (B x steps_per_generation) x {length} tokens x "
        f"{shape.kv_bytes_per_token():,} B of K/V + one layer's prefill"))
    if s.zero == 3 and s.ds3_gather:
        est.rows.append(Row(
            "rollout: ZeRO-3 policy gathered for generate", 2 * shape.total / GIB, "rollout",
            "activations", f"2 B x {billions(shape.total)}: ds3_gather_for_generation true "
            "(TRL's default; false generates layer by layer, slowly)"))
