"""The curation's must-show on the CPU demo: planted items dropped, listening items kept.

Builds the demo's data with planted text-answerable items (`local.demo.data`, task
`planted_text`: the question names its answer), the demo's tiny random model and its biased
warm-up (`local.demo.warmup`) with this check's own warm-up settings (below; the main demo's,
`local.demo.run.DemoSettings`, are untouched), then
  curate     `local.curate` with conf/demo.yaml's sampling (temperature 1.0), `--k` samples
             per item and pass, and `--rule`
  reference  a separate pass of `--reference_k 32` samples with the audio, another seed and
             the same temperature (`reference_pass`: the curation's sampler and resumable log,
             the audio pass only), which says which audio items the warmed-up model gets
             neither always right nor always wrong
and measures: the share of planted items the curation drops (target >= 95%) and the share of
audio items that the reference finds neither always right nor always wrong which it keeps
(target >= 90%), plus the same for every rule. Figures go to `<out>/check.json` and stdout.

The populations are defined by construction (planted vs audio tasks) and by the reference
pass, never by the curation being measured.

How the biased warm-up shapes the audio items (measured on seeds 0-2, k = 8 unless said):
  * `label_bias` b teaches the question's default option on a share b of the rows, so a model
    that learned the teacher answers an audio item whose answer is the default right ~always
    (audio and prior agree) and another item right ~1 - b of the time, and without the audio
    it falls back on a text prior. The audio contribution of an audio item is then at most
    ~(1 - b) / 2 on the two-option tasks, and the demo's b = 0.6 with its 300 steps at lr 1e-3
    barely teaches the audio at all: contributions centred near 0 (+-0.24 of k = 8 noise),
    so the default rule kept 38-42% of the reference-mid audio items and dropped 59-78% of
    the planted ones.
  * Lower b and a longer warm-up teach the audio (b = 0.3, 1200 steps at lr 2e-3: audio items
    ~0.75-0.88 right with the audio, ~0.41-0.49 without, contribution ~+0.33) and make the
    planted items always right (with-audio accuracy 1.0 on 64/64, every seed), so every
    spread rule drops them. What is left of the reference-mid audio items that a rule loses:
    the items whose answer is the default option, right ~97-99% of the time (one miss in 32
    reference samples makes them "mid"): k samples all come out right, so a spread rule
    drops them; their contribution is small (the prior answers them too), so an audio rule
    drops them as well.
  * Without the audio the tiny model is off its training distribution (the warm-up always
    has the audio): its no-audio answer is a per-task constant on some seeds, and on seed 1
    the planted items are answered by the audio path too (no-audio accuracy 0.23), so
    `strong_audio` (no-audio accuracy < threshold) drops 100% / 0% / 98% of the planted items
    on seeds 0 / 1 / 2: not a rule the demo can be measured on.
Chosen (the defaults below): b = 0.3, 1200 steps, lr 2e-3, k = 16, temperature 1.0, rule
`spread`. Measured: planted dropped 98.4 / 96.9 / 96.9%, reference-mid audio items kept
85.6 / 86.4 / 83.3% on seeds 0 / 1 / 2 (the 95% target is met, the 90% one is not; the
default rule `audio_and_spread` gives 100 / 96.9 / 100% and 69.8 / 86.4 / 69.3%). A lower
temperature sharpens the planted items but also the no-audio prior (T = 0.5, b = 0.15: 40%
of the mid audio items answered right without the audio every time, kept 13-58% by the
audio rules).

Example:
    $ python -m local.curate.demo_check --out .cache/curate-demo/final-s0 --seed 0
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.core.models import load_model_and_processor
from local.core.records import Record
from local.curate import cli
from local.curate.rules import DEFAULT_THRESHOLD, RULES, kept
from local.curate.sampling import HFSampler
from local.curate.scoring import score_pass
from local.curate.settings import config_defaults
from local.curate.table import TABLE_FILE, read_table
from local.data.avqa import read_avqa
from local.demo.data import PLANTED_TASK, write_demo_data
from local.demo.run import DemoSettings, tiny_settings
from local.demo.tiny import build_tiny_checkpoint
from local.demo.warmup import default_option, warmup
from local.eval.generation import GenerationSettings, Generator
from local.util.dist import DistContext
from local.util.fsio import atomic_write_json, building, is_done

REPO = Path(__file__).resolve().parents[2]
TARGETS = {"planted_dropped": 0.95, "audio_mid_kept": 0.90}
# This check's settings (the module docstring has the measurements behind them):
PLANTED = 0.25      # a quarter of the train items are planted (64 of 256)
LABEL_BIAS = 0.3    # the demo's 0.6 barely teaches the audio: contributions ~0, lost in noise
WARMUP_STEPS = 1200  # with lr 2e-3: planted items always right, audio items ~0.75-0.88 right
WARMUP_LR = 2e-3
K = 16              # k = 8 loses more of the items right ~97% of the time to zero spread
TEMPERATURE = 1.0   # the training temperature; a lower one sharpens the no-audio prior
RULE = "spread"     # the best over seeds 0-2; strong_audio hinges on the no-audio behaviour
THRESHOLD = 0.875   # strong_audio / weak_audio's, for the per-rule figures only


def share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def reference_pass(model: Path, data: Path, out: Path, k: int, seed: int,
                   temperature: float | None = None) -> dict[str, dict[str, Any]]:
    """{id: {"acc_audio"}} from `k` samples with the audio per item (the demo's sampling;
    `temperature`: the curation's, default the config's)."""
    defaults = config_defaults(REPO / "conf" / "demo.yaml")
    settings = GenerationSettings(max_new_tokens=defaults["max_new_tokens"],
                                  temperature=(defaults["temperature"] if temperature is None
                                               else temperature), top_k=defaults["top_k"],
                                  top_p=defaults["top_p"])
    records: list[Record] = list(read_avqa(data, "train"))

    def sampler() -> HFSampler:
        loaded = load_model_and_processor(str(model), dtype="float32")
        return HFSampler(Generator(loaded, settings), k, seed, "audio")

    logs = score_pass(sampler, records, out, DistContext(), reward="accuracy",
                      template=defaults["template"], batch_size=8,
                      settings={"model": str(model), "k": k, "seed": seed,
                                "generation": settings.as_dict()},
                      desc=f"reference [{k} samples, audio]")
    assert logs is not None
    return {ident: {"acc_audio": sum(e["correct"]) / k} for ident, e in logs.items()}


def measure(rows: list[dict[str, Any]], ref: dict[str, dict[str, Any]],
            default_answer: dict[str, bool] | None = None,
            threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Per rule: planted items dropped, reference-mid audio items kept (shares and counts);
    with `default_answer` (id -> the answer is the warm-up's default option) the kept share
    of reference-mid audio items of each kind as well."""
    planted = [r["category"] == PLANTED_TASK for r in rows]
    mid = [not p and 0.0 < ref[r["id"]]["acc_audio"] < 1.0 for r, p in zip(rows, planted,
                                                                            strict=True)]
    figures: dict[str, Any] = {
        "items": len(rows), "planted": sum(planted), "audio": len(rows) - sum(planted),
        "audio_mid_by_reference": sum(mid),
        "audio_always_right_by_reference": sum(not p and ref[r["id"]]["acc_audio"] == 1.0
                                               for r, p in zip(rows, planted, strict=True)),
        "audio_always_wrong_by_reference": sum(not p and ref[r["id"]]["acc_audio"] == 0.0
                                               for r, p in zip(rows, planted, strict=True)),
        "mean": {group: {key: _mean([r[key] for r, p in zip(rows, planted, strict=True)
                                     if p == (group == "planted")])
                         for key in ("acc_audio", "acc_no_audio", "audio_contribution")}
                 for group in ("planted", "audio")},
        "rules": {}}
    if default_answer is not None:
        figures["audio_mid_whose_answer_is_the_default"] = sum(
            m and default_answer[r["id"]] for r, m in zip(rows, mid, strict=True))
    for rule in RULES:
        keep = kept(rows, rule, threshold)
        figures["rules"][rule] = {
            "planted_dropped": share([not k for k, p in zip(keep, planted, strict=True) if p]),
            "audio_mid_kept": share([k for k, m in zip(keep, mid, strict=True) if m]),
            "kept": sum(keep)}
        if default_answer is not None:
            for kind, flag in (("default_answer", True), ("other_answer", False)):
                figures["rules"][rule][f"audio_mid_kept_{kind}"] = share(
                    [k for k, m, r in zip(keep, mid, rows, strict=True)
                     if m and default_answer[r["id"]] == flag])
    return figures


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def prepare(out: Path, seed: int, planted: float, *, label_bias: float,
            warmup_steps: int, warmup_lr: float) -> tuple[Path, Path]:
    """The planted data and the warmed-up model (the demo's random model and warm-up, with
    this check's label bias, steps and learning rate)."""
    demo = DemoSettings(out=out, seed=seed)
    data = write_demo_data(out / "data", demo.n_train, 64, seed, planted=planted)
    random_model = out / "models" / "random"
    built = tiny_settings(seed, demo.family)
    if not is_done(random_model, built):
        with building(random_model, built) as tmp:
            build_tiny_checkpoint(built["family"], tmp, vocab=built["vocab"], seed=seed,
                                  text_head_dim=built["text_head_dim"])
    # One folder per warm-up setting: curate's folder and the reference's are keyed by the
    # model's path, not its weights, so another warm-up must not reuse their samples.
    name = f"initial-bias{label_bias:g}-steps{warmup_steps}-lr{warmup_lr:g}"
    initial = warmup(random_model, data / "avqa", out / "models" / name,
                     steps=warmup_steps, learning_rate=warmup_lr,
                     label_noise=demo.label_noise, label_bias=label_bias, seed=seed)
    return data / "avqa", Path(initial)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    demo = DemoSettings()
    parser = argparse.ArgumentParser(description="Measure the curation on the planted demo.")
    add = parser.add_argument
    add("--out", type=Path, default=Path("exp/demo-curate"))
    add("--seed", type=int, default=0)
    add("--planted", type=float, default=PLANTED, help=f"share of planted train items "
        f"(default {PLANTED})")
    add("--label_bias", type=float, default=LABEL_BIAS,
        help=f"the warm-up's label bias (default {LABEL_BIAS}; the demo's: {demo.label_bias})")
    add("--warmup_steps", type=int, default=WARMUP_STEPS,
        help=f"default {WARMUP_STEPS} (the demo's: {demo.warmup_steps})")
    add("--warmup_lr", type=float, default=WARMUP_LR,
        help=f"default {WARMUP_LR} (the demo's: {demo.warmup_lr})")
    add("--k", type=int, default=K, help=f"curate's samples per item and pass (default {K})")
    add("--temperature", type=float, default=TEMPERATURE,
        help=f"curate's and the reference's (default {TEMPERATURE})")
    add("--rule", default=RULE, choices=sorted(RULES), help=f"the rule (default {RULE})")
    add("--threshold", type=float, default=THRESHOLD,
        help=f"the rule's threshold (default {THRESHOLD})")
    add("--reference_k", type=int, default=32)
    args = parser.parse_args(argv)
    data, model = prepare(args.out, args.seed, args.planted, label_bias=args.label_bias,
                          warmup_steps=args.warmup_steps, warmup_lr=args.warmup_lr)
    common = ["--model", str(model), "--train_data", str(data), "--out",
              str(args.out / "curate"), "--config", str(REPO / "conf" / "demo.yaml"),
              "--dtype", "float32", "--k", str(args.k), "--temperature", str(args.temperature),
              "--rule", args.rule, "--threshold", str(args.threshold)]
    folder = cli.run(common)
    assert folder is not None
    reference = args.out / "reference" / f"{model.name}-t{args.temperature:g}"
    ref = reference_pass(model, data, reference, args.reference_k, args.seed + 1000,
                         args.temperature)
    default_answer = {r.id: r.answer == default_option(r.choices)
                      for r in read_avqa(data, "train")}
    figures = measure(read_table(folder / TABLE_FILE)[0], ref, default_answer, args.threshold)
    chosen = figures["rules"][args.rule]
    figures.update({"curation": str(folder), "reference": str(reference),
                    "targets": TARGETS, "seed": args.seed, "planted_share": args.planted,
                    "settings": {key: getattr(args, key) for key in (
                        "label_bias", "warmup_steps", "warmup_lr", "k", "temperature", "rule",
                        "threshold", "reference_k")},
                    "met": {key: chosen[key] is not None and chosen[key] >= target
                            for key, target in TARGETS.items()}})
    atomic_write_json(args.out / "check.json", figures)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
