"""Evaluation: one generic flow for every benchmark, and one module per benchmark.

  runner          evaluate(benchmark, argv): parse -> load -> predict -> score -> write, and
                  --score_only (evaluate_mmau.py, evaluate_mmsu.py and `steps` all run it)
  options         the shared command line (model, template, generation, audio, output)
  generation      the generation backends' shared part, the HF one (`generate`), settings
  vllm_backend    the vLLM backend (--backend vllm): same prompts, settings and files
  prediction_log  resumable per-rank JSONL logs and the settings guard
  judge           verdicts (the matchers applied to items), accuracy tables, one protocol's
                  results: data only, nothing rendered or written
  question_check  --score_only: a predictions file matched to the question set
  results         results.json / results.md and the headline lines: the one writer of results
  steps           a run's step 0 and checkpoints, then `summary` (accuracy across steps)
  benchmarks/     `base.Benchmark` and its registry; mmau, mmsu (+ mmsu_official)
"""
