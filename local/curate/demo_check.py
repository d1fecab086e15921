"""The curation's must-show on the CPU demo: planted items dropped, listening items kept.

Builds the demo's data with planted text-answerable items (`local.demo.data`, task
`planted_text`: the question names its answer), the demo's tiny random model and its biased
warm-up (`local.demo.warmup`, the demo's own settings: `local.demo.run.DemoSettings`), then
  curate     `local.curate` with the demo's training settings (conf/demo.yaml: k = G = 8,
             temperature 1.0) and the default rule
  reference  a separate pass of `--reference_k 32` samples with the audio and another seed
             (`reference_pass`: the curation's sampler and resumable log, the audio pass
             only), which says which audio items the warmed-up model gets neither always
             right nor always wrong
and measures: the share of planted items the curation drops (target >= 95%) and the share of
audio items that the reference finds neither always right nor always wrong which it keeps
(target >= 90%), plus the same for every rule. Figures go to `<out>/check.json` and stdout.

The populations are defined by construction (planted vs audio tasks) and by the reference
pass, never by the curation being measured.

Example:
    $ python -m local.curate.demo_check --out exp/demo-curate --seed 0
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
from local.curate.rules import RULES, kept
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


def share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def reference_pass(model: Path, data: Path, out: Path, k: int, seed: int
                   ) -> dict[str, dict[str, Any]]:
    """{id: {"acc_audio"}} from `k` samples with the audio per item (the demo's sampling)."""
    defaults = config_defaults(REPO / "conf" / "demo.yaml")
    settings = GenerationSettings(max_new_tokens=defaults["max_new_tokens"],
                                  temperature=defaults["temperature"], top_k=defaults["top_k"],
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
            default_answer: dict[str, bool] | None = None) -> dict[str, Any]:
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
        keep = kept(rows, rule)
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


def prepare(out: Path, seed: int, planted: float) -> tuple[Path, Path]:
    """The planted data and the warmed-up model (the demo's random model and warm-up)."""
    demo = DemoSettings(out=out, seed=seed)
    data = write_demo_data(out / "data", demo.n_train, 64, seed, planted=planted)
    random_model = out / "models" / "random"
    built = tiny_settings(seed, demo.family)
    if not is_done(random_model, built):
        with building(random_model, built) as tmp:
            build_tiny_checkpoint(built["family"], tmp, vocab=built["vocab"], seed=seed,
                                  text_head_dim=built["text_head_dim"])
    initial = warmup(random_model, data / "avqa", out / "models" / "initial",
                     steps=demo.warmup_steps, learning_rate=demo.warmup_lr,
                     label_noise=demo.label_noise, label_bias=demo.label_bias, seed=seed)
    return data / "avqa", Path(initial)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Measure the curation on the planted demo.")
    parser.add_argument("--out", type=Path, default=Path("exp/demo-curate"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planted", type=float, default=0.25,
                        help="share of planted train items (default 0.25)")
    parser.add_argument("--reference_k", type=int, default=32)
    args = parser.parse_args(argv)
    data, model = prepare(args.out, args.seed, args.planted)
    common = ["--model", str(model), "--train_data", str(data), "--out",
              str(args.out / "curate"), "--config", str(REPO / "conf" / "demo.yaml"),
              "--dtype", "float32"]
    folder = cli.run(common)
    assert folder is not None
    reference = args.out / "reference"
    ref = reference_pass(model, data, reference, args.reference_k, args.seed + 1000)
    default_answer = {r.id: r.answer == default_option(r.choices)
                      for r in read_avqa(data, "train")}
    figures = measure(read_table(folder / TABLE_FILE)[0], ref, default_answer)
    default = figures["rules"]["audio_and_spread"]
    figures.update({"curation": str(folder), "reference": str(reference),
                    "targets": TARGETS, "seed": args.seed, "planted_share": args.planted,
                    "met": {key: default[key] is not None and default[key] >= target
                            for key, target in TARGETS.items()}})
    atomic_write_json(args.out / "check.json", figures)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
