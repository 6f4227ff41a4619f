"""The in-process vLLM teacher on the bundled model, for real: one engine shared by the session."""

from __future__ import annotations

import json

import pytest

from pipeline.teachers import CachedTeacher, Request, RequestQueue, SamplingParams, TeacherError

pytestmark = pytest.mark.engine

CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def engine_requests_added(teacher) -> int:
    """How many requests vLLM's engine has been given so far (its own request-id counter)."""
    return teacher.llm.request_counter.counter


def test_greedy_chat_knows_the_capital_of_france(vllm_teacher):
    """Catches a wrong-answering engine (compiled bf16 on CPU answered French nonsense)."""
    request = Request(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        params=SamplingParams(temperature=0.0, max_tokens=32),
    )
    [out] = vllm_teacher.generate([request])
    assert "Paris" in out.texts[0]
    assert out.finish_reasons == ["stop"]
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 32
    assert (out.backend, out.model, out.cached) == ("vllm", "smollm2-135m-instruct", False)


def test_mixed_batch_goes_to_the_engine_once_and_comes_back_in_order(vllm_teacher):
    greedy = SamplingParams(temperature=0.0, max_tokens=24)
    requests = [
        Request(prompt="The first three letters of the alphabet are", params=greedy),
        Request(messages=[{"role": "user", "content": "Name a color."}], params=greedy),
        Request(prompt="1, 2, 3, 4,", params=greedy),
        Request(messages=[{"role": "user", "content": "What is the capital of France?"}], params=greedy),
    ]
    before = engine_requests_added(vllm_teacher)
    usage_before = vllm_teacher.usage.copy()
    done: list[int] = []
    out = vllm_teacher.generate(requests, on_done=done.append)
    assert engine_requests_added(vllm_teacher) - before == 4
    assert sum(done) == 4
    assert "Paris" in out[3].texts[0]
    assert out[2].texts[0].strip().startswith("5")
    # Each answer is the one its own request gets when sent alone.
    [alone] = vllm_teacher.generate([requests[1]])
    assert alone.texts == out[1].texts
    spent = vllm_teacher.usage.since(usage_before)
    assert spent.requests == 5 and spent.completion_tokens == sum(c.completion_tokens for c in [*out, alone])


def test_n_samples_with_a_seed_are_reproducible(vllm_teacher):
    params = SamplingParams(temperature=1.0, max_tokens=16, n=3, seed=1234)
    request = Request(prompt="Write a short sentence about the sea:", params=params)
    first, second = vllm_teacher.generate([request, request])
    assert len(first.texts) == 3 and len(first.finish_reasons) == 3
    assert len(set(first.texts)) > 1
    assert first.texts == second.texts
    assert first.completion_tokens >= 3  # summed over the three samples
    other_seed = Request(prompt=request.prompt, params=params.model_copy(update={"seed": 99}))
    [third] = vllm_teacher.generate([other_seed])
    assert third.texts != first.texts


def test_stop_sequences_end_the_text(vllm_teacher):
    request = Request(
        prompt="1, 2, 3, 4,", params=SamplingParams(temperature=0.0, max_tokens=40, stop=[" 7"])
    )
    [out] = vllm_teacher.generate([request])
    assert out.finish_reasons == ["stop"]
    assert " 7" not in out.texts[0] and "6" in out.texts[0]


def test_json_schema_yields_json_matching_the_schema(vllm_teacher):
    request = Request(
        messages=[{"role": "user", "content": "Give the largest city of Japan and its population as JSON."}],
        params=SamplingParams(temperature=0.0, max_tokens=80, json_schema=CITY_SCHEMA),
    )
    [out] = vllm_teacher.generate([request])
    value = json.loads(out.texts[0])
    assert set(value) == {"city", "population"}
    assert isinstance(value["city"], str) and isinstance(value["population"], int)


def test_second_identical_run_makes_no_engine_calls(vllm_teacher, tmp_path):
    requests = [
        Request(
            prompt=f"Write one sentence about the number {i}.", params=SamplingParams(max_tokens=12, seed=i)
        )
        for i in range(6)
    ]
    before = engine_requests_added(vllm_teacher)
    first = CachedTeacher(vllm_teacher, tmp_path).generate(requests)
    assert engine_requests_added(vllm_teacher) - before == 6
    cached = CachedTeacher(vllm_teacher, tmp_path)
    usage_before = cached.usage.copy()
    second = cached.generate(requests)
    assert engine_requests_added(vllm_teacher) - before == 6
    assert [c.texts for c in second] == [c.texts for c in first]
    assert all(c.cached for c in second)
    spent = cached.usage.since(usage_before)
    assert (spent.requests, spent.cache_hits, spent.completion_tokens) == (6, 6, 0)


def test_a_rejected_request_is_a_clear_error_and_the_engine_stays_usable(vllm_teacher):
    ok = Request(prompt="1, 2, 3,", params=SamplingParams(temperature=0.0, max_tokens=4))
    too_long = Request(prompt="word " * 6000, params=SamplingParams(max_tokens=4))
    with pytest.raises(TeacherError, match="maximum context length"):
        vllm_teacher.generate([ok, too_long])
    assert not vllm_teacher.llm.llm_engine.has_unfinished_requests()
    [out] = vllm_teacher.generate([ok])
    assert out.texts[0].strip().startswith("4")


def test_requests_added_while_the_engine_runs_join_the_running_batch(vllm_teacher):
    greedy = SamplingParams(temperature=0.0, max_tokens=16)
    queue = RequestQueue(
        [Request(prompt="1, 2, 3, 4,", params=greedy), Request(prompt="Monday, Tuesday,", params=greedy)]
    )
    follow_ups = {0: "a, b, c, d,", 1: "red, orange, yellow,"}
    asked: dict[int, str] = {}
    got: dict[int, list[str]] = {}
    busy_before = vllm_teacher.engine_busy_s

    def deliver(batch):
        for index, completion in batch:
            got[index] = completion.texts
            if index in follow_ups:
                [new] = queue.add([Request(prompt=follow_ups[index], params=greedy)])
                asked[new] = follow_ups[index]

    vllm_teacher.answer(queue, deliver)
    assert sorted(got) == [0, 1, 2, 3] and sorted(asked) == [2, 3]
    assert vllm_teacher.engine_busy_s > busy_before
    # Each follow-up's answer is the one it gets when sent on its own.
    for index, text in asked.items():
        [alone] = vllm_teacher.generate([Request(prompt=text, params=greedy)])
        assert alone.texts == got[index]


def test_a_cancelled_request_leaves_the_engine_and_is_never_delivered(vllm_teacher, tmp_path):
    """Cancelled from `deliver` while it runs (long, 400 tokens) and before it is sent: neither is
    delivered, the call returns, the engine holds nothing afterwards, and through the cache too."""
    short = SamplingParams(temperature=0.0, max_tokens=4)
    long = SamplingParams(temperature=0.8, max_tokens=400, seed=3)
    for teacher in (vllm_teacher, CachedTeacher(vllm_teacher, tmp_path / "cache")):
        queue = RequestQueue(
            [Request(prompt="1, 2, 3,", params=short), Request(prompt="Once upon a time", params=long)]
        )
        got: dict[int, int] = {}

        def deliver(batch, queue=queue, got=got):
            for index, completion in batch:
                got[index] = completion.completion_tokens
                if index == 0:
                    [late] = queue.add([Request(prompt="Never sent:", params=short)])
                    queue.cancel([1, late])

        teacher.answer(queue, deliver)
        assert sorted(got) == [0] and teacher.cancels
        assert not vllm_teacher.llm.llm_engine.has_unfinished_requests()
