"""Curation: sentence embeddings of a run's instructions, semantic near-duplicates, clusters for the
diversity map, and the choice of the N tasks that best combine quality and coverage (`select`).
Imports `core`, `run` and `quality.config`; numpy, scikit-learn, faiss and sentence-transformers load
lazily, only where a function needs them."""
