"""The run directory and its contract: record schemas, seed loading, the run layout and commit protocol,
the typed summary, one reader for a run, and the exports. Imports only `pipeline.core`."""
