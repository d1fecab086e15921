"""Evaluate an audio language model on MMAU test-mini (thin CLI; the work is in
local/eval/benchmarks/mmau.py).

Example (CPU, a tiny model, 20 items):
    $ python -m local.tiny --family qwen2_5_omni --out .cache/tiny-omni
    $ python evaluate_mmau.py --model .cache/tiny-omni --out_dir exp/demo/eval/mmau/0 \\
        --mmau_json data/mmau/mmau-test-mini.json --mmau_audio_dir data/mmau/test-mini-audios \\
        --limit 20 --max_new_tokens 16
    $ python evaluate_mmau.py --score_only exp/demo/eval/mmau/0/predictions.json --out r.json

Multi-GPU (one node): torchrun --nproc_per_node 8 evaluate_mmau.py --model ... --out_dir ...
"""

from local.eval.benchmarks.mmau import main

if __name__ == "__main__":
    main()
