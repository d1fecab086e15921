"""Alias kept for `python -m local.validate`: see `local.prepare.validate`."""

import sys

from local.prepare.validate import main

if __name__ == "__main__":
    sys.exit(main())
