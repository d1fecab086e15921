"""The CPU demo: synthetic audio QA data, tiny offline checkpoints, the supervised warm-up and
the report. `python -m local.demo` runs `local.demo.run`."""
