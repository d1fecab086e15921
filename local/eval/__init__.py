"""Evaluation: one generic flow for every benchmark, and one module per benchmark.

  runner          evaluate(benchmark, argv): parse -> load -> predict -> score -> write, and
                  --score_only (evaluate_mmau.py, evaluate_mmsu.py and `steps` all run it)
  options         the shared command line (model, template, generation, audio, output)
  generation      the generation backends' shared part, the HF one (`generate`), settings
  vllm_backend    the vLLM backend (--backend vllm): same prompts, settings and files
  prediction_log  resumable per-rank JSONL logs and the settings guard
  scoring         matchers applied to items, accuracy tables
  report          results.json / results.md of one protocol, the --score_only question check
  steps           a run's step 0 and checkpoints, then `summary` (accuracy across steps)
  benchmarks/     `base.Benchmark` and its registry; mmau, mmsu (+ mmsu_official)
"""
