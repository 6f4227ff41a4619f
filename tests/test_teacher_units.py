"""The teacher's pure parts: request validation, accounting, the retry policy, cache keys and storage."""

from __future__ import annotations

import email.utils
import random

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers import Completion, Request, SamplingParams, TeacherConfig, Usage, make_teacher
from pipeline.teachers.cache import CACHE_FILE, CompletionCache, cache_key
from pipeline.teachers.openai_compat import Replica, ReplicaPool, request_kwargs
from pipeline.teachers.retry import (
    backoff_delay,
    classify_status,
    parse_retry_after,
    retry_wait,
    shrink_max_tokens,
)

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


def test_replica_pool_prefers_the_least_loaded_and_rotates():
    pool = ReplicaPool([Replica("a", None), Replica("b", None), Replica("c", None)])
    assert [pool.pick().base_url for _ in range(4)] == ["a", "b", "c", "a"]
    pool.replicas[1].in_flight = 0
    pool.replicas[0].in_flight = 2
    pool.replicas[2].in_flight = 1
    assert pool.pick().base_url == "b"


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
