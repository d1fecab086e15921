"""`python -m local.report --run_dir exp/<run>`: see `local.report.build`."""

from local.report.build import main

main()
