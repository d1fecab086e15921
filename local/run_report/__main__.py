"""`python -m local.run_report --run_dir exp/<run>`: see `local.run_report.build`."""

from local.run_report.build import main

main()
