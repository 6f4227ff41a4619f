"""selfinstruct's generation pipeline: seeds -> teacher -> parse -> filter -> dedup -> export."""

__version__ = "0.1.0"
