"""The teacher's pure parts: request validation, accounting, the retry policy, cache keys and storage."""

from __future__ import annotations

import email.utils
import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers import Completion, Request, SamplingParams, TeacherConfig, Usage, make_teacher
from pipeline.teachers.cache import CACHE_FILE, CompletionCache, cache_key
from pipeline.teachers.openai_compat import request_kwargs
from pipeline.teachers.replicas import ReplicaRouter
from pipeline.teachers.retry import (
    ContextOverflow,
    backoff_delay,
    classify_status,
    fitted_max_tokens,
    parse_context_overflow,
    parse_retry_after,
    retry_wait,
    shrink_max_tokens,
)
from pipeline.teachers.usage import ReplicaCounts

IDENTITY = TeacherIdentity(backend="vllm", model="m", fingerprint="abc")


def completion(text: str = "x", cached: bool = False) -> Completion:
    return Completion(
        texts=[text],
        finish_reasons=["stop"],
        prompt_tokens=10,
        completion_tokens=4,
        backend="vllm",
        model="m",
        cached=cached,
    )


def test_request_needs_exactly_one_input():
    with pytest.raises(ValidationError, match="exactly one"):
        Request()
    with pytest.raises(ValidationError, match="exactly one"):
        Request(prompt="a", messages=[{"role": "user", "content": "b"}])
    assert Request(messages=[{"role": "user", "content": "b"}]).is_chat


def test_sampling_params_reject_nonsense():
    with pytest.raises(ValidationError):
        SamplingParams(n=0)
    with pytest.raises(ValidationError):
        SamplingParams(max_tokens=0)
    with pytest.raises(ValidationError, match="extra"):
        SamplingParams(guided_json={})


def test_teacher_config_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="extra"):
        TeacherConfig(backend="vllm", modle="x")
    with pytest.raises(ValidationError):
        TeacherConfig(backend="llama")


def test_usage_counts_calls_hits_tokens_and_cost():
    usage = Usage(price_per_1k_prompt_tokens=1.0, price_per_1k_completion_tokens=2.0)
    usage.record(completion())
    before = usage.copy()
    usage.record(completion(cached=True))
    usage.record(completion())
    usage.seconds = 2.0
    assert (usage.requests, usage.cache_hits, usage.calls) == (3, 1, 2)
    assert (usage.prompt_tokens, usage.completion_tokens) == (20, 8)
    assert usage.tokens_per_s == 4.0
    assert usage.cost == pytest.approx(20 / 1000 + 2 * 8 / 1000)
    delta = usage.since(before)
    assert (delta.requests, delta.cache_hits, delta.prompt_tokens) == (2, 1, 10)
    assert set(usage.as_dict()) >= {
        "requests",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "seconds",
        "tokens_per_s",
    }
    assert Usage().cost is None and Usage().tokens_per_s == 0.0
    assert "replicas" not in usage.as_dict()


def test_usage_keeps_per_replica_counts_per_round():
    usage = Usage(replicas={"http://a/v1": ReplicaCounts(3, 1)})
    before = usage.copy()
    usage.replicas = {"http://a/v1": ReplicaCounts(10, 2, 12), "http://b/v1": ReplicaCounts(4, 0, 5)}
    assert before.replicas == {"http://a/v1": ReplicaCounts(3, 1)}
    # Attempts and failures per round; the concurrency limit as it stands at the end of the round.
    assert usage.since(before).as_dict()["replicas"] == {
        "http://a/v1": {"requests": 7, "failures": 1, "concurrency": 12},
        "http://b/v1": {"requests": 4, "failures": 0, "concurrency": 5},
    }


def test_summary_rounds_and_totals_keep_the_per_replica_counts():
    from pipeline.run.summary import ReplicaUsage, RoundRow, Totals

    def row(n: int, usage: Usage) -> RoundRow:
        extra = {"candidates": 1, "kept": 1, "rejected": {}, "rejected_by_stage": {}, "classification": {}}
        return RoundRow.model_validate({"round": n, **usage.as_dict(), **extra, "wall_s": 1.0})

    first = row(1, Usage(replicas={"a": ReplicaCounts(5, 2)}))
    second = row(2, Usage(replicas={"a": ReplicaCounts(1, 0), "b": ReplicaCounts(6, 0)}))
    assert first.replicas == {"a": ReplicaUsage(requests=5, failures=2)}
    assert Totals.of([first, second]).replicas == {
        "a": ReplicaUsage(requests=6, failures=2),
        "b": ReplicaUsage(requests=6, failures=0),
    }
    assert first.model_dump(mode="json")["replicas"] == {
        "a": {"requests": 5, "failures": 2, "concurrency": 0}
    }
    assert "replicas" not in row(3, Usage()).model_dump(mode="json")  # in-process teachers: keys unchanged


