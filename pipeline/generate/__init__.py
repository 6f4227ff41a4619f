"""Generation: configuration, prompts and templates, reply parsing, classification, recipes and the run protocol.
Imports `core`, `run`, `quality` and `teachers`; nothing imports it but `commands`.

Two halves. A recipe (`recipe.py`, `recipes/<method>.py`) turns one round's prompts into candidates
and verdicts: what to ask, how to read the replies, which stages a candidate passes. The protocol
(`protocol.py`, with `rounds.py` running and committing rounds, `driver.py` feeding the teacher,
`overlap.py` asking the next round early and `progress.py` reporting) owns everything else: run
length and time budget, commit points and resume, crash points, progress.

Adding a method (as evol_instruct.py and magpie.py were added) takes three steps and touches neither the protocol
nor another recipe:
1. `recipes/<method>.py` (the method name with `_` for `-`): a `Recipe` subclass with `method =
   "<method>"`; `opening()` draws the round's prompts from `self.ctx.rng` and returns one `Ask` per
   prompt, and each `Ask.then` reads its reply into candidates (`self.candidate(...)`), runs them
   through the shared stages (`passes_instruction_filters`, `is_novel`, `keep_instances`, or its
   own, recording rejections with `self.reject`) and returns any follow-up asks; `close()` (inherited)
   offers the ready candidates to the ROUGE-L index in candidate order and numbers the kept ones.
   Seed each request with `prompts.request_seed(..., <its place in the round>)`, never with a count
   that depends on which reply came back first. Fields of the kept task beyond the shared ones (a
   lineage, a conversation) go in `Candidate.extra`; a config the method cannot run is refused in
   `Recipe.check`, which the protocol calls before the teacher is opened. A method whose `opening`
   does not read `ctx.pool` says so (`reads_pool = False`): its next round can be asked early without
   a guess.
2. Its prompt templates as `templates/<name>.txt` (plus a `TemplatePaths` field so users can
   override them) and its decoding defaults as a `DecodingConfig` field, both in `config.py`.
3. Its name in `config.Method` and in the `--method` choices of `commands/generate.py` (kept literal
   so `--help` stays light), and a preset `configs/<method>.yaml`; a test beside `tests/test_rounds.py`
   runs it against the fake teacher.
"""
