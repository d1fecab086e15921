"""The dataset layer: one module per dataset, owning its layout facts and readers.

Each module says where its files are (names, columns, id joins, how audio is found), parses its
question file once, and yields `local.core.records.Record`s. prepare, validate, training data,
evaluation and `--score_only` all ask it, so a dataset's facts live in one place.

    avqa   AVQA (training): the hub's save_to_disk folders train/ and val/
    mmsu   MMSU (evaluation): hf-format or official columns, parquet snapshot
    mmau   MMAU test-mini and the full MMAU test: the question JSON + its audio folder
    mmar   MMAR (evaluation): MMAR-meta.jsonl + audio/

Layer: imports local.core, local.util and local.data only; train, eval and prepare import it.
"""