def test_backoff_grows_with_jitter_and_a_ceiling():
    rng = random.Random(0)
    delays = [backoff_delay(a, 0.5, 8.0, rng) for a in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert retry_wait(0, 0.5, 8.0, retry_after=3.0, rng=rng) >= 3.0
    assert retry_wait(0, 0.5, 8.0, retry_after=10_000, rng=rng) == 300.0


def test_retry_after_forms():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_status_classification():
    assert classify_status(500, "") == "retry"
    assert classify_status(429, "") == "retry"
    assert classify_status(400, "This model's maximum context length is 2048 tokens") == "shrink"
    assert classify_status(400, "bad field") == "fatal"
    assert classify_status(401, "") == "fatal"
    assert shrink_max_tokens(100) == 80 and shrink_max_tokens(1) == 1


def test_cache_key_covers_what_decides_an_answer():
    base = Request(prompt="p", params=SamplingParams(seed=1))
    key = cache_key(IDENTITY, base)
    assert key == cache_key(IDENTITY, Request(prompt="p", params=SamplingParams(seed=1)))
    assert key != cache_key(IDENTITY, Request(prompt="p", params=SamplingParams(seed=2)))
    assert key != cache_key(IDENTITY, Request(prompt="q", params=SamplingParams(seed=1)))
    assert key != cache_key(
        IDENTITY, Request(messages=[{"role": "user", "content": "p"}], params=SamplingParams(seed=1))
    )
    assert key != cache_key(IDENTITY.model_copy(update={"fingerprint": "def"}), base)
    assert key != cache_key(IDENTITY.model_copy(update={"backend": "openai"}), base)
    schema_a = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    schema_b = {"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "type": "object"}
    assert cache_key(IDENTITY, Request(prompt="p", params=SamplingParams(json_schema=schema_a))) == cache_key(
        IDENTITY, Request(prompt="p", params=SamplingParams(json_schema=schema_b))
    )


def test_cache_survives_a_torn_tail(tmp_path):
    cache = CompletionCache(tmp_path)
    cache.put_many([("k1", completion("one")), ("k2", completion("two"))])
    with (tmp_path / CACHE_FILE).open("a") as handle:
        handle.write('{"key": "k3", "completion": {"texts": ["thr')  # a kill mid-write
    reopened = CompletionCache(tmp_path)
    assert len(reopened) == 2
    hit = reopened.get("k2")
    assert hit is not None and hit.texts == ["two"] and hit.cached
    assert reopened.get("k3") is None and reopened.get("k1", occurrence=1) is None
    reopened.put_many([("k3", completion("three"))])
    assert CompletionCache(tmp_path).get("k3").texts == ["three"]


def test_cache_puts_from_many_threads_are_all_durable_and_whole(tmp_path):
    cache = CompletionCache(tmp_path)
    with cache.writing(), ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: cache.put_many([(f"k{k}", completion(f"answer {k}"))]), range(300)))
    lines = (tmp_path / CACHE_FILE).read_text().splitlines()
    assert len(lines) == 300 and all(json.loads(line)["key"].startswith("k") for line in lines)
    reopened = CompletionCache(tmp_path)
    assert [reopened.get(f"k{k}").texts for k in range(300)] == [[f"answer {k}"] for k in range(300)]


def router(*urls: str) -> ReplicaRouter:
    return ReplicaRouter(urls or ("a", "b", "c"), bench_base_s=1.0, bench_max_s=8.0)


def test_router_prefers_the_least_loaded_and_rotates():
    pool = router()
    assert [pool.route(0.0).replica.url for _ in range(4)] == ["a", "b", "c", "a"]
    a, b, c = pool.replicas
    a.in_flight, b.in_flight, c.in_flight = 2, 0, 1
    assert pool.route(0.0) == pool.route(0.0) and pool.route(0.0).replica is b
    assert pool.route(0.0, avoid="b").replica is c


