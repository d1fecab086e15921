"""Special tokens have one definition (local.core.special_tokens) used by training and evaluation.

- `placeholder_token_ids` keeps the placeholders a tokenizer knows (Qwen2-Audio has no vision
  markers), drops unknown ones, and refuses a tokenizer without the audio placeholder; the
  placeholders are the family's (Qwen3-Omni's `<|audio_pad|>` is not Qwen2's `<|AUDIO|>`).
- Evaluation's generate kwargs suppress exactly that list, and stop at exactly `STOP_TOKENS`.
- No recipe module spells a special token itself (a second list would drift).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from local.core.families import family_named
from local.core.special_tokens import (
    PLACEHOLDER_TOKENS,
    STOP_TOKENS,
    audio_token,
    placeholder_token_ids,
    stop_token_ids,
)
from tests.helpers import REPO


class FakeTokenizer:
    """convert_tokens_to_ids as transformers' does: unknown tokens give `unk_token_id`."""

    def __init__(self, vocab: dict[str, int], unk_token_id: int | None = None) -> None:
        self.vocab, self.unk_token_id = vocab, unk_token_id

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[Any]:
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]


QWEN2_5_OMNI = family_named("qwen2_5_omni")
QWEN3_OMNI = family_named("qwen3_omni_moe")
ALL = {token: 100 + i for i, token in enumerate(QWEN2_5_OMNI.placeholder_tokens)}
AUDIO_ONLY = {t: ALL[t] for t in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")}


@pytest.mark.parametrize(
    ("vocab", "unk", "expected"),
    [
        pytest.param(ALL, None, sorted(ALL.values()), id="qwen2.5-omni-all-eight"),
        pytest.param(AUDIO_ONLY, None, [100, 103, 104], id="qwen2-audio-no-vision-none-unk"),
        pytest.param({**AUDIO_ONLY, "<unk>": 7}, 7, [100, 103, 104],
                     id="unknown-map-to-unk-dropped"),
    ],
)
def test_placeholder_ids_keep_what_the_tokenizer_knows(vocab: dict, unk: int | None,
                                                       expected: list[int]) -> None:
    assert placeholder_token_ids(FakeTokenizer(vocab, unk)) == expected


def test_a_tokenizer_without_the_audio_placeholder_is_refused() -> None:
    vocab = {t: i for t, i in ALL.items() if t != "<|AUDIO|>"}
    with pytest.raises(ValueError, match=r"no audio placeholder .*<\|AUDIO\|>.*<\|audio_pad\|>"):
        placeholder_token_ids(FakeTokenizer(vocab))
    with pytest.raises(ValueError, match=r"no \['<\|AUDIO\|>'\]"):
        placeholder_token_ids(FakeTokenizer(vocab), QWEN2_5_OMNI)


def test_the_placeholders_are_the_family_s() -> None:
    qwen3 = {token: 200 + i for i, token in enumerate(QWEN3_OMNI.placeholder_tokens)}
    tokenizer = FakeTokenizer({**qwen3, "<think>": 300})
    assert audio_token(tokenizer) == "<|audio_pad|>"
    assert placeholder_token_ids(tokenizer) == sorted(qwen3.values())
    assert placeholder_token_ids(tokenizer, QWEN3_OMNI) == sorted(qwen3.values())
    with pytest.raises(ValueError, match=r"no \['<\|AUDIO\|>'\]"):
        placeholder_token_ids(tokenizer, QWEN2_5_OMNI)


def test_evaluation_suppresses_the_one_list_and_stops_at_the_stop_tokens() -> None:
    from local.demo.tokenizers import build_tokenizer
    from local.eval.generation import GenerationSettings

    tokenizer = build_tokenizer("tiny")
    kwargs = GenerationSettings().generate_kwargs(tokenizer)
    assert kwargs["suppress_tokens"] == placeholder_token_ids(tokenizer)
    assert len(kwargs["suppress_tokens"]) == len(QWEN2_5_OMNI.placeholder_tokens)  # all
    assert kwargs["eos_token_id"] == stop_token_ids(tokenizer)


# Modules that build tokenizers and model configs token by token (the demo's tiny models).
TOKEN_TABLES = {"local/demo/tiny.py", "local/demo/tiny_qwen3_omni.py", "local/demo/tokenizers.py",
                "local/core/special_tokens.py", "local/core/families/qwen2_audio.py",
                "local/core/families/qwen2_5_omni.py", "local/core/families/qwen3_omni_moe.py"}


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_recipe_module_spells_a_special_token_itself() -> None:
    tokens = (*STOP_TOKENS, *PLACEHOLDER_TOKENS)
    found = [f"{path.relative_to(REPO)}:{line}: {text!r}"
             for path in sorted((REPO / "local").rglob("*.py"))
             if str(path.relative_to(REPO)) not in TOKEN_TABLES
             for line, text in _code_strings(path) if any(t in text for t in tokens)]
    assert found == [], "use local.core.special_tokens instead:\n" + "\n".join(found)
