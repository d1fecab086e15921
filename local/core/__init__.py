"""Core: what every stage shares. Audio decoding, the record format, prompts, answer
extraction, the rewards (training scores them, the run report resolves their weights), batch
collation, model loading and the special token ids. Imports nothing above it."""