def test_a_failing_replica_is_benched_and_probed_one_request_at_a_time():
    pool = router("dead", "live")
    dead, live = pool.replicas
    pool.sent(dead)
    pool.failed(dead, now=10.0)
    # Benched for the base period: everything goes to the live replica, however busy it is.
    live.in_flight = 50
    assert dead.benched(10.5) and pool.route(10.5).replica is live
    # Back after the bench, on probation: one probe request, and the others keep going elsewhere.
    probe = pool.route(11.0)
    assert probe.replica is dead and probe.wait_s == 0.0
    pool.sent(dead)
    assert pool.route(11.0).replica is live
    # The probe fails too: the bench doubles (2 s), then 4 s, capped at 8 s.
    pool.failed(dead, now=11.2)
    assert dead.benched_until == 13.2
    for now, length in [(13.3, 4.0), (17.4, 8.0), (25.5, 8.0)]:
        pool.sent(dead)
        pool.failed(dead, now=now)
        assert dead.benched_until == now + length
    # An answer clears it at once: full member again, and the next failure starts from the base.
    pool.sent(dead)
    pool.answered(dead)
    assert dead.streak == 0 and not dead.benched(40.0)
    live.in_flight = 1
    assert pool.route(40.0).replica is dead
    pool.sent(dead)
    pool.failed(dead, now=40.0)
    assert dead.benched_until == 41.0
    assert pool.counts() == {"dead": ReplicaCounts(7, 6), "live": ReplicaCounts(0, 0)}


def test_failures_of_requests_already_open_do_not_lengthen_the_bench():
    pool = router("x", "y")
    x = pool.replicas[0]
    for _ in range(64):
        pool.sent(x)
    for k in range(64):  # a replica dies under 64 open requests: one event, not 64
        pool.failed(x, now=5.0 + k / 1000)
    assert x.streak == 1 and x.benched_until == 6.0 and x.failures == 64 and x.in_flight == 0


def test_retry_after_holds_the_bench_and_a_retry_avoids_the_replica_that_failed_it():
    pool = router("x", "y")
    x, y = pool.replicas
    pool.sent(x)
    pool.failed(x, now=0.0, retry_after=30.0)
    assert x.benched_until == 30.0
    assert pool.route(1.0, avoid="x").replica is y
    # Only the avoided replica is free: it is still used rather than nothing.
    pool.sent(y)
    pool.failed(y, now=1.0)
    assert pool.route(31.0, avoid="x").replica is y
    pool.sent(y)  # y probing with its probe out: x, also free, takes the next even though avoided
    assert pool.route(31.0, avoid="x").replica is x


def test_when_every_replica_is_benched_wait_for_the_first_back():
    pool = router("x", "y")
    x, y = pool.replicas
    for replica, now in [(x, 0.0), (y, 0.5)]:
        pool.sent(replica)
        pool.failed(replica, now=now)
    route = pool.route(0.75)
    assert route.replica is x and route.wait_s == 0.25
    assert pool.route(0.75, avoid="x").replica is x  # y comes back later still
    single = router("only")
    only = single.replicas[0]
    single.sent(only)
    single.failed(only, now=0.0)
    assert single.route(0.0) == single.route(0.0, avoid="only")
    assert single.route(0.4).wait_s == pytest.approx(0.6)


def test_router_needs_a_url_and_counts_a_repeated_one_once():
    with pytest.raises(ValueError):
        ReplicaRouter([], bench_base_s=1.0, bench_max_s=2.0)
    assert [r.url for r in ReplicaRouter(["a", "b", "a"], bench_base_s=1.0, bench_max_s=2.0).replicas] == [
        "a",
        "b",
    ]


