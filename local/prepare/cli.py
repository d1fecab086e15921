"""Stage prepare: datasets and the model from the hub (or local paths), then validation.

Writes only this layout (the readers of local/data/ read it directly):

| part | lands at | from |
|---|---|---|
| avqa | data/avqa/{train,val} | dataset gijs/avqa-processed (~55 GB; free disk checked first) |
| mmsu | data/mmsu | dataset yuantuo666/MMSU-full_5k_hf_format.v0 |
| mmau | data/mmau/test-mini-audios | dataset gamma-lab-umd/MMAU-test-mini: its test_mini.parquet,
  each clip written as the file the question file names for its id (see local.prepare.mmau) |
| mmau | data/mmau/mmau-test-mini.json | the MMAU project's GitHub file (sha256 recorded) |
| mmau_test | data/mmau/mmau-test.json, data/mmau/test-audios | the full MMAU test (answers
  withheld; not in the default --sources): the GitHub file, and the hub's
  gamma-lab-umd/MMAU-test `test-audios.tar.gz` alone, extracted |
| mmar | data/mmar/MMAR-meta.jsonl, data/mmar/audio | dataset BoJack/MMAR (CC BY-NC 4.0; not in
  the default --sources): its MMAR-meta.json and mmar-audio.tar.gz alone, the archive extracted
  (see local.prepare.mmar); or a local folder, --mmar_dir |
| model | models/<name> | the --model repo (Qwen2.5-Omni-7B/3B, Qwen2-Audio-7B-Instruct) |

Hub downloads go to the Hugging Face cache (HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE
apply; a re-run keeps finished files, a file cut off midway starts over) and data/ + models/
hold symlinks into it: nothing is stored twice; later stages load the model from models/<name>,
so a --cache_dir given here need not be given again. A
local path (--avqa, --mmsu, --mmau_audio, --model: symlinked; --mmau_json: copied) replaces a
download. Each part writes its `.done` marker last and is skipped on re-runs (--overwrite
redoes it; a changed source or revision pin redoes it too). Missing sources are reported one
line each, and the exit status is non-zero; validation (local.prepare.validate) runs at the end on
every part that did arrive, even when another failed.

Example:
    python -m local.prepare --data_dir data --model_dir models --model Qwen/Qwen2.5-Omni-7B
    python -m local.prepare --sources mmau --mmau_audio ~/dl/test-mini-audios.tar.gz \\
        --revision mmsu=0123abc model=main
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from local.data import mmar as mmar_data
from local.data.mmau import SPLITS
from local.prepare import validate as validation
from local.prepare.hub import (
    Source,
    SourceError,
    already_prepared,
    hub_snapshot,
    link_tree,
    local_path,
)
from local.prepare.mmar import prepare_mmar
from local.prepare.mmau import MMAU_JSON_URL, MMAU_TEST_JSON_URL, prepare_mmau
from local.util.fsio import DONE, mark_done, read_done

logger = logging.getLogger("prepare")
SOURCES = {
    "avqa": Source("avqa", "gijs/avqa-processed", "dataset", "--avqa", 54.8),
    "mmsu": Source("mmsu", "yuantuo666/MMSU-full_5k_hf_format.v0", "dataset", "--mmsu", 2.0),
    "mmau": Source("mmau", "gamma-lab-umd/MMAU-test-mini", "dataset", "--mmau_audio", 1.5,
                   label="mmau audio"),
    # 9,000 clips against test-mini's 1,000 at 1.5 GB: about 13.5 GB (an estimate, not measured)
    "mmau_test": Source("mmau_test", SPLITS["test"].hub_id, "dataset", "--mmau_test_audio", 13.5,
                        label="mmau_test audio", allow_patterns=("test-audios.tar.gz",)),
    "mmar": Source("mmar", mmar_data.HUB_ID, mmar_data.HUB_REPO_TYPE, "--mmar_dir",
                   mmar_data.ARCHIVE_GB, label="MMAR",
                   allow_patterns=(mmar_data.HUB_QUESTION_FILE, mmar_data.AUDIO_ARCHIVE)),
}
PARTS = ("model", "avqa", "mmsu", "mmau", "mmau_test", "mmar")  # in the order they are prepared
# Download sizes in GB (bf16 safetensors). Qwen3-Omni-30B-A3B: 35.3B parameters (the hub's
# safetensors total for -Instruct, thinker + talker + code2wav) x 2 bytes, an estimate; -Thinking
# ships no talker, so the same figure is an upper bound for it.
MODEL_GB = {"Qwen/Qwen2.5-Omni-7B": 22.4, "Qwen/Qwen2.5-Omni-3B": 11.2,
            "Qwen/Qwen2-Audio-7B-Instruct": 16.8, "Qwen/Qwen3-Omni-30B-A3B-Instruct": 70.6,
            "Qwen/Qwen3-Omni-30B-A3B-Thinking": 70.6}


@dataclass
class Context:
    """Parsed options and what the run found so far."""

    args: argparse.Namespace
    pins: dict[str, str]
    errors: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # parts that could not be prepared
    family: str | None = None

    def source(self, key: str) -> Source:
        return replace(SOURCES[key], revision=self.pins.get(key))


def prepare_linked(ctx: Context, key: str, need: tuple[str, ...]) -> None:
    """avqa / mmsu: link the snapshot (or local folder) at data/<key>; one of `need` must match."""
    src, local = ctx.source(key), getattr(ctx.args, key)
    dest = Path(ctx.args.data_dir) / key
    wanted = {"source": str(Path(local).resolve()) if local else src.repo_id,
              "revision": src.revision}
    if already_prepared(dest, wanted, ctx.args.overwrite):
        return
    folder = local_path(local, src.option, key) if local else hub_snapshot(src, ctx.args.cache_dir)
    if not any(any(folder.glob(pattern)) for pattern in need):
        raise SourceError(f"{key}: {folder} has no {' or '.join(need)}; expected the "
                          f"{src.repo_id} layout. "
                          f"Pass the right folder with {src.option} PATH.")
    count = link_tree(folder, dest)
    how = f"{count} files symlinked from {folder} (nothing copied)"
    mark_done(dest, {**wanted, "commit": folder.name if not local else None, "how": how})
    logger.info("%s: %s -> %s", key, how, dest)


def prepare_model(ctx: Context) -> None:
    """models/<name>: the checkpoint linked from the HF cache (or a local folder); family read."""
    model, pin = ctx.args.model, ctx.pins.get("model")
    local = Path(model).expanduser()
    is_local = local.is_dir()
    dest = Path(ctx.args.model_dir) / (local.name if is_local else model.split("/")[-1])
    wanted = {"source": str(local.resolve()) if is_local else model, "revision": pin}
    if not already_prepared(dest, wanted, ctx.args.overwrite):
        if is_local:
            folder = local
        elif model not in MODEL_GB:  # == local.core.models.SUPPORTED_MODELS (a test checks)
            raise SourceError(f"model: {model!r} is neither a local folder nor one of "
                              f"{', '.join(MODEL_GB)}; fix --model.")
        else:
            src = Source("model", model, "model", "--model", MODEL_GB[model], pin)
            folder = hub_snapshot(src, ctx.args.cache_dir)
        if folder.resolve() != dest.resolve():
            link_tree(folder, dest)
        ctx.family = _family(dest)
        mark_done(dest, {**wanted, "family": ctx.family, "how": f"symlinked from {folder}"})
        logger.info("model: %s (%s) -> %s", model, ctx.family, dest)
    else:
        ctx.family = (read_done(dest) or {}).get("family")


def _family(folder: Path) -> str:
    # Deferred: local.core.models loads torch and transformers, which only the model part needs.
    from local.core.models import ModelLoadError, family_of, load_config

    try:
        return family_of(load_config(str(folder))).name
    except ModelLoadError as err:
        raise SourceError(f"model: {folder} is not a usable checkpoint ({err}); pass a Qwen2-Audio "
                          "or Qwen2.5-Omni folder with --model PATH.") from None


def validate(ctx: Context) -> bool:
    """Run local.prepare.validate on what is prepared; True when every dataset is usable."""
    data = Path(ctx.args.data_dir)
    mmau = data / "mmau"
    where = {"avqa": data / "avqa", "mmsu": data / "mmsu",
             "mmau": mmau / SPLITS["test-mini"].question_file,
             "mmau_test": mmau / SPLITS["test"].question_file,
             "mmar": data / "mmar" / mmar_data.QUESTION_FILE}
    chosen = {k: path.exists() and k in ctx.args.sources and k not in ctx.failed
              for k, path in where.items()}
    if not any(chosen.values()):
        return True
    report = data / "validation.md"
    if _validated(report, [k for k, v in chosen.items() if v], ctx):
        logger.info("validation: %s is newer than every prepared part; skipping it", report)
        return True
    given = {k: where[k] if chosen[k] else None for k in where}
    checks = validation.run(
        given["avqa"], given["mmsu"], given["mmau"],
        mmau / SPLITS["test-mini"].audio_dir if chosen["mmau"] else None,
        mmau_test_json=given["mmau_test"], mmar_json=given["mmar"],
        report=report, model_family=ctx.family,
        avqa_max_items=ctx.args.avqa_max_items or None, num_workers=ctx.args.num_workers)
    for check in checks:
        (logger.info if check.usable else logger.error)("validate: %s", check.one_line())
        if not check.usable:
            ctx.errors.append(f"UNUSABLE {check.verdict}")
    logger.info("validation report: %s", data / "validation.md")
    return all(c.usable for c in checks)


def _validated(report: Path, keys: list[str], ctx: Context) -> bool:
    """True when a passing report newer than the parts' .done markers covers these parts."""
    summary = report.with_suffix(".json")
    if ctx.args.overwrite or not summary.is_file():
        return False
    try:
        data = json.loads(summary.read_text())
        covered = {d["name"].split("/")[0].split("-")[0] for d in data["datasets"]}
    except (ValueError, KeyError, TypeError):
        return False
    markers = [Path(ctx.args.data_dir) / k / DONE for k in keys]
    newest = max((m.stat().st_mtime for m in markers if m.is_file()), default=float("inf"))
    return (data.get("usable") is True and set(keys) <= covered
            and data.get("model_family") == ctx.family
            and newest <= summary.stat().st_mtime)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="data")
    p.add_argument("--model_dir", default="models")
    p.add_argument("--model", default="Qwen/Qwen2.5-Omni-7B", help="hub id or local folder")
    p.add_argument("--sources", nargs="+", default=["avqa", "mmsu", "mmau", "model"],
                   choices=[*PARTS], help="what to prepare (mmau_test: the full MMAU test, "
                   "9,000 questions, answers withheld; mmar: MMAR, CC BY-NC 4.0; neither in "
                   "the default)")
    p.add_argument("--overwrite", action="store_true", help="redo finished parts")
    p.add_argument("--revision", nargs="*", default=[], metavar="KEY=REV",
                   help="revision pins, e.g. avqa=<commit> model=main (keys: the --sources)")
    p.add_argument("--cache_dir", help="Hugging Face cache (default: HF_HUB_CACHE / HF_HOME)")
    p.add_argument("--avqa", help="local AVQA save_to_disk folder (symlinked, not copied)")
    p.add_argument("--mmsu", help="local MMSU snapshot folder (symlinked)")
    p.add_argument("--mmau_audio", help="local MMAU audio: archive (extracted) or folder (linked)")
    p.add_argument("--mmau_json", help="local mmau-test-mini.json (copied)")
    p.add_argument("--mmau_url", default=MMAU_JSON_URL, help="where the question file comes from")
    p.add_argument("--mmau_test_audio", help="local full-test audio: test-audios.tar.gz or folder")
    p.add_argument("--mmau_test_json", help="local mmau-test.json (copied)")
    p.add_argument("--mmau_test_url", default=MMAU_TEST_JSON_URL,
                   help="where the full test's question file comes from")
    p.add_argument("--mmar_dir", help="local MMAR: a folder holding MMAR-meta.jsonl (or "
                   "MMAR-meta.json) and audio/ (linked) or mmar-audio.tar.gz (extracted)")
    p.add_argument("--no_validate", action="store_true", help="skip the validation pass")
    p.add_argument("--avqa_max_items", type=int, default=2000,
                   help="AVQA rows validated per split (0: all; decoding all 55 GB takes long)")
    p.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    args = p.parse_args(argv)
    args.pins = {}
    for pin in args.revision:
        key, _, rev = pin.partition("=")
        if key not in PARTS or not rev:
            p.error(f"--revision {pin!r}: use KEY=REV with KEY one of {', '.join(PARTS)}")
        args.pins[key] = rev
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns 0 when everything asked for is prepared and usable."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [prepare] %(message)s")
    ctx = Context(args, args.pins)
    steps = {"avqa": lambda: prepare_linked(ctx, "avqa", ("train/",)),
             "mmsu": lambda: prepare_linked(ctx, "mmsu", ("**/*.parquet", "dataset_dict.json",
                                                          "state.json")),
             "mmau": lambda: prepare_mmau(args, ctx.source("mmau"), ctx.errors),
             "mmau_test": lambda: prepare_mmau(args, ctx.source("mmau_test"), ctx.errors,
                                               SPLITS["test"]),
             "mmar": lambda: prepare_mmar(args, ctx.source("mmar"), ctx.errors),
             "model": lambda: prepare_model(ctx)}
    for key in PARTS:  # model first: its family guides validation
        if key in args.sources:
            before = len(ctx.errors)
            try:
                steps[key]()
            except SourceError as err:
                ctx.errors.append(str(err))
            if len(ctx.errors) > before:
                ctx.failed.add(key)
    if not args.no_validate:  # what did arrive is validated even when another part failed
        validate(ctx)
    for line in ctx.errors:
        logger.error("ERROR %s", line)
    if ctx.errors:
        logger.error("prepare: %d problem(s) above; finished parts are kept, re-run to "
                     "continue", len(ctx.errors))
    return 1 if ctx.errors else 0


if __name__ == "__main__":
    sys.exit(main())
