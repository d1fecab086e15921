"""Curation: which training items need the audio, and which give GRPO a gradient.

For each training item the starting model answers k times with the audio and k times without
(`sampling`, `scoring`: the evaluation backends, seeded per sample, resumable, data parallel);
the `table` holds per item the two accuracies, their difference (the audio contribution) and
whether a GRPO group would have zero reward spread; `rules` select the items to train on
(`selection.json`, the ids training takes); `report` draws and counts. `settings` holds the
defaults (the training config's G and temperature) and names the folder. `python -m
local.curate` (`cli`) runs it all.
"""
