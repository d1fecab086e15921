"""Core: what every stage shares. Audio decoding, records and dataset readers, prompts, answer
extraction, batch collation, model loading and the special token ids. Imports nothing above it."""
