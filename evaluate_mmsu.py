"""Evaluate an audio language model on MMSU (thin CLI; the work is in
local/eval/benchmarks/mmsu.py).

Two protocols, each number printed with its name: `exact` (the seed's: the <answer> content is
the option text) and `letter` (the official MMSU scorer's: a letter prompt, a letter answer).

Example (CPU, a tiny model, 20 items):
    $ python -m local.tiny --family qwen2_5_omni --out .cache/tiny-omni
    $ python evaluate_mmsu.py --model .cache/tiny-omni --mmsu_path data/mmsu \\
        --out_dir exp/demo/eval/mmsu/0 --limit 20 --max_new_tokens 16
    $ python evaluate_mmsu.py --score_only exp/demo/eval/mmsu/0/predictions_exact.json \\
        --protocols exact --out r.json

Multi-GPU (one node): torchrun --nproc_per_node 8 evaluate_mmsu.py --model ... --out_dir ...
"""

from local.eval.benchmarks.mmsu import main

if __name__ == "__main__":
    main()
