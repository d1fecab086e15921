"""local/eval/generation.py: audio reaches the model (and --no_audio removes it), settings are
explicit.

Every check here has a control that shows it can fail: the audio check compares logits of two
clips, the greedy check shows the checkpoint's own config would sample, and the suppression check
shows the placeholder would be generated without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from local.core.collate import AUDIO_KEYS
from local.core.models import load_model_and_processor
from local.core.prompts import build_messages
from local.core.records import Record
from local.core.special_tokens import placeholder_token_ids
from local.eval.generation import (
    GenerationSettings,
    Generator,
    has_audio,
    text_only_messages,
    token_ids,
)
from local.util.dist import shard
from tests.helpers import logits_differ, spy_generate, tone


def _record(rid: str, freq: float = 440.0, audio: object = "tone") -> Record:
    if audio == "tone":
        return Record(id=rid, audio=tone(1.5, freq), sampling_rate=16_000,
                      question="Which tone is it?", choices=["low", "high"], answer="low")
    return Record(id=rid, audio=audio, question="Which tone is it?", choices=["low", "high"],
                  answer="low")


def _forward(model):
    def run(inputs):
        keep = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask",
                                                         *AUDIO_KEYS)}
        return model(**keep).logits
    return run


@pytest.fixture
def loaded(tiny_family_checkpoint):
    return load_model_and_processor(str(tiny_family_checkpoint[1]), dtype="float32")


SETTINGS = GenerationSettings(max_new_tokens=4)


def test_audio_reaches_the_model_in_eval(loaded) -> None:
    generator = Generator(loaded, SETTINGS)
    seen = spy_generate(generator)
    outputs = generator.generate([_record("low", 220.0), _record("high", 3000.0)])
    assert [o.error for o in outputs] == [None, None] and all(o.response is not None
                                                             for o in outputs)
    inputs = seen[0]
    assert has_audio(inputs, generator.tokenizer)
    assert inputs["input_features"].shape[0] == 2
    assert inputs["feature_attention_mask"].sum(-1).tolist() == [150, 150]  # 1.5 s at 100 fps
    # The two rows differ only in their audio: their logits must differ.
    one = {k: v[:1] for k, v in inputs.items() if torch.is_tensor(v)}
    two = {k: v[1:] for k, v in inputs.items() if torch.is_tensor(v)}
    assert torch.equal(one["input_ids"], two["input_ids"])
    assert logits_differ(_forward(loaded.model), one, two)


def test_no_audio_removes_the_audio_from_the_model_input(loaded) -> None:
    generator = Generator(loaded, SETTINGS, audio=False)
    seen = spy_generate(generator)
    # Different clips, and one record whose audio file does not exist: none of it matters.
    records = [_record("low", 220.0), _record("high", 3000.0), _record("gone", audio="/no.wav")]
    outputs = generator.generate(records)
    assert [o.error for o in outputs] == [None, None, None]
    inputs = seen[0]
    assert not any(k in inputs for k in AUDIO_KEYS)
    tokenizer = generator.tokenizer
    for token in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"):
        assert not (inputs["input_ids"] == token_ids(tokenizer, [token])[0]).any(), token
    assert not has_audio(inputs, tokenizer)
    assert len({o.response for o in outputs}) == 1  # same text, no audio: same answer
    prompt = generator.prompt(records[0], "default")
    assert "Which tone is it?" in prompt and "audio_bos" not in prompt


def test_text_only_messages_keeps_the_text_part() -> None:
    messages = build_messages("How many beeps?")
    assert text_only_messages(messages) == [
        {"role": "user", "content": [{"type": "text", "text": "How many beeps?"}]}]


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        pytest.param("/nonexistent/clip.wav", "audio file not found", id="missing-file"),
        pytest.param(b"not audio at all", "cannot decode audio", id="corrupt-bytes"),
        pytest.param(None, "no audio in the record", id="no-audio"),
    ],
)
def test_unreadable_audio_gives_an_error_not_a_crash(loaded, audio, message: str) -> None:
    generator = Generator(loaded, SETTINGS)
    bad, good = _record("bad", audio=audio), _record("good")
    outputs = generator.generate([bad, good])
    assert outputs[0].response is None and message in outputs[0].error
    assert outputs[1].error is None and outputs[1].response is not None


def test_long_audio_is_cut_and_counted(tiny_omni) -> None:
    loaded = load_model_and_processor(str(tiny_omni), dtype="float32")
    generator = Generator(loaded, SETTINGS, max_audio_seconds=1.0)
    seen = spy_generate(generator)
    outputs = generator.generate([_record("long")])  # a 1.5 s clip, limit 1 s
    assert outputs[0].audio_truncated and generator.truncated == 1
    assert int(seen[0]["feature_attention_mask"].sum()) == 100


def test_greedy_ignores_a_sampling_generation_config(tiny_omni) -> None:
    loaded = load_model_and_processor(str(tiny_omni), dtype="float32")
    config = loaded.model.generation_config
    config.do_sample, config.temperature, config.top_k = True, 1.5, 50
    generator = Generator(loaded, GenerationSettings(max_new_tokens=12))
    records = [_record("a"), _record("b", 880.0)]
    runs = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        runs.append([o.response for o in generator.generate(records)])
    assert runs[0] == runs[1] == runs[2]
    # Control: the checkpoint's own config samples, so the same call without our settings varies.
    seen = spy_generate(generator)
    generator.generate(records[:1])
    inputs = {k: v for k, v in seen[0].items() if torch.is_tensor(v)}
    sampled = set()
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        sampled.add(tuple(loaded.model.generate(**inputs, max_new_tokens=12)[0].tolist()))
    assert len(sampled) > 1


def test_placeholder_tokens_are_never_generated(tiny_omni) -> None:
    loaded = load_model_and_processor(str(tiny_omni), dtype="float32")
    tokenizer = loaded.processor.tokenizer
    banned = token_ids(tokenizer, ["<|AUDIO|>", "<|IMAGE|>", "<|VIDEO|>"])

    def favour_placeholders(module, inputs, output):
        output = output.clone()
        output[..., banned] += 1e4
        return output

    loaded.model.get_output_embeddings().register_forward_hook(favour_placeholders)
    generator = Generator(loaded, GenerationSettings(max_new_tokens=6))
    seen = spy_generate(generator)
    generator.generate([_record("a")])
    inputs = {k: v for k, v in seen[0].items() if torch.is_tensor(v)}
    with torch.inference_mode():
        ours = loaded.model.generate(**inputs, **generator.kwargs)
        unguarded = loaded.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert not np.isin(ours[:, prompt_len:].numpy(), banned).any()
    assert np.isin(unguarded[:, prompt_len:].numpy(), banned).any()  # control


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(GenerationSettings(), {"do_sample": False, "max_new_tokens": 2048,
                                            "temperature": None, "top_p": None, "top_k": None,
                                            "repetition_penalty": 1.0},
                     id="greedy-default-as-the-reference-recipe"),
        pytest.param(GenerationSettings(temperature=0.7, top_p=0.9, top_k=20,
                                        repetition_penalty=1.1, max_new_tokens=64),
                     {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
                      "repetition_penalty": 1.1, "max_new_tokens": 64}, id="sampling"),
        pytest.param(GenerationSettings(temperature=1.0, top_k=0), {"top_k": None},
                     id="top-k-0-means-off"),
    ],
)
def test_generate_kwargs(tiny_omni: Path, settings: GenerationSettings, expected: dict) -> None:
    tokenizer = load_model_and_processor(str(tiny_omni), dtype="float32").processor.tokenizer
    kwargs = settings.generate_kwargs(tokenizer)
    for key, value in expected.items():
        assert kwargs[key] == value, key
    assert kwargs["eos_token_id"] == token_ids(tokenizer, ["<|im_end|>", "<|endoftext|>"])
    # The one placeholder list (training suppresses the same), which holds at least these three.
    assert kwargs["suppress_tokens"] == placeholder_token_ids(tokenizer)
    assert set(token_ids(tokenizer, ["<|AUDIO|>", "<|IMAGE|>", "<|VIDEO|>"])) <= set(
        kwargs["suppress_tokens"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"max_new_tokens": 0}, "at least 1", id="no-tokens"),
        pytest.param({"temperature": -1.0}, "bad sampling", id="negative-temperature"),
        pytest.param({"top_p": 0.0}, "bad sampling", id="top-p-zero"),
        pytest.param({"repetition_penalty": 0.0}, "repetition_penalty", id="penalty-zero"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationSettings(**kwargs)


@pytest.mark.parametrize(
    ("n", "world"),
    [(20, 1), (20, 2), (21, 4), (3, 8)],
    ids=["single", "even", "uneven", "more-ranks-than-items"],
)
def test_shards_cover_every_item_once(n: int, world: int) -> None:
    items = list(range(n))
    shards = [shard(items, rank, world) for rank in range(world)]
    assert sorted(x for s in shards for x in s) == items
    assert shards == [shard(items, rank, world) for rank in range(world)]  # deterministic
    with pytest.raises(ValueError):
        shard(items, world, world)
