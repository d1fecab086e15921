"""A new benchmark is one small class: a toy benchmark registered in a few lines runs end to end
through the generic runner (predict, resume, score, write), `--score_only` and the steps runner
that run.sh uses, on the tiny model; the registry refuses a second benchmark under a taken name."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.core.records import ReadReport, Record
from local.eval import steps
from local.eval.benchmarks.base import Benchmark, register, registered
from local.eval.benchmarks.mmau import MMAU
from local.eval.generation import Generator
from local.eval.runner import evaluate
from tests.sources import wav

FAST = ["--max_new_tokens", "4", "--batch_size", "2", "--dtype", "float32"]


# ---- the whole benchmark: its data option, its reader; everything else is the default ------
class Toy(Benchmark):
    name, title, question_option = "toy", "Toy QA", "--toy_json"
    protocols = {"exact": "the <answer> content equals the option text"}
    table_keys = ("task",)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--toy_json", type=Path, default=Path("data/toy.json"))

    def read(self, args: argparse.Namespace, report: ReadReport) -> Iterator[Record]:
        for row in json.loads(args.toy_json.read_text()):
            yield Record(id=row["id"], audio=str(args.toy_json.parent / row["wav"]),
                         question=row["question"], choices=row["choices"],
                         answer=row["answer"], meta={"task": row["task"]})


TOY = register(Toy())
# ----------------------------------------------------------------------------------------------

N = 5


@pytest.fixture(scope="module")
def toy_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    rows = []
    for i in range(N):
        (folder / f"clip{i}.wav").write_bytes(wav(0.3, freq=300 + 80 * i))
        rows.append({"id": f"t{i}", "wav": f"clip{i}.wav", "question": "Low or high?",
                     "choices": ["low", "high"], "answer": ["low", "high"][i % 2],
                     "task": ["pitch", "loudness"][i % 2]})
    path = folder / "toy.json"
    path.write_text(json.dumps(rows))
    return path


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    original = Generator.generate

    def generate(self, records, *args, **kwargs):
        asked.extend(r.id for r in records)
        return original(self, records, *args, **kwargs)

    monkeypatch.setattr(Generator, "generate", generate)
    return asked


def test_a_toy_benchmark_runs_end_to_end_and_rescores(tiny_omni: Path, toy_json: Path,
                                                      tmp_path: Path, monkeypatch) -> None:
    asked = _spy(monkeypatch)
    out = tmp_path / "0"
    argv = ["--model", str(tiny_omni), "--toy_json", str(toy_json), "--out_dir", str(out), *FAST]
    result = evaluate(TOY, argv)
    assert asked == [f"t{i}" for i in range(N)]
    assert (result["benchmark"], result["protocol"], result["total"]) == ("Toy QA", "exact", N)
    assert result["no_prediction"] == 0 and result["settings"]["toy_json"] == str(toy_json)
    assert [row["group"] for row in result["tables"]["task"]] == ["loudness", "pitch"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert [p["id"] for p in predictions] == [f"t{i}" for i in range(N)]
    assert all(p["response"] is not None and p["task"] for p in predictions)
    assert json.loads((out / "results.json").read_text()) == result
    assert "Accuracy [exact]" in (out / "results.md").read_text()
    assert (out / "partial" / "rank0.jsonl").exists()

    asked.clear()  # a rerun resumes: nothing is asked again, the same results
    assert evaluate(TOY, argv) == result and asked == []

    rescored = evaluate(TOY, ["--score_only", str(out / "predictions.json"), "--toy_json",
                              str(toy_json), "--out", str(tmp_path / "rescored.json")])
    assert (rescored["accuracy"], rescored["total"]) == (result["accuracy"], N)
    assert rescored["question_check"]["matched"] == N
    assert (tmp_path / "rescored.md").exists()


def test_the_steps_runner_finds_a_registered_benchmark(tiny_omni: Path, toy_json: Path,
                                                       tmp_path: Path) -> None:
    assert registered()["toy"] is TOY and {"mmau", "mmsu"} <= set(registered())
    summary = steps.main(["--bench", "toy", "--model", str(tiny_omni), "--run_dir",
                          str(tmp_path / "run"), "--", "--toy_json", str(toy_json),
                          "--limit", "2", *FAST])
    assert summary == tmp_path / "run" / "eval" / "toy" / "summary.md"
    assert "| 0 |" in summary.read_text()
    assert json.loads((summary.parent / "0" / "results.json").read_text())["total"] == 2


def test_a_taken_name_is_refused() -> None:
    class Other(Toy):
        name = "mmau"

    with pytest.raises(ValueError, match="'mmau' is taken"):
        register(Other())
    assert registered()["mmau"] is MMAU
