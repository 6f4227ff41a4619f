"""Stanford Alpaca's recipe, one round: `batch_size` prompts of 3 seed tasks -> parse -> instruction and
instance filters; at `close`, the offer to the ROUGE-L index in candidate order -> kept."""

from __future__ import annotations

from functools import partial

from pipeline.generate.parsing import parse_alpaca_reply
from pipeline.generate.prompts import PromptTask, alpaca_prompt, make_request, request_seed, sample_alpaca
from pipeline.generate.recipe import Ask, Recipe
from pipeline.run.schemas import Instance
from pipeline.teachers.base import Completion


class Alpaca(Recipe):
    method = "alpaca"
    reads_pool = False  # prompts show seed tasks only

    def opening(self) -> list[Ask]:
        cfg = self.config
        self.shown: list[list[PromptTask]] = [
            sample_alpaca(self.ctx.rng, self.ctx.seeds, cfg.prompt_count) for _ in range(cfg.batch_size)
        ]
        return [
            Ask(
                make_request(
                    alpaca_prompt(self.ctx.templates["alpaca"], tasks),
                    cfg.prompt_style,
                    cfg.decoding.alpaca,
                    request_seed(cfg.seed, self.round_no, "alpaca", i),
                    **self.held(self.ctx.formats.alpaca),
                ),
                partial(self._tasks, i),
            )
            for i, tasks in enumerate(self.shown)
        ]

    def _tasks(self, i: int, completion: Completion) -> list[Ask]:
        """Whole tasks (instruction, input, output) in one reply: every stage but the offer runs here."""
        text, finish = completion.texts[0], completion.finish_reasons[0]
        ids = [t.id for t in self.shown[i]]
        parsed = parse_alpaca_reply(text, finish, self.config.prompt_count, chat=self.chat)
        self.parse_problems(i, parsed.problems, finish, ids)
        for j, item in enumerate(parsed.items):
            cand = self.candidate(i, j, item.instruction, "length" if item.truncated else None, ids)
            if self.passes_instruction_filters(cand):
                self.keep_instances(cand, [Instance(input=item.input, output=item.output)], [])
        return []
