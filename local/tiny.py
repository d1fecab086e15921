"""Alias kept for `python -m local.tiny`: see `local.demo.tiny`."""

from local.demo.tiny import main

if __name__ == "__main__":
    main()
