"""Constrained decoding on the real engine: replies sampled under each format's grammar all parse.

The bundled model, in-process (`vllm_teacher`) and behind vLLM's own OpenAI server (`vllm_server`),
is asked a few questions of every kind with the recipe's prompts, held to the layouts of
`pipeline.generate.formats`. Every finished reply must be in its layout and parse without any `parse_*`
problem; a reply cut by `max_tokens` may lose only its last item (the truncation rule).
"""

from __future__ import annotations

import random

import pytest

from pipeline.generate.config import GenerateConfig
from pipeline.generate.formats import AlpacaList, RunFormats
from pipeline.generate.parsing import TRUNCATED
from pipeline.generate.prompts import (
    PromptTask,
    alpaca_prompt,
    classify_prompt,
    instances_prompt,
    load_templates,
    make_request,
    self_instruct_prompt,
)
from pipeline.generate.protocol import run_generation
from pipeline.run.rundir import RunDir
from pipeline.run.seeds import default_seeds_path, load_seeds
from pipeline.teachers.base import Request
from pipeline.teachers.config import TeacherConfig

pytestmark = [pytest.mark.engine, pytest.mark.slow]

TASKS = [
    "Write a short poem about the sea.",
    "Sort the numbers in ascending order.",
    "Explain how vaccines work.",
    "Translate the sentence into French.",
    "Give three tips for better sleep.",
    "Decide whether the review is positive or negative.",
    "Summarize the article in one sentence.",
    "Suggest a name for a new bakery.",
]


def requests_of_every_kind(style: str) -> list[tuple[str, object, Request]]:
    """(kind, format, request) for each reply format, in `style`, with short limits where they allow."""
    config = GenerateConfig(prompt_style=style)
    formats = RunFormats.from_config(config)
    templates = load_templates()
    dec = config.decoding
    out: list[tuple[str, object, Request]] = []
    shown = [PromptTask(str(k), t) for k, t in enumerate(TASKS)]
    for seed in range(2):
        rng = random.Random(seed)
        prompt = self_instruct_prompt(templates["instructions"], rng.sample(shown, len(shown)))
        fmt = formats.instructions
        out.append(
            (
                "instructions",
                fmt,
                make_request(
                    prompt, style, dec.instructions, seed, max_tokens=160, structured=fmt.structured()
                ),
            )
        )
    for seed, task in enumerate(["Tell whether the number is even or odd.", "Write a haiku about autumn."]):
        fmt = formats.classify
        out.append(
            (
                "classify",
                fmt,
                make_request(
                    classify_prompt(templates["classify"], task),
                    style,
                    dec.classify,
                    seed,
                    structured=fmt.structured(),
                ),
            )
        )
    for seed, (task, clf) in enumerate(
        [("Give three tips for better sleep.", False), ("Tell whether the number is even or odd.", True)]
    ):
        fmt = formats.instances(clf)
        template = templates["instances_clf" if clf else "instances_gen"]
        stop = [*dec.instances.stop, f"Example {config.filters.max_instances + 1}"]
        request = make_request(
            instances_prompt(template, task),
            style,
            dec.instances,
            seed,
            max_tokens=160,
            stop=stop,
            structured=fmt.structured(),
        )
        out.append(("instances", fmt, request))
    seeds = load_seeds(default_seeds_path())
    alpaca = GenerateConfig(method="alpaca", prompt_style=style)
    for seed in range(2):
        shown3 = [
            PromptTask(s.id, s.instruction, s.instances[0].input, s.instances[0].output)
            for s in random.Random(seed).sample(seeds, 3)
        ]
        # Two items instead of sixteen keep the test short; the layout is the recipe's otherwise.
        fmt = AlpacaList(4, 5, tuple(alpaca.decoding.alpaca.stop), style == "chat")
        request = make_request(
            alpaca_prompt(templates["alpaca"], shown3),
            style,
            alpaca.decoding.alpaca,
            seed,
            max_tokens=320,
            structured=fmt.structured(),
        )
        out.append(("alpaca", fmt, request))
    return out


def check_reply(kind: str, fmt, text: str, finish: str) -> None:
    if finish != "length":
        assert fmt.matches(text), f"{kind}: a finished reply outside its layout: {text!r}"
    parsed = fmt.parse(text, finish)
    if kind == "classify":
        assert parsed.value in ("yes", "no"), text
        return
    problems = parsed.problems
    if finish == "length":  # the truncation rule: only the last item may be lost
        assert len(problems) <= 1 and all(p.codes == (TRUNCATED,) for p in problems), (text, problems)
    else:
        assert problems == [], (text, problems)
    items = getattr(parsed, "instructions", None) or getattr(parsed, "instances", None) or parsed.items
    assert items or problems, f"{kind}: nothing in {text!r}"


@pytest.mark.parametrize("style", ["completion", "chat"])
def test_replies_sampled_under_each_grammar_parse(vllm_teacher, style):
    cases = requests_of_every_kind(style)
    replies = vllm_teacher.generate([request for _, _, request in cases])
    kinds = set()
    for (kind, fmt, _), completion in zip(cases, replies, strict=True):
        check_reply(kind, fmt, completion.texts[0], completion.finish_reasons[0])
        kinds.add(kind)
    assert kinds == {"instructions", "classify", "instances", "alpaca"}


def test_a_vllm_server_runs_constrained(vllm_server, tmp_path):
    """A whole self-instruct round through vLLM's OpenAI server: the `structured_outputs` field works."""
    config = GenerateConfig(
        batch_size=2,
        rounds=1,
        teacher=TeacherConfig(backend="openai", model="bundled", base_urls=[vllm_server], concurrency=8),
    )
    decoding = config.decoding.model_copy(deep=True)
    decoding.instructions.max_tokens = 128
    decoding.instances.max_tokens = 128
    decoding.instances_clf_max_tokens = 128
    config = config.model_copy(update={"decoding": decoding})
    warned: list[str] = []
    outcome = run_generation(config, tmp_path / "run", on_warning=warned.append)
    assert warned == []
    assert outcome.summary.constrained_decoding.applied is True
    assert (
        outcome.summary.constrained_decoding.reason == "the server honoured a structured-outputs test request"
    )
    rejections = RunDir(tmp_path / "run").read_rejections()
    parse = [r for r in rejections if any(c.startswith("parse_") for c in r.reasons)]
    assert parse == [], parse
    assert outcome.summary.totals.candidates >= 2
