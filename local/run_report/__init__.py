"""The run report, for any run folder: curves, accuracy by step, audio contribution, samples,
config.

  run_folder  read a run as it is on disk (trainer state, completions, evaluations, config)
  series      what each plot shows, as data (figures of panels of named series)
  plots       draw the figures as PNGs (+ plots.json, the numbers behind them)
  markdown    the report's sections
  build       read -> figures -> PNGs -> report.md (`python -m local.run_report --run_dir
              exp/<run>`, the call behind `bash run.sh --stage report`)

The run-folder names it reads are `local.runs.layout`'s; the demo report (`local.demo.
demo_report`), the evaluation results (`local.eval.results`) and the data validation report
(`local.prepare.validation_report`) are other reports.
"""
