"""Alias kept for `python -m local.warmup`: see `local.demo.warmup`."""

from local.demo.warmup import main

if __name__ == "__main__":
    main()
