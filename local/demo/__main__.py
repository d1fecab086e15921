"""`python -m local.demo`: see `local.demo.run`."""

from local.demo.run import main

main()
