"""local/core/collate.py: padding Omni audio to the longest clip changes nothing but the cost."""

from __future__ import annotations

import pytest
import torch

from local.core.collate import encode_batch, feature_samples, render_prompt
from local.core.models import load_model_and_processor
from local.core.prompts import build_messages
from tests.helpers import tone

CLIPS = {
    "one-clip": [tone(1.3)],
    "short-and-long": [tone(1.0, 440), tone(2.5, 300)],
    "three-lengths": [tone(0.4, 880), tone(3.0, 220), tone(1.7, 660)],
}


@pytest.fixture(scope="module")
def omni(tiny_omni):
    return load_model_and_processor(str(tiny_omni), dtype="float32")


def _texts(loaded, n: int) -> list[str]:
    return [render_prompt(loaded.processor, build_messages(f"Question {i}?")) for i in range(n)]


@pytest.mark.parametrize("clips", CLIPS.values(), ids=CLIPS.keys())
def test_omni_longest_clip_padding_matches_the_processor_default(omni, clips) -> None:
    texts = _texts(omni, len(clips))
    ours = encode_batch(omni.processor, omni.family, texts, clips)
    default = encode_batch(omni.processor, omni.family, texts, clips, pad_to_longest=False)
    assert default["input_features"].shape[-1] == 30_000  # the 300 s window
    assert ours["input_features"].shape[-1] < max(len(c) for c in clips) // 160 + 10
    torch.testing.assert_close(ours["feature_attention_mask"].sum(-1),
                               default["feature_attention_mask"].sum(-1))
    for row, mask in enumerate(ours["feature_attention_mask"]):
        frames = int(mask.sum())  # every valid frame is bit-identical to the default's
        torch.testing.assert_close(ours["input_features"][row, :, :frames],
                                   default["input_features"][row, :, :frames], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(omni.model(**ours).logits, omni.model(**default).logits)


def test_rows_of_a_batch_match_each_clip_alone(omni) -> None:
    clips = CLIPS["three-lengths"]
    texts = _texts(omni, len(clips))
    batch = encode_batch(omni.processor, omni.family, texts, clips)
    with torch.no_grad():
        logits = omni.model(**batch).logits
        for row, (text, clip) in enumerate(zip(texts, clips, strict=True)):
            alone = encode_batch(omni.processor, omni.family, [text], [clip])
            expected = omni.model(**alone).logits[0]
            torch.testing.assert_close(logits[row, -expected.shape[0]:], expected,
                                       rtol=1e-4, atol=1e-5)


def test_qwen2_audio_keeps_its_30_second_window(tiny_qwen2_audio) -> None:
    loaded = load_model_and_processor(str(tiny_qwen2_audio), dtype="float32")
    clips = CLIPS["short-and-long"]
    batch = encode_batch(loaded.processor, loaded.family, _texts(loaded, 2), clips)
    assert batch["input_features"].shape[-1] == 3_000
    assert feature_samples(loaded.processor, loaded.family, clips) == 480_000


@pytest.mark.parametrize(
    ("texts", "n_clips", "message"),
    [
        pytest.param(["<|AUDIO|> a", "<|AUDIO|> b"], 1, "2 prompts but 1 audio", id="count"),
        pytest.param(["no placeholder"], 1, "0 audio placeholders", id="no-placeholder"),
        pytest.param(["<|AUDIO|><|AUDIO|>"], 1, "2 audio placeholders", id="two-placeholders"),
    ],
)
def test_misaligned_batches_are_refused(omni, texts, n_clips: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_batch(omni.processor, omni.family, texts, [tone(0.5)] * n_clips)
