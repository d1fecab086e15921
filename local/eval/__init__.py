"""Evaluation: generation, the resumable runner, scoring, reports and summaries, and one module per
benchmark under `benchmarks/`."""
