"""Shared plumbing every stage uses: errors, crash-safe JSONL/JSON I/O, YAML config loading, the console
and the bundled model. Imports nothing else from `pipeline` (the bottom layer)."""
