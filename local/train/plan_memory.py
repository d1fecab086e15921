"""Per-GPU memory of a training run, row by row: the arithmetic of the memory planner.

`estimate(shape, settings)` returns the rows `python -m local.train.plan` prints. Model states come
from DeepSpeed's own estimators (`estimate_zero2_model_states_mem_needs`, and
`estimate_zero3_model_states_mem_needs` with zero_init=1: transformers builds the model under
`deepspeed.zero.Init` when the DeepSpeed config is ZeRO-3), called with the *trained* parameter
count, since DeepSpeed keeps gradients and optimizer states for those only. Then what they leave
out, each a row of its own: ZeRO-1's unpartitioned 16-bit gradients, frozen parameters (weights
only, one row per part), the reference model (TRL: none under PEFT or with beta 0; ZeRO stage 0,
a whole copy, under ZeRO-1/2; partitioned under ZeRO-3), DeepSpeed's buckets and ZeRO-3's
gathered parameters, a 1.5 GiB allowance per process for the CUDA context and NCCL, and the
transient rows of `local.train.plan_activations` (vLLM, activations, logits, rollout).

Without DeepSpeed (plain DDP) a trained parameter costs 5 x its dtype: weights, gradients, DDP's
gradient buckets and torch AdamW's two moments, all in the weights' dtype.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from local.train.audio_cache import exclude_audio_tower
from local.train.plan_activations import activation_rows, vllm_row
from local.train.plan_model import AUDIO, VISION, ModelShape, adapter_counts
from local.train.plan_settings import CONTEXT_GIB, GIB, Estimate, Row, Settings, billions


def split_parameters(shape: ModelShape, s: Settings) -> tuple[dict[str, int], dict[str, int]]:
    """(trained, frozen) parameters by part; LoRA adapters count as trained unless their part
    is frozen, the base weights as frozen."""
    frozen_parts = {AUDIO} if s.freeze_audio else set()
    if s.freeze_vision:
        frozen_parts.add(VISION)
    adapters = {part: 0 for part in shape.parts}
    if s.peft is not None:
        peft = copy.deepcopy(s.peft)
        if s.freeze_audio:  # the trainer keeps adapters out of a frozen encoder
            exclude_audio_tower(peft)
        adapters = adapter_counts(shape, peft)
    trained, frozen = {}, {}
    for part, count in shape.parts.items():
        base_trains = s.peft is None and part not in frozen_parts
        trained[part] = 0 if part in frozen_parts else (count if base_trains else adapters[part])
        frozen[part] = (0 if base_trains else count) + (adapters[part] if part in frozen_parts
                                                        else 0)
    return trained, frozen


def _frozen_rows(s: Settings, est: Estimate, w: int, divisor: int) -> None:
    """One row per frozen part: weights only (no gradients, no optimizer states); `divisor` the
    GPUs ZeRO-3 partitions them over (0: offloaded to the host)."""
    for part, count in est.frozen.items():
        if not count:
            continue
        if part == VISION and s.freeze_vision:
            why = "--freeze_vision_tower true, the default; false trains it"
        elif part == AUDIO and s.freeze_audio:
            why = "freeze_audio_encoder true"
        else:
            why = "PEFT: the base weights; the adapters train"
        where = ("on every GPU" if divisor == 1 else "host RAM (offload_param)" if divisor == 0
                 else f"partitioned over {divisor} GPUs")
        gib = 0.0 if divisor == 0 else w * count / divisor / GIB
        est.rows.append(Row(f"{part} (frozen)", gib, "always", "states",
                            f"{w} B x {billions(count)} weights {where}, no gradients or "
                            f"optimizer states ({why})"))


class _NoAcceleratorNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Setting accelerator to CPU")


def _estimators() -> tuple[Any, Any]:
    """DeepSpeed's ZeRO-2 and ZeRO-3 estimators, imported when a plan needs them. Importing
    DeepSpeed on a machine without a GPU logs a notice to stdout, the plan's output: filtered."""
    ds_logger = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _NoAcceleratorNotice) for f in ds_logger.filters):
        ds_logger.addFilter(_NoAcceleratorNotice())
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


