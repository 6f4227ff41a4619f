"""The run report and dataset card: figures from a run, plots, verb analysis, HTML and the card.
Reads a run through `pipeline.run`; writes nothing but its own outputs and the embedding cache the
diversity map fills (`cache/embeddings/`, `pipeline.curate`)."""
