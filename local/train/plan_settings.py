"""The memory planner's settings, rows and totals (GiB per GPU), shared by its modules.

`Settings` is what a plan depends on (local.train.plan fills it from train.py's parsed options and
the DeepSpeed file); `Row` one item of the plan, held `always`, during the `update` or during the
`rollout`; `Estimate` the rows with the peak, always + max(update, rollout). GiB are 2^30 bytes,
what DeepSpeed's estimators print as "GB".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from local.train.plan_model import ModelShape

GIB = 2 ** 30
CONTEXT_GIB = 1.5  # CUDA context + NCCL, per process
VLLM_ALLOWANCE_GIB = 2.0  # vLLM's profiling activations, CUDA graphs, sampler
PROMPT_TEXT_TOKENS = 128  # system prompt, question, choices and chat markup (assumed)
AUDIO_TOKENS_PER_SECOND = 25  # both families: 750 tokens per 30 s
ENCODER_FRAMES_PER_SECOND = 50
LM_HEAD_TILE = (4096, 32768)  # TRL 1.16 fused LM head: tokens x vocabulary columns, float32


@dataclass(frozen=True)
class Settings:
    """What the plan depends on, as train.py would run (see local.train.plan for the sources)."""

    gpus_per_node: int
    nodes: int
    card_gib: float
    zero: int | None = 1  # None: no DeepSpeed (plain DDP)
    deepspeed: str = "conf/ds_zero1.json"
    offload_optimizer: str = "none"  # none | cpu | nvme
    offload_param: str = "none"
    allgather_bucket: float = 5e8
    reduce_bucket: float | None = None  # None: "auto" (hidden^2)
    max_live_parameters: float = 1e9
    mixed16: bool = True  # bf16 or fp16 on
    weight_bytes: int = 2  # the dtype the policy is loaded in
    beta: float = 0.04
    peft: Any = None  # a PEFT LoraConfig, or None
    freeze_audio: bool = False
    freeze_vision: bool = True
    use_vllm: bool = False
    vllm_share: float = 0.3
    vllm_sleep: bool = False
    vllm_max_len: int | None = None
    batch: int = 4
    grad_accum: int = 2
    steps_per_generation: int = 2
    completion: int = 1024
    audio_seconds: float = 30.0
    gradient_checkpointing: bool = True
    ds3_gather: bool = True

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes


@dataclass(frozen=True)
class Row:
    label: str
    gib: float
    when: str  # always | update | rollout
    kind: str  # states | reference | vllm | activations | allowance
    how: str


@dataclass
class Estimate:
    rows: list[Row]
    host: list[Row]  # GiB per node
    trained: dict[str, int]  # part -> trained parameters
    frozen: dict[str, int]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # failures whatever the total
    vllm: dict[str, Any] = field(default_factory=dict)

    def phase(self, when: str) -> float:
        return sum(row.gib for row in self.rows if row.when == when)

    @property
    def peak(self) -> float:
        return self.phase("always") + max(self.phase("update"), self.phase("rollout"))

    def of_kinds(self, *kinds: str) -> float:
        return sum(row.gib for row in self.rows if row.kind in kinds)

    @property
    def host_gib(self) -> float:
        """Host RAM per node for what is offloaded (not DeepSpeed's room for loading)."""
        return sum(row.gib for row in self.host if row.kind != "loading")


def billions(count: float) -> str:
    return f"{count / 1e9:.2f}B"


def tokens(shape: ModelShape, s: Settings) -> tuple[int, int]:
    """(prompt, prompt + completion) tokens of one row."""
    seconds = min(s.audio_seconds, shape.max_audio_seconds)
    prompt = int(AUDIO_TOKENS_PER_SECOND * seconds) + PROMPT_TEXT_TOKENS
    return prompt, prompt + s.completion
