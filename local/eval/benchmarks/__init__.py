"""One module per benchmark (MMAU test-mini, MMSU), each a `base.Benchmark` registered by name.

A new benchmark is one module here: `base.registered()` imports every module of this package,
so its `register(...)` call is all it takes (see `base` for what a benchmark defines).
"""
