"""evaluate_mmsu.py end to end on a tiny model: both protocols, each number named by protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import evaluate_mmsu
from local.eval.generation import Generator
from tests.sources import mmsu_eval_set

N_ROWS = 8


def test_both_protocols_end_to_end(tiny_qwen2_audio, tmp_path: Path, monkeypatch,
                                   capsys) -> None:
    mmsu = mmsu_eval_set(tmp_path / "mmsu", N_ROWS)
    original = Generator.generate
    asked: dict[str, list[str]] = {"exact": [], "letter": []}

    def spy(self, records, template="default", texts=None):
        prompts = [self.prompt(r, template, t) for r, t in
                   zip(records, texts or [None] * len(records), strict=True)]
        asked["letter" if texts else "exact"].extend(prompts)
        return original(self, records, template, texts)

    monkeypatch.setattr(Generator, "generate", spy)
    out = tmp_path / "out"
    result = evaluate_mmsu.main(["--model", str(tiny_qwen2_audio), "--mmsu_path", str(mmsu),
                             "--out_dir", str(out), "--max_new_tokens", "4", "--batch_size", "4",
                             "--dtype", "float32"])
    assert result["accuracy_protocol"] == "exact"
    assert result["accuracy"] == result["protocols"]["exact"]["accuracy"]
    for protocol in ("exact", "letter"):
        scored = result["protocols"][protocol]
        assert scored["total"] == N_ROWS and scored["no_prediction_ids"] == ["mmsu-3"]
        predictions = json.loads((out / f"predictions_{protocol}.json").read_text())
        assert [p["id"] for p in predictions] == [f"mmsu-{i}" for i in range(N_ROWS)]
    assert len(asked["exact"]) == len(asked["letter"]) == N_ROWS
    # the reference recipe's prompt: padding kept, options as a list repr
    assert "['Yes', 'No', 'None', 'None']" in asked["exact"][1]
    # the official prompt, padding kept so letters never shift
    assert ("You must respond with only A, B, C, or D.\n\nQuestion: Question 1: is the tone "
            "rising?\n\nA. Yes\nB. No\nC. None\nD. None") in asked["letter"][1]
    assert "<|AUDIO|>" in asked["letter"][1]
    letter = result["protocols"]["letter"]
    official = [json.loads(line) for line in
                (out / "predictions_letter.jsonl").read_text().splitlines()]
    assert [row["id"] for row in official] == [f"mmsu-{i}" for i in range(N_ROWS)]
    assert official[1]["choice_c"] == "None" and official[1]["answer_gt"] == "No"
    assert letter["official_denominator"] + len(letter["official_left_out"]) == N_ROWS
    assert "mmsu-3" in letter["official_left_out"]  # no prediction: the official script skips it
    printed = capsys.readouterr().out
    assert "MMSU accuracy [exact: reference recipe protocol" in printed
    assert "MMSU accuracy [letter: MMSU letter protocol, strict" in printed
    assert "as the official mmsu_evaluation.py computes it" in printed
    markdown = (out / "results.md").read_text()
    assert "[exact]" in markdown and "[letter]" in markdown and "| level 2 |" in markdown

    # Its official-format file, re-scored with the default protocols: the letter protocol is
    # the headline (exact cannot be scored from letters) and both figures are the run's.
    rescored = evaluate_mmsu.main(["--score_only", str(out / "predictions_letter.jsonl"),
                                   "--out", str(tmp_path / "rescored.json")])
    assert (rescored["accuracy_protocol"], list(rescored["protocols"])) == ("letter", ["letter"])
    again_letter = rescored["protocols"]["letter"]
    for key in ("accuracy", "correct", "total", "no_prediction_ids", "official_accuracy",
                "official_denominator", "official_left_out"):
        assert again_letter[key] == letter[key], key
    assert again_letter["file_check"]["rows"] == again_letter["file_check"]["scored"] == N_ROWS
    assert "Headline: letter; exact is not scorable from this file" in capsys.readouterr().out

    # A rerun resumes both passes: nothing is asked again.
    asked["exact"].clear()
    asked["letter"].clear()
    again = evaluate_mmsu.main(["--model", str(tiny_qwen2_audio), "--mmsu_path", str(mmsu),
                            "--out_dir", str(out), "--max_new_tokens", "4", "--dtype", "float32"])
    assert asked == {"exact": [], "letter": []}
    assert again["protocols"] == result["protocols"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--protocols", "exact,bogus"], "choose from exact, letter", id="protocol"),
        pytest.param(["--mmsu_path", "/nonexistent/mmsu"], "MMSU not found", id="missing-data"),
    ],
)
def test_mmsu_clear_errors(tiny_qwen2_audio, tmp_path: Path, argv: list[str],
                           message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        evaluate_mmsu.main(["--model", str(tiny_qwen2_audio), "--out_dir", str(tmp_path), *argv])