# Context-length refusals, word for word as servers send them (numbers are the only thing that varies).
OVERFLOWS = {
    # OpenAI, and vLLM's serving engine before 0.10.1: the limit, then prompt and completion.
    "openai-classic": (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        "(1000 in the messages, 4000 in the completion). Please reduce the length of the messages or completion.",
        ContextOverflow(4096, 1000),
    ),
    # vLLM's serving engine 0.10.1 to about 0.13 (VLLMValidationError appends its parameter).
    "vllm-max-tokens-too-large": (
        "'max_tokens' or 'max_completion_tokens' is too large: 4000. This model's maximum context length "
        "is 4096 tokens and your request has 1000 input tokens (4000 > 4096 - 1000). "
        "(parameter=max_tokens, value=4000)",
        ContextOverflow(4096, 1000),
    ),
    # vLLM's renderer: tokenization stops at max_input + 1, so the count is a floor.
    "vllm-renderer-at-least": (
        "This model's maximum context length is 4096 tokens. However, you requested 4000 output tokens and "
        "your prompt contains at least 97 input tokens, for a total of at least 4097 tokens. Please reduce "
        "the length of the input prompt or the number of requested output tokens. "
        "(parameter=input_tokens, value=97)",
        ContextOverflow(4096, 97, at_least=True),
    ),
    "vllm-renderer-you-passed": (
        "You passed 97 input tokens and requested 4000 output tokens. However, the model's context length is "
        "only 4096 tokens, resulting in a maximum input length of 96 tokens. Please reduce the length of the "
        "input prompt. (parameter=input_tokens, value=97)",
        ContextOverflow(4096, 97),
    ),
    # vLLM 0.32 (the installed release): max_tokens above the whole context.
    "vllm-max-tokens-above-max-model-len": (
        "max_tokens=5000 cannot be greater than max_model_len=4096. Please request fewer output tokens. "
        "(parameter=max_tokens, value=5000)",
        ContextOverflow(4096, None),
    ),
    # The prompt alone is too long: no max_tokens can help.
    "vllm-0.32-prompt-alone": (
        "This model's maximum context length is 4096 tokens. However, your prompt contains at least 4097 "
        "input tokens, which exceeds this limit even without any output tokens. Please reduce the length of "
        "the input prompt. (parameter=input_tokens, value=4097)",
        ContextOverflow(4096, 4097, at_least=True),
    ),
    "vllm-serving-prompt-alone": (
        "This model's maximum context length is 4096 tokens. However, your request has 5000 input tokens. "
        "Please reduce the length of the input messages.",
        ContextOverflow(4096, 5000),
    ),
    "vllm-legacy-prompt-alone": (
        "This model's maximum context length is 32768 tokens. However, you requested 32818 tokens in the "
        "messages, Please reduce the length of the messages.",
        ContextOverflow(32768, 32818),
    ),
    "vllm-input-length": (
        "Input length (5000) exceeds model's maximum context length (4096).",
        ContextOverflow(4096, 5000),
    ),
    "openai-messages-resulted-in": (
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. "
        "Please reduce the length of the messages.",
        ContextOverflow(8192, 9000),
    ),
    "no-numbers": (
        '{"error": {"code": "context_length_exceeded", "message": "Input too long for this model."}}',
        ContextOverflow(None, None),
    ),
}


@pytest.mark.parametrize("name", list(OVERFLOWS))
def test_context_overflow_messages_parse(name):
    message, expected = OVERFLOWS[name]
    assert classify_status(400, message) == "shrink"
    assert parse_context_overflow(message) == expected


@pytest.mark.parametrize(
    ("name", "max_tokens", "fitted"),
    [
        ("openai-classic", 4000, 4096 - 1000 - 8),
        ("vllm-max-tokens-too-large", 4000, 3088),
        ("vllm-renderer-at-least", 4000, 3200),  # only a floor: shrink too (x0.8), converging fast
        ("vllm-renderer-you-passed", 4000, 3200),  # 97 = 4096 - 4000 + 1 is where vLLM stops counting
        ("vllm-max-tokens-above-max-model-len", 5000, 4000),
        ("vllm-max-tokens-above-max-model-len", 100_000, 4096 - 8),
        ("vllm-0.32-prompt-alone", 100, None),
        ("vllm-serving-prompt-alone", 100, None),
        ("vllm-legacy-prompt-alone", 100, None),
        ("vllm-input-length", 100, None),
        ("openai-messages-resulted-in", 100, None),
        ("no-numbers", 100, 80),
    ],
)
def test_max_tokens_fitted_from_the_message(name, max_tokens, fitted):
    assert fitted_max_tokens(max_tokens, parse_context_overflow(OVERFLOWS[name][0])) == fitted


def test_fitting_always_asks_for_less_and_leaves_a_margin_only_where_there_is_room():
    assert fitted_max_tokens(100, ContextOverflow(4096, 4000)) == 88
    assert fitted_max_tokens(100, ContextOverflow(4096, 4090)) == 6  # too little room for a margin
    assert fitted_max_tokens(100, ContextOverflow(4096, 3000)) == 99  # a count above the request: less
    assert fitted_max_tokens(1, ContextOverflow(None, None)) == 1


def test_request_kwargs_map_every_parameter():
    schema = {"type": "object"}
    params = SamplingParams(
        temperature=0.3, top_p=0.9, max_tokens=9, stop=["\n\n"], n=2, seed=5, json_schema=schema
    )
    chat = request_kwargs(Request(messages=[{"role": "user", "content": "x"}], params=params), "m", 7)
    assert chat["max_tokens"] == 7 and chat["stop"] == ["\n\n"] and chat["seed"] == 5 and chat["n"] == 2
    assert chat["response_format"]["json_schema"]["schema"] == schema
    text = request_kwargs(Request(prompt="x", params=params), "m", 9)
    assert text["prompt"] == "x" and text["extra_body"]["response_format"]["type"] == "json_schema"
    assert "seed" not in request_kwargs(Request(prompt="x"), "m", 9)


def test_openai_backend_needs_a_base_url():
    with pytest.raises(UserError, match="base_urls"):
        make_teacher(TeacherConfig(backend="openai"))


def test_serve_rejects_bad_arguments():
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "--port" in result.output
