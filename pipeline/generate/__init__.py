"""Generation: configuration, prompts and templates, reply parsing, classification and the rounds.
Imports `core`, `run`, `quality` and `teachers`; nothing imports it but `commands`."""
