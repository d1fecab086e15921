"""A run folder, as every stage names and reads it; below train, eval and the run report.

  layout        names and paths: checkpoint-N/, trainer_state.json, resolved_config.yaml,
                command.txt, completions/, eval/<bench>/<step>[-no_audio]/results.json, summary
  checkpoints   the two rules on a checkpoint-N folder (evaluable, resumable) and the discovery
                built on them (train.py's resume, the evaluation stages, the demo)
  eval_results  an evaluation's results.json as a run folder holds them: protocols, the table
                the audio contribution is shown by, every step of an eval/<bench>/ folder

Imports only `local.core` (deferred: `checkpoints.checkpoint_problem`'s weight check),
`local.util` and itself; `layout` is standard library only.
"""