def _deepspeed_rows(shape: ModelShape, s: Settings, trained: int, frozen: int,
                    est: Estimate) -> None:
    """Model states (DeepSpeed's estimators) and what they leave out."""
    estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs = _estimators()
    n, node = s.world, s.gpus_per_node
    w = 2 if s.mixed16 else s.weight_bytes
    if s.zero == 3:
        offload_opt, offload_par = s.offload_optimizer != "none", s.offload_param != "none"
        call = dict(total_params=trained, largest_layer_params=shape.largest_layer,
                    num_gpus_per_node=node, num_nodes=s.nodes, cpu_offload=offload_opt,
                    cpu_offload_params=offload_par)
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(**call, zero_init=True)
        cpu_cold, _, _ = estimate_zero3_model_states_mem_needs(**call, zero_init=False)
        est.rows.append(Row(
            "model states, trained parameters (DeepSpeed ZeRO-3 estimator)", gpu / GIB, "always",
            "states", f"estimate_zero3_model_states_mem_needs(total_params={billions(trained)}, "
            f"largest_layer_params={billions(shape.largest_layer)}, {node} GPUs x {s.nodes} "
            f"node(s), offload_optimizer={s.offload_optimizer}, offload_param={s.offload_param}, "
            "zero_init=1)"))
        _frozen_rows(s, est, w, 0 if offload_par else n)
        est.rows.append(Row(
            "ZeRO-3 gathered parameters (up to stage3_max_live_parameters)",
            min(s.max_live_parameters, shape.total) * w / GIB, "always", "allowance",
            f"{s.max_live_parameters:.3g} x {w} B, gathered layer by layer in forward/backward"))
        opt_where = "NVMe" if s.offload_optimizer == "nvme" else "host"
        est.host.append(Row("DeepSpeed ZeRO-3 estimator, per node", cpu / GIB, "always",
                            "states", f"zero_init=1 (transformers loads under zero.Init); "
                            f"zero_init=0 would need {cpu_cold / GIB:.1f}; optimizer on "
                            f"{opt_where}"))
        if frozen and offload_par:
            est.host.append(Row("frozen parameters (offload_param)", w * frozen / s.nodes / GIB,
                                "always", "states", f"{w} B x {billions(frozen)} / {s.nodes} "
                                "node(s), 16-bit weights"))
        return
    gpus = 1 if s.zero == 0 else node  # stage 0 partitions nothing: the one-GPU figure
    nodes = 1 if s.zero == 0 else s.nodes
    offload = s.offload_optimizer != "none"
    cpu, gpu = estimate_zero2_model_states_mem_needs(
        total_params=trained, num_gpus_per_node=gpus, num_nodes=nodes, cpu_offload=offload)
    formula = "2 B x trained (optimizer on the host)" if offload else \
        f"2 B x trained + 18 B x trained / {gpus * nodes} GPUs"
    stage0 = ", stage 0" if s.zero == 0 else ""
    est.rows.append(Row(
        f"model states, trained parameters (DeepSpeed ZeRO-2 estimator{stage0})",
        gpu / GIB, "always", "states",
        f"estimate_zero2_model_states_mem_needs(total_params={billions(trained)}, {gpus} GPUs x "
        f"{nodes} node(s), cpu_offload={offload}): {formula}"))
    if s.zero == 1:
        est.rows.append(Row(
            "ZeRO-1: gradients not partitioned (the estimator is ZeRO-2's)", 2 * trained / GIB,
            "always", "states", f"+2 B x {billions(trained)} trained: 16-bit gradients whole on "
            "every GPU"))
    _frozen_rows(s, est, w, 1)
    buckets = s.allgather_bucket + (s.reduce_bucket or shape.hidden ** 2)
    est.rows.append(Row("DeepSpeed communication buckets", buckets * 2 / GIB, "always",
                        "allowance", f"(allgather_bucket_size {s.allgather_bucket:.3g} + "
                        f"reduce_bucket_size {s.reduce_bucket or shape.hidden ** 2:.3g}) x 2 B"))
    label = "DeepSpeed ZeRO-2 estimator, per node" + (" (optimizer offload)" if offload else "")
    est.host.append(Row(label, cpu / GIB, "always", "states" if offload else "loading",
                        "offload_optimizer: the optimizer states and 32-bit weights" if offload
                        else "nothing offloaded: the estimator's room for loading 32-bit "
                        "weights in each process (train.py loads 16-bit ones)"))


def _ddp_rows(s: Settings, trained: int, frozen: int, est: Estimate) -> None:
    w = s.weight_bytes
    est.rows.append(Row(
        "model states, no DeepSpeed (DDP)", 5 * w * trained / GIB, "always", "states",
        f"{5 * w} B x {billions(trained)} trained: weights, gradients, DDP's gradient buckets and "
        f"torch AdamW's two moments, all in the weights' dtype ({w} B)"))
    _frozen_rows(s, est, w, 1)


def _reference_row(shape: ModelShape, s: Settings, est: Estimate) -> None:
    if s.peft is not None:
        est.notes.append("no reference model: PEFT (TRL takes the reference log-probs from the "
                         "policy with its adapter disabled)")
        return
    if s.beta == 0:
        est.notes.append("no reference model: beta 0 (TRL loads none)")
        return
    w = 2 if (s.zero is not None and s.mixed16) else s.weight_bytes
    full = w * shape.total
    if s.zero == 3:
        offloaded = s.offload_param != "none"
        est.rows.append(Row("reference model", 0.0 if offloaded else full / s.world / GIB,
                            "always", "reference",
                            f"{w} B x {billions(shape.total)} / {s.world} GPUs (TRL prepares it "
                            "with ZeRO-3" + (", parameters offloaded)" if offloaded else ")")))
        if offloaded:
            est.host.append(Row("reference model (offload_param)", full / s.nodes / GIB,
                                "always", "reference",
                                f"{w} B x {billions(shape.total)} / {s.nodes} node(s)"))
        return
    stage = "TRL prepares it with ZeRO stage 0: " if s.zero is not None else ""
    est.rows.append(Row("reference model", full / GIB, "always", "reference",
                        f"{stage}{w} B x {billions(shape.total)}, whole on every GPU "
                        f"(beta {s.beta:g}, no PEFT)"))


def estimate(shape: ModelShape, s: Settings) -> Estimate:
    """The rows of the plan (see the module docstring)."""
    trained_by_part, frozen_by_part = split_parameters(shape, s)
    trained, frozen = sum(trained_by_part.values()), sum(frozen_by_part.values())
    est = Estimate(rows=[], host=[], trained=trained_by_part, frozen=frozen_by_part)
    if s.zero is None:
        _ddp_rows(s, trained, frozen, est)
    else:
        _deepspeed_rows(shape, s, trained, frozen, est)
    _reference_row(shape, s, est)
    if s.use_vllm:
        vllm_row(shape, s, est)
    activation_rows(shape, s, est, audio_trains=trained_by_part.get(AUDIO, 0) > 0,
                     head_trains=s.peft is None)
    est.rows.append(Row("CUDA context + NCCL (allowance)", CONTEXT_GIB, "always", "allowance",
                        "per process, outside PyTorch's allocator"))
    return est
