"""summary.md with the audio-contribution section: accuracy with audio, without (`--no_audio`,
results in `<step>-no_audio/`), and the difference, overall and per task (MMAU) / per level-1
category (MMSU, per protocol), every number read back from the two results.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.eval.benchmarks.base import Benchmark, registered
from local.eval.results import results_file
from local.eval.summary import main as summary_main
from local.eval.summary import render, write_summary
from local.runs.layout import NO_AUDIO_SUFFIX

BENCHMARKS = registered()
CATEGORIES = ["Perception-Phonetics-Pitch-Tone", "Reasoning-Semantics-Meaning-X",
              "Perception-Semantics-Syntax-Word order"]
TASKS = ["sound", "music", "speech"]


def _items(bench: str, right: set[int], n: int = 12) -> list[dict[str, Any]]:
    """`n` scored-ready items of `bench`; item i answered right iff i in `right` (item 5 has no
    prediction at all: counted wrong)."""
    items = []
    for i in range(n):
        choices = ["a", "b", "c", "d"]
        answer = choices[i % 4]
        said = answer if i in right else choices[(i + 1) % 4]
        if bench == "mmau":
            item = {"id": f"m{i}", "answer": answer, "choices": choices, "task": TASKS[i % 3],
                    "difficulty": "easy", "sub-category": "s",
                    "model_output": None if i == 5 else said}
        else:  # MMSU: the letter protocol reads the raw response, exact its <answer> content
            letter = "ABCD"[choices.index(said)]
            item = {"id": f"k{i}", "answer": answer, "choices": choices, "answer_index": i % 4,
                    "category": CATEGORIES[i % 3], "question": "q",
                    **({} if i == 5 else {"response": f"<answer>{said}</answer>" if i % 2
                                          else letter})}
        items.append(item)
    return items


def _write(eval_dir: Path, folder: str, bench: str, right: set[int], no_audio: bool,
           n: int = 12) -> dict:
    """results.json as the runner writes it, from the benchmark's own scoring."""
    benchmark: Benchmark = BENCHMARKS[bench]
    results = {p: benchmark.score(_items(bench, right, n), p) for p in benchmark.protocols}
    data = results_file(benchmark, results, settings={"model": f"model-{folder}",
                                                      "no_audio": no_audio})
    (eval_dir / folder).mkdir(parents=True)
    (eval_dir / folder / "results.json").write_text(json.dumps(data))
    return data


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every markdown table of `text` after the audio-contribution heading, by the heading
    line above it: a list of {column: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    lines = text.split("## Audio contribution", 1)[1].splitlines()
    heading, head = "", None
    for line in lines:
        if line.startswith("#"):
            heading, head = line.lstrip("# "), None
        elif line.startswith("|") and head is None:
            head = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("|") and not line.startswith("|--") and "---" not in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables.setdefault(heading, []).append(dict(zip(head, cells, strict=True)))
    return tables


def _expected(with_audio: dict, without: dict, key: str) -> dict[tuple[str, str], tuple]:
    """{(protocol, group): (with %, without %, difference)} computed from the two files."""
    out = {}
    for name, per in (with_audio.get("protocols") or {with_audio["protocol"]: with_audio}).items():
        other = (without.get("protocols") or {without["protocol"]: without})[name]
        out[(name, "all")] = (per["accuracy"], other["accuracy"],
                              per["accuracy"] - other["accuracy"])
        acc_without = {r["group"]: r["accuracy"] for r in other["tables"][key]}
        for row in per["tables"][key]:
            out[(name, row["group"])] = (row["accuracy"], acc_without[row["group"]],
                                         row["accuracy"] - acc_without[row["group"]])
    return out


@pytest.mark.parametrize(
    ("bench", "key", "column"),
    [pytest.param("mmau", "task", "task", id="mmau-per-task"),
     pytest.param("mmsu", "level 1", "level 1 category", id="mmsu-per-level-1-category")],
)
def test_with_without_and_difference_read_from_both_results(tmp_path: Path, bench: str,
                                                            key: str, column: str) -> None:
    right = {0: {0, 1, 2, 3, 4, 6, 7, 8}, 10: {0, 1, 2, 3, 4, 6, 7, 8, 9, 10},
             20: {0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11}}
    right_text_only = {0: {0, 3, 6}, 20: {1, 2, 6, 9, 11}}
    with_audio = {s: _write(tmp_path, str(s), bench, r, False) for s, r in right.items()}
    without = {s: _write(tmp_path, f"{s}{NO_AUDIO_SUFFIX}", bench, r, True)
               for s, r in right_text_only.items()}
    text = write_summary(tmp_path).read_text()
    main_rows = [line for line in text.split("## Audio contribution")[0].splitlines()
                 if line.startswith("| ") and line[2].isdigit()]
    assert [r.split(" | ")[0] for r in main_rows] == ["| 0", "| 10", "| 20"]  # no -no_audio row
    tables = _tables(text)
    protocols = list(BENCHMARKS[bench].protocols)
    assert len(tables) == len(protocols), tables.keys()
    seen = 0
    for heading, rows in tables.items():
        (protocol,) = [p for p in protocols if f"[{p}]" in heading]
        assert {r["step"] for r in rows} == {"0", "20"}  # step 10 has no text-only run
        for step in (0, 20):
            expected = _expected(with_audio[step], without[step], key)
            got = {r[column]: r for r in rows if r["step"] == str(step)}
            groups = {g for p, g in expected if p == protocol}
            assert set(got) == groups
            for group in groups:
                acc, acc_text, diff = expected[(protocol, group)]
                cells = got[group]
                assert cells["with audio (%)"] == f"{acc:.2f}"
                assert cells["without audio (%)"] == f"{acc_text:.2f}"
                assert cells["difference (points)"] == f"{diff:+.2f}"
                seen += 1
    assert seen >= 2 * len(protocols) * 3  # overall + at least two groups, both steps
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_no_audio_results_the_summary_is_unchanged(tmp_path: Path) -> None:
    for step, right in ((0, {1, 2}), (5, {1, 2, 3})):
        _write(tmp_path, str(step), "mmau", right, False)
    text = write_summary(tmp_path).read_text()
    assert "Audio contribution" not in text and "without audio" not in text
    rows = [(s, json.loads((tmp_path / str(s) / "results.json").read_text())) for s in (0, 5)]
    assert text == render(rows, text.splitlines()[0].removeprefix("# "))


def test_a_text_only_result_that_is_not_no_audio_is_left_out(tmp_path: Path) -> None:
    """A `<step>-no_audio/` folder whose results were made WITH audio is not compared."""
    _write(tmp_path, "0", "mmau", {1, 2}, False)
    _write(tmp_path, f"0{NO_AUDIO_SUFFIX}", "mmau", {1}, False)
    text = write_summary(tmp_path).read_text()
    assert "without audio (%)" not in text
    assert f"0{NO_AUDIO_SUFFIX}" in text and "not made with --no_audio" in text


def test_runs_of_different_sizes_are_flagged(tmp_path: Path) -> None:
    _write(tmp_path, "0", "mmau", {1, 2}, False)
    _write(tmp_path, f"0{NO_AUDIO_SUFFIX}", "mmau", {1}, True, n=9)
    text = write_summary(tmp_path).read_text()
    assert "step 0: 12 items with audio, 9 without" in text


def test_a_given_title_names_the_summary(tmp_path: Path) -> None:
    """The demo's synthetic set must not be titled after MMAU test-mini (local.eval.steps
    --title)."""
    _write(tmp_path, "0", "mmau", {0, 1}, no_audio=False)
    assert write_summary(tmp_path).read_text().startswith("# MMAU test-mini across steps")
    named = write_summary(tmp_path, "synthetic demo set (MMAU format) across steps")
    assert named.read_text().startswith("# synthetic demo set (MMAU format) across steps\n")


def _with(eval_dir: Path, folder: str, **fields: Any) -> None:
    """Add top-level `fields` to `<folder>/results.json` (as the runner writes them)."""
    path = eval_dir / folder / "results.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


@pytest.mark.parametrize(
    ("set_titles", "given", "first_line"),
    [
        pytest.param({}, None, "# MMAU test-mini across steps", id="benchmark-name"),
        pytest.param({"0": "toy set", "5": "toy set"}, None, "# toy set across steps",
                     id="set-title-from-the-results"),
        pytest.param({"0": "toy set"}, "my title", "# my title\n", id="title-given-wins"),
    ],
)
def test_the_question_set_title_names_the_summary(tmp_path: Path, set_titles: dict,
                                                  given: str | None, first_line: str) -> None:
    for step in ("0", "5"):
        _write(tmp_path, step, "mmau", {0, 1}, no_audio=False)
    for step, title in set_titles.items():
        _with(tmp_path, step, set_title=title)
    assert write_summary(tmp_path, given).read_text().startswith(first_line)


def test_steps_of_different_question_sets_are_flagged(tmp_path: Path) -> None:
    for step, title in (("0", "set A"), ("5", "set B")):
        _write(tmp_path, step, "mmau", {0, 1}, no_audio=False)
        _with(tmp_path, step, set_title=title)
    text = write_summary(tmp_path).read_text()
    assert "question sets differ" in text and "set A" in text and "set B" in text


def test_notes_are_lines_under_the_title(tmp_path: Path) -> None:
    _write(tmp_path, "0", "mmau", {0, 1}, no_audio=False)
    notes = ["step 0 evaluated with --model X although the run was trained from Y", "second"]
    lines = write_summary(tmp_path, notes=notes).read_text().splitlines()
    assert lines[1:5] == ["", f"**Note:** {notes[0]}", "", f"**Note:** {notes[1]}"]
    assert lines[6].startswith("| step |")
    assert summary_main([str(tmp_path), "--note", "from the CLI"]).read_text().splitlines()[2] \
        == "**Note:** from the CLI"


def test_truncated_audio_is_noted_per_step(tmp_path: Path) -> None:
    _write(tmp_path, "0", "mmau", {0, 1}, no_audio=False)
    _write(tmp_path, "5", "mmau", {0, 1}, no_audio=False)
    _with(tmp_path, "5", audio_incomplete={"m3": "m3: truncated WAV: ...", "m4": "m4: ..."})
    text = write_summary(tmp_path).read_text()
    assert "step 5: 2 items scored on truncated audio (listed in 5/results.md)" in text
    assert "step 0:" not in text
