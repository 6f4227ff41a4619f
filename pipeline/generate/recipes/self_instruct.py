"""Self-Instruct's bootstrap (Wang et al. 2022), one round.

`batch_size` instruction prompts (6 seed + 2 pool tasks, 8 seeds while the pool is empty) -> parse
-> instruction filters -> ROUGE-L check against the index (so no instances are paid for a
duplicate) -> yes/no classification (temperature 0) -> instances (output-first for classification
tasks, input-first otherwise) -> instance filters; at `close`, the final offer to the ROUGE-L index in
candidate order (so duplicates inside the batch count) -> kept. Each reply goes on to its next stage
the moment it arrives. Follow-up requests take their seed from the candidate's key (round, reply,
item), not from how many candidates came before, so arrival order cannot change a request.
"""

from __future__ import annotations

from functools import partial

from pipeline.generate.classify import Label, parse_label
from pipeline.generate.parsing import parse_instances, parse_instruction_list
from pipeline.generate.prompts import (
    PromptTask,
    classify_prompt,
    instances_prompt,
    make_request,
    request_seed,
    sample_self_instruct,
    self_instruct_prompt,
)
from pipeline.generate.recipe import REPLY_CHARS, Ask, Candidate, Recipe
from pipeline.teachers.base import Completion


class SelfInstruct(Recipe):
    method = "self-instruct"

    def opening(self) -> list[Ask]:
        cfg = self.config
        header = self.ctx.templates["instructions_clf" if cfg.classification_seeds_only else "instructions"]
        self.shown: list[list[PromptTask]] = [
            sample_self_instruct(
                self.ctx.rng, self.ctx.seeds, self.ctx.pool, cfg.prompt_count, cfg.num_machine_instructions
            )
            for _ in range(cfg.batch_size)
        ]
        return [
            Ask(
                make_request(
                    self_instruct_prompt(header, tasks),
                    cfg.prompt_style,
                    cfg.decoding.instructions,
                    request_seed(cfg.seed, self.round_no, "instructions", i),
                    **self.held(self.ctx.formats.instructions),
                ),
                partial(self._instructions, i),
            )
            for i, tasks in enumerate(self.shown)
        ]

    def _instructions(self, i: int, completion: Completion) -> list[Ask]:
        """A list of new instructions: filter each, check its novelty, then ask whether it classifies."""
        text, finish = completion.texts[0], completion.finish_reasons[0]
        ids = [t.id for t in self.shown[i]]
        parsed = parse_instruction_list(text, chat=self.chat)
        self.parse_problems(i, parsed.problems, finish, ids)
        asks = []
        last = len(parsed.instructions) - 1
        for j, instruction in enumerate(parsed.instructions):
            # Only the last item of a reply cut by the length limit may itself be cut: the items
            # before it ended at a newline and are whole, so they carry no `length` finish.
            item_finish = None if finish == "length" and j < last else finish
            cand = self.candidate(i, j, instruction, item_finish, ids)
            if self.passes_instruction_filters(cand) and self.is_novel(cand):
                asks.append(self._classify(cand))
        return asks

    def _classify(self, cand: Candidate) -> Ask:
        cfg = self.config
        request = make_request(
            classify_prompt(self.ctx.templates["classify"], cand.instruction),
            cfg.prompt_style,
            cfg.decoding.classify,
            request_seed(cfg.seed, self.round_no, "classify", cand.key),
            **self.held(self.ctx.formats.classify),
        )
        return Ask(request, partial(self._labelled, cand))

    def _labelled(self, cand: Candidate, completion: Completion) -> list[Ask]:
        """The yes/no answer decides the instance prompt: output-first for classification tasks."""
        cand.label = parse_label(completion.texts[0])
        cfg = self.config
        clf = cand.label is Label.YES
        request = make_request(
            instances_prompt(
                self.ctx.templates["instances_clf" if clf else "instances_gen"], cand.instruction
            ),
            cfg.prompt_style,
            cfg.decoding.instances,
            request_seed(cfg.seed, self.round_no, "instances", cand.key),
            max_tokens=cfg.decoding.instances_clf_max_tokens if clf else cfg.decoding.instances.max_tokens,
            stop=[*cfg.decoding.instances.stop, f"Example {cfg.filters.max_instances + 1}"],
            **self.held(self.ctx.formats.instances(clf)),
        )
        return [Ask(request, partial(self._instances, cand))]

    def _instances(self, cand: Candidate, completion: Completion) -> list[Ask]:
        text, finish = completion.texts[0], completion.finish_reasons[0]
        parsed = parse_instances(text, finish, cand.label is Label.YES)
        self.keep_instances(
            cand, parsed.instances, parsed.problems, reply=text[:REPLY_CHARS], finish_reason=finish
        )
        return []
