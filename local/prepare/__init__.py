"""Stage prepare: hub snapshots, MMAU audio unpacking, and validation of what arrived.

`python -m local.prepare` runs `local.prepare.cli`."""
