"""`python -m local.prepare`: see `local.prepare.cli`."""

import sys

from local.prepare.cli import main

sys.exit(main())
