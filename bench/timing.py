"""Per-phase timers for a GRPO step, a peak-memory sampler, and table printing.

`PhaseTimer.instrument(trainer)` wraps the trainer's own methods (no TRL change): collation
(`_decode_rows`, `local.train.trainer.encode_batch`), rollout (`model.generate`), log-prob passes by
model (reference, old policy, policy forward), rewards (`_calculate_rewards`), backward
(`accelerator.backward`), optimizer (`on_pre_optimizer_step` -> `on_optimizer_step`), and the
audio encoder (forward hooks on each audio tower; its time is *inside* rollout and log-probs).

Example:
    >>> timer = PhaseTimer()                                          # doctest: +SKIP
    >>> timer.instrument(trainer); trainer.train()                    # doctest: +SKIP
    >>> timer.steps[-1]["rollout"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

import local.train.trainer as trainer_module
from local.train.audio_cache import find_audio_tower

PHASES = ("collation", "rollout", "ref_logps", "old_logps", "policy_logps", "backward",
          "optimizer", "rewards", "other", "step", "audio_encoder")


class PhaseTimer(TrainerCallback):
    """Accumulates wall time per phase; one dict per optimizer step in `steps`."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self._marks: dict[str, float] = {}
        self._undo: list[Any] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.current[name] += time.perf_counter() - start

    def wrap(self, owner: Any, attr: str, name: str | Any) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            label = name(*args, **kwargs) if callable(name) else name
            with self.phase(label):
                return original(*args, **kwargs)

        own = attr in vars(owner)
        self._undo.append(lambda: setattr(owner, attr, original) if own else delattr(owner, attr))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        """Undo every wrap and hook (the module-level `encode_batch` above all)."""
        while self._undo:
            self._undo.pop()()

    def instrument(self, trainer: Any) -> None:
        self.wrap(trainer, "_decode_rows", "collation")
        self.wrap(trainer_module, "encode_batch", "collation")
        self.wrap(trainer.model, "generate", "rollout")
        self.wrap(trainer.accelerator, "backward", "backward")
        self.wrap(trainer, "_calculate_rewards", "rewards")

        def logp_label(model: Any, *args: Any, **kwargs: Any) -> str:
            if trainer.ref_model is not None and model is trainer.ref_model:
                return "ref_logps"
            return "policy_logps" if torch.is_grad_enabled() else "old_logps"

        self.wrap(trainer, "_get_per_token_logps_and_entropies", logp_label)
        original_score = trainer._generate_and_score_completions

        def count_tokens(inputs: Any) -> Any:
            out = original_score(inputs)
            self.counts["completion_tokens"] += float(out["completion_mask"].sum())
            self.counts["prompt_tokens"] += float(out["prompt_mask"].sum())
            return out

        trainer._generate_and_score_completions = count_tokens
        self._undo.append(lambda: delattr(trainer, "_generate_and_score_completions"))
        models = [trainer.model] + ([trainer.ref_model] if trainer.ref_model is not None else [])
        for model in models:
            tower = find_audio_tower(model)
            hooks = (tower.register_forward_pre_hook(lambda *_: self._mark("audio_encoder")),
                     tower.register_forward_hook(lambda *_: self._lap("audio_encoder")))
            self._undo.extend(hook.remove for hook in hooks)
        trainer.add_callback(self)

    def _mark(self, name: str) -> None:
        self._marks[name] = time.perf_counter()

    def _lap(self, name: str) -> None:
        self.current[name] += time.perf_counter() - self._marks.pop(name)

    # TrainerCallback: step boundaries and the optimizer
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._mark("step")

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._mark("optimizer")

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._lap("optimizer")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._lap("step")
        inside = ("collation", "rollout", "ref_logps", "old_logps", "policy_logps", "backward",
                  "optimizer", "rewards")
        self.current["other"] = self.current["step"] - sum(self.current[k] for k in inside)
        for key, value in self.counts.items():
            self.current[key] = value
        self.steps.append(dict(self.current))
        self.current.clear()
        self.counts.clear()


def medians(steps: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = {k for step in steps for k in step}
    return {k: statistics.median(step.get(k, 0.0) for step in steps) for k in keys}


class PeakMemory:
    """Peak resident memory (CPU, sampled every 5 ms) or peak CUDA allocation over a block."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.base_mb = 0.0

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    @contextlib.contextmanager
    def track(self) -> Iterator[PeakMemory]:
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back: a fair baseline
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.base_mb = self.peak_mb = self.rss_mb()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.005):
                self.peak_mb = max(self.peak_mb, self.rss_mb())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            if torch.cuda.is_available():
                self.peak_mb = torch.cuda.max_memory_allocated() / 2**20

    @property
    def label(self) -> str:
        return "peak CUDA alloc" if torch.cuda.is_available() else "peak RSS"


def table(title: str, columns: dict[str, dict[str, float]], rows: Sequence[str],
          ratio: tuple[str, str] | None = None) -> str:
    """A markdown table: one row per phase, one column per configuration (+ a ratio column)."""
    names = list(columns)
    head = ["phase", *names] + ([f"{ratio[0]}/{ratio[1]}"] if ratio else [])
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for row in rows:
        cells = [row] + [f"{columns[n].get(row, 0.0):.3f}" for n in names]
        if ratio:
            a, b = columns[ratio[0]].get(row, 0.0), columns[ratio[1]].get(row, 0.0)
            cells.append(f"{a / b:.2f}x" if b > 1e-9 else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
