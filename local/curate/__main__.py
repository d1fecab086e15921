"""`python -m local.curate`: see `local.curate.cli`."""

from local.curate.cli import main

if __name__ == "__main__":
    main()
