"""Recipe-independent helpers (files, processes, the environment check); standard library only
at import time."""
