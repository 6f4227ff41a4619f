"""Quality: ROUGE-L (rouge-score's exact semantics), the dedup index and the named quality filters.
Imports only `core` and `run.schemas`: pure algorithms on text."""
