"""Curation (`local.curate`): rules, table and selection on hand-made results; seeds; the
planted demo task; and curate end to end on the tiny Omni model: audio provably reaches the
model in the audio pass and never in the no-audio pass, and an interrupted run, re-run, gives
the table of an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from local.core.records import Record
from local.curate import cli
from local.curate.rules import RULES, counts, selection
from local.curate.sampling import SeededVLLMGenerator, copies, sample_seed
from local.curate.settings import (
    CurateSettings,
    config_defaults,
    curate_dir,
    in_hub_cache,
    model_name,
)
from local.curate.table import category_of, read_table, table_rows, write_table
from local.demo.data import PLANTED_TASK, make_items, make_train_items, planted_positions
from local.eval.generation import GenerationSettings, Generator
from tests.helpers import REPO


def row(ident: str, acc_audio: float, acc_no_audio: float, category: str = "c") -> dict:
    return {"id": ident, "category": category, "acc_audio": acc_audio,
            "acc_no_audio": acc_no_audio, "audio_contribution": acc_audio - acc_no_audio}


# Hand-made results: (id, with audio, without)
ROWS = [row("needs_audio", 0.5, 0.0), row("text_answerable", 1.0, 1.0),
        row("always_wrong", 0.0, 0.0), row("always_right_audio", 1.0, 0.25),
        row("audio_hurts", 0.25, 0.75), row("weakly_needs", 0.75, 0.5, "d")]


@pytest.mark.parametrize(("rule", "ids"), [
    ("audio_and_spread", ["needs_audio", "weakly_needs"]),
    ("spread", ["needs_audio", "audio_hurts", "weakly_needs"]),
    ("audio", ["needs_audio", "always_right_audio", "weakly_needs"]),
    ("strong_audio", ["needs_audio", "always_wrong", "always_right_audio"]),
    ("strong_audio_and_spread", ["needs_audio"]),
    ("weak_audio", ["text_answerable", "audio_hurts", "weakly_needs"]),
    ("all", [r["id"] for r in ROWS]),
])
def test_rules_keep(rule: str, ids: list[str]) -> None:
    assert selection(ROWS, rule)["ids"] == ids


def test_every_rule_is_tested_and_selection_counts_every_rule() -> None:
    sel = selection(ROWS)
    assert sel["rule"] == "audio_and_spread" and sel["kept"] == 2 and sel["items"] == 6
    assert set(sel["counts"]) == set(RULES)
    assert counts(ROWS, "audio_and_spread") == {
        "kept": 2, "dropped": 4,
        "by_category": {"c": {"kept": 1, "dropped": 4}, "d": {"kept": 1, "dropped": 0}}}
    assert selection(ROWS, "strong_audio", threshold=0.8)["ids"] == [
        "needs_audio", "always_wrong", "always_right_audio", "audio_hurts", "weakly_needs"]


@pytest.mark.parametrize(("rule", "threshold", "message"), [
    ("nope", 0.5, "unknown rule 'nope'"), ("strong_audio", 1.5, "threshold=1.5")])
def test_bad_selection_is_one_clear_error(rule: str, threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        selection(ROWS, rule, threshold)


def record(ident: str, **meta: Any) -> Record:
    return Record(id=ident, audio=b"x", question="How many beeps?", choices=["1", "2"],
                  answer="2", meta=meta)


def entry(correct: list[int]) -> dict:
    return {"correct": correct, "responses": [f"<answer>{c}</answer>" for c in correct],
            "errors": [None] * len(correct)}


def test_table_rows_from_the_logs() -> None:
    records = [record("a", task="count"), record("b")]
    audio = {"a": entry([1, 0, 1, 1]), "b": entry([1, 1, 1, 1])}
    no_audio = {"a": entry([0, 0, 1, 0]), "b": entry([1, 1, 1, 1])}
    rows = table_rows(records, audio, no_audio, k=4)
    got = [(r["id"], r["category"], r["acc_audio"], r["acc_no_audio"], r["audio_contribution"],
            r["zero_spread"]) for r in rows]
    assert got == [("a", "count", 0.75, 0.25, 0.5, False), ("b", "how", 1.0, 1.0, 0.0, True)]


@pytest.mark.parametrize(("audio", "no_audio", "message"), [
    ({}, {"a": entry([1, 0])}, "item 'a' has no audio samples"),
    ({"a": entry([1, 0])}, {"a": entry([1])}, "item 'a': 1 no_audio samples logged, k=2"),
])
def test_table_rows_name_the_item_a_pass_lacks(audio: dict, no_audio: dict,
                                               message: str) -> None:
    with pytest.raises(ValueError, match=message):
        table_rows([record("a")], audio, no_audio, k=2)


def test_table_round_trip_is_atomic_and_keeps_its_metadata(tmp_path: Path) -> None:
    rows = table_rows([record("a")], {"a": entry([1, 0])}, {"a": entry([0, 0])}, k=2)
    meta = {"model": "m", "settings": {"k": 2}, "commit": "abc"}
    path = write_table(rows, tmp_path / "table.parquet", meta)
    back, back_meta = read_table(path)
    assert back_meta == meta and back[0]["id"] == "a" and back[0]["correct_audio"] == [1, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


@pytest.mark.parametrize(("meta", "question", "category"), [
    ({"category": "Sound", "task": "sound"}, "What?", "Sound"),
    ({"task": PLANTED_TASK}, "What?", PLANTED_TASK),
    ({}, "Where is the sound coming from?", "where"),
    ({}, "The man is doing what?", "other"),
])
def test_category(meta: dict, question: str, category: str) -> None:
    rec = Record(id="x", audio=None, question=question, choices=["a", "b"], answer="a",
                 meta=meta)
    assert category_of(rec) == category


def test_seeds_are_per_item_pass_and_sample() -> None:
    seeds = {sample_seed(0, i, p, j) for i in ("a", "b") for p in ("audio", "no_audio")
             for j in range(4)}
    assert len(seeds) == 16 and sample_seed(0, "a", "audio", 1) == sample_seed(0, "a", "audio", 1)
    assert sample_seed(1, "a", "audio", 1) != sample_seed(0, "a", "audio", 1)
    assert [c.id for c in copies(record("q"), 3)] == ["q#0", "q#1", "q#2"]


@pytest.mark.parametrize(("config", "k", "temperature", "top_k", "max_new_tokens"), [
    (None, 4, 0.7, 50, 1024), (REPO / "conf" / "demo.yaml", 8, 1.0, 0, 12)])
def test_defaults_are_the_training_configs(config, k, temperature, top_k,
                                           max_new_tokens) -> None:
    got = config_defaults(config)
    assert (got["k"], got["temperature"], got["top_k"], got["max_new_tokens"]) == (
        k, temperature, top_k, max_new_tokens)


def test_settings_name_their_folder(tmp_path: Path) -> None:
    base = CurateSettings(model="Qwen/Qwen2.5-Omni-7B", train_data="data/avqa")
    other = CurateSettings(model="Qwen/Qwen2.5-Omni-7B", train_data="data/avqa", k=8)
    assert base.digest() != other.digest() and base.digest() == CurateSettings(
        model="Qwen/Qwen2.5-Omni-7B", train_data="data/avqa").digest()
    assert curate_dir(tmp_path, base) == tmp_path / "Qwen--Qwen2.5-Omni-7B" / base.digest()
    assert model_name("exp/demo/checkpoint-25") == "demo-checkpoint-25"
    with pytest.raises(ValueError, match="greedy"):
        CurateSettings(model="m", train_data="d", generation=GenerationSettings())
    with pytest.raises(ValueError, match="k=1"):
        CurateSettings(model="m", train_data="d", k=1)
    hub = tmp_path / "hub" / "datasets--x--avqa" / "snapshots" / "abc"
    hub.mkdir(parents=True)
    (tmp_path / "data").symlink_to(hub)
    assert in_hub_cache(tmp_path / "data" / "curate") and not in_hub_cache(tmp_path)
    with pytest.raises(SystemExit, match="Hugging Face cache"):
        curate_dir(tmp_path / "data" / "curate", base)


def test_planted_task_is_optional_and_answered_by_its_question() -> None:
    assert planted_positions(8, 0.25) == [3, 7] and planted_positions(8, 0.0) == []
    plain = make_train_items(12, 0)
    assert [(i.task, i.question, i.answer) for i in plain] == [
        (i.task, i.question, i.answer) for i in make_items(12, 0)]  # planted 0: the demo's
    items = make_train_items(12, 0, planted=0.25)
    planted = [i for i in items if i.task == PLANTED_TASK]
    assert len(planted) == 3 and all(f"'{i.answer}'" in i.question for i in planted)
    assert all(i.answer == min(i.choices) for i in planted)  # what the biased warm-up teaches
    assert sum(i.task != PLANTED_TASK for i in items) == 9


def test_demo_check_measures_the_two_populations() -> None:
    from local.curate.demo_check import measure

    rows = [row("p1", 1.0, 1.0, PLANTED_TASK), row("p2", 0.5, 0.0, PLANTED_TASK),
            row("a1", 0.5, 0.0, "count"), row("a2", 1.0, 0.5, "pitch"),
            row("a3", 0.0, 0.0, "sweep")]
    ref = {"p1": {"acc_audio": 1.0}, "p2": {"acc_audio": 0.5}, "a1": {"acc_audio": 0.4},
           "a2": {"acc_audio": 0.9}, "a3": {"acc_audio": 0.0}}
    got = measure(rows, ref)
    assert (got["planted"], got["audio"], got["audio_mid_by_reference"],
            got["audio_always_wrong_by_reference"]) == (2, 3, 2, 1)
    # The default keeps p2 (planted, by chance) and a1; a2 (mid by the reference) is dropped.
    assert got["rules"]["audio_and_spread"] == {"planted_dropped": 0.5, "audio_mid_kept": 0.5,
                                                "kept": 2}
    # The threshold reaches the thresholded rules: no-audio accuracy < 0.75 keeps a1, a2, a3, p2.
    strong = measure(rows, ref, threshold=0.75)["rules"]["strong_audio"]
    assert strong == {"planted_dropped": 0.5, "audio_mid_kept": 1.0, "kept": 4}


# ---------------------------------------------------------------------------------------------
# vLLM: one seed per request (a stand-in engine; the real one runs in the vLLM environment)
# ---------------------------------------------------------------------------------------------

class FakeLLM:
    def __init__(self) -> None:
        self.calls: list[tuple[list, list]] = []

    def generate(self, requests: list, params: list, use_tqdm: bool = False) -> list:
        self.calls.append((requests, params))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[])]) for _ in requests]


def test_vllm_requests_carry_their_own_seeds(tiny_omni, tmp_path: Path) -> None:
    from transformers import AutoProcessor

    from local.core.models import family_of, load_config
    from local.curate.sampling import VLLMSampler

    processor = AutoProcessor.from_pretrained(tiny_omni)
    llm = FakeLLM()
    generator = SeededVLLMGenerator(llm, processor, family_of(load_config(str(tiny_omni))),
                                    GenerationSettings(temperature=1.0), audio=False,
                                    params=dict)
    sampler = VLLMSampler(generator, k=2, seed=5, pass_name="no_audio")
    outputs = sampler.sample([record("a"), record("b")], "default")
    assert [[o.id for o in item] for item in outputs] == [["a#0", "a#1"], ["b#0", "b#1"]]
    requests, params = llm.calls[0]
    assert all("multi_modal_data" not in r for r in requests)
    assert [p["seed"] for p in params] == [sample_seed(5, i, "no_audio", j)
                                           for i in ("a", "b") for j in range(2)]


# ---------------------------------------------------------------------------------------------
# End to end on the tiny Omni model
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_data(tmp_path_factory) -> Path:
    from local.demo.data import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("curate") / "data", n_train=4, n_eval=8,
                           planted=0.25) / "avqa"


def curate(model: Path, data: Path, out: Path, *extra: str) -> Path:
    folder = cli.run(["--model", str(model), "--train_data", str(data), "--out", str(out),
                      "--config", str(REPO / "conf" / "demo.yaml"), "--k", "2",
                      "--max_new_tokens", "3", "--dtype", "float32", *extra])
    assert folder is not None
    return folder


def table(folder: Path) -> list[dict]:
    return read_table(folder / "table.parquet")[0]


def test_curate_end_to_end_audio_only_in_the_audio_pass(tiny_omni, planted_data, tmp_path,
                                                         monkeypatch, capsys) -> None:
    seen: list[dict] = []
    original = Generator.model_inputs

    def spy(self, texts, audios):
        inputs = original(self, texts, audios)
        audio_id = self.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
        seen.append({"audio_pass": self.audio, "rows": len(texts),
                     "features": "input_features" in inputs,
                     "placeholders": int((inputs["input_ids"] == audio_id).sum())})
        return inputs

    monkeypatch.setattr(Generator, "model_inputs", spy)
    folder = curate(tiny_omni, planted_data, tmp_path)
    rows = table(folder)
    assert [r["id"] for r in rows] == [f"avqa-train-{i}" for i in range(4)]
    assert [r["category"] for r in rows][3] == PLANTED_TASK
    audio = [s for s in seen if s["audio_pass"]]
    no_audio = [s for s in seen if not s["audio_pass"]]
    assert len(audio) == len(no_audio) == 4 and all(s["rows"] == 2 for s in seen)
    assert all(s["features"] and s["placeholders"] > 0 for s in audio)
    assert not any(s["features"] or s["placeholders"] for s in no_audio)
    sel = json.loads((folder / "selection.json").read_text())
    assert sel["rule"] == "audio_and_spread" and sel["items"] == 4
    assert sel["settings_hash"] == folder.name
    meta = read_table(folder / "table.parquet")[1]
    assert meta["settings"]["k"] == 2 and meta["commit"] and meta["model"] == str(tiny_omni)
    assert {p.name for p in folder.iterdir()} >= {
        ".done", "table.parquet", "selection.json", "report.md", "hist_audio_contribution.png",
        "hist_acc_audio.png"}
    # Another rule on the same settings: no sampling, only a new selection.
    seen.clear()
    assert curate(tiny_omni, planted_data, tmp_path, "--rule", "all") == folder and not seen
    assert json.loads((folder / "selection.json").read_text())["kept"] == 4
    assert cli.run(["--model", str(tiny_omni), "--train_data", str(planted_data), "--out",
                    str(tmp_path), "--config", str(REPO / "conf" / "demo.yaml"), "--k", "2",
                    "--max_new_tokens", "3", "--dtype", "float32", "--where"]) is None
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(folder)


def test_interrupted_curate_resumes_to_the_same_table(tiny_omni, planted_data, tmp_path,
                                                      monkeypatch) -> None:
    clean = table(curate(tiny_omni, planted_data, tmp_path / "clean"))

    from local.eval.prediction_log import PredictionLog

    appended = {"n": 0}
    original = PredictionLog.append

    def dying(self, line):
        if appended["n"] == 5:  # mid no-audio pass, as a kill would
            raise KeyboardInterrupt
        appended["n"] += 1
        original(self, line)

    monkeypatch.setattr(PredictionLog, "append", dying)
    with pytest.raises(KeyboardInterrupt):
        curate(tiny_omni, planted_data, tmp_path / "cut")
    monkeypatch.setattr(PredictionLog, "append", original)
    [folder] = (tmp_path / "cut").glob("*/*")
    log = folder / "passes" / "no_audio" / "partial" / "rank0.jsonl"
    with open(log, "a") as handle:
        handle.write('{"id": "avqa-train-2", "respo')  # a torn last line (kill -9 mid-write)
    assert not (folder / "table.parquet").exists()
    assert table(curate(tiny_omni, planted_data, tmp_path / "cut")) == clean


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_curate_gives_the_same_table_twice(planted_data, tmp_path, monkeypatch) -> None:
    """--backend vllm (in the vLLM environment): every request seeded, so two runs agree."""
    pytest.importorskip("vllm", reason="vLLM is not installed (run.sh --vllm true builds it)")
    from tests.helpers import tiny_checkpoint

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    model = tiny_checkpoint("qwen2_5_omni", text_head_dim=32)
    extra = ("--backend", "vllm", "--max_model_len", "2048", "--batch_size", "4")
    first = table(curate(model, planted_data, tmp_path / "a", *extra))
    second = table(curate(model, planted_data, tmp_path / "b", *extra))
    assert first == second and all(len(r["responses_audio"]) == 2 for r in first)
