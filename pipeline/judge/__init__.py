"""The judge: an LLM scores kept tasks the way the Self-Instruct paper reviewed its data, and compares answers pairwise.
Imports `core`, `run` (records and judgments.jsonl) and `teachers` (the judge is any teacher); nothing imports it but commands and tuning."""
