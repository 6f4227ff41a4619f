"""The openai backend against vLLM's real OpenAI-compatible server (one per session, on 127.0.0.1)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from pipeline.teachers import Request, SamplingParams, TeacherConfig, make_teacher

pytestmark = pytest.mark.engine


def served_requests(base_url: str) -> float:
    """Requests the server has finished so far, from its Prometheus metrics."""
    root = base_url.rsplit("/v1", 1)[0]
    text = urllib.request.urlopen(f"{root}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


def wait_for_count(base_url: str, at_least: float, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while (count := served_requests(base_url)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def teacher_for(url: str, **overrides):
    return make_teacher(
        TeacherConfig(backend="openai", model="bundled", base_urls=[url], cache=False, **overrides)
    )


def test_completion_and_chat_through_the_real_server(vllm_server):
    teacher = teacher_for(vllm_server)
    greedy = SamplingParams(temperature=0.0, max_tokens=32)
    chat, text = teacher.generate(
        [
            Request(messages=[{"role": "user", "content": "What is the capital of France?"}], params=greedy),
            Request(prompt="1, 2, 3, 4,", params=greedy.model_copy(update={"stop": [" 7"]})),
        ]
    )
    assert "Paris" in chat.texts[0] and chat.finish_reasons == ["stop"]
    assert chat.prompt_tokens > 5 and chat.completion_tokens > 0
    assert text.finish_reasons == ["stop"] and " 7" not in text.texts[0] and "6" in text.texts[0]
    assert (chat.backend, chat.model) == ("openai", "smollm2-135m-instruct")


def test_n_and_json_schema_through_the_real_server(vllm_server):
    teacher = teacher_for(vllm_server)
    schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    sampled, structured = teacher.generate(
        [
            Request(
                prompt="A short poem:", params=SamplingParams(temperature=1.0, max_tokens=12, n=3, seed=7)
            ),
            Request(
                messages=[{"role": "user", "content": "Name a color, as JSON."}],
                params=SamplingParams(temperature=0.0, max_tokens=40, json_schema=schema),
            ),
        ]
    )
    assert len(sampled.texts) == 3
    assert isinstance(json.loads(structured.texts[0])["color"], str)


def test_several_base_urls_reach_the_same_server(vllm_server):
    port = vllm_server.split(":")[2].split("/")[0]
    other = f"http://127.0.0.1:{port}/v1/"  # the same replica under a second spelling
    teacher = make_teacher(
        TeacherConfig(backend="openai", model="bundled", base_urls=[vllm_server, other], cache=False)
    )
    out = teacher.generate(
        [
            Request(prompt=f"Count to {i}:", params=SamplingParams(temperature=0.0, max_tokens=8))
            for i in range(6)
        ]
    )
    assert len(out) == 6 and all(c.texts[0] for c in out)
    counts = teacher.usage.replicas
    assert set(counts) == {vllm_server, other} and all(
        c.requests > 0 and c.failures == 0 for c in counts.values()
    )


def test_the_real_servers_context_refusals_are_understood(vllm_server):
    """max_tokens above the context is fitted from vLLM's own message in one retry; a prompt that alone
    fills the context fails at once with a clear error (the session server has a 4096-token context)."""
    from pipeline.teachers import TeacherError

    teacher = teacher_for(vllm_server, max_retries=2)
    greedy = SamplingParams(temperature=0.0, max_tokens=5000, stop=["\n"])
    [out] = teacher.generate([Request(prompt="The capital of France is", params=greedy)])
    assert out.texts[0] and teacher.usage.retries == 1
    long_prompt = "word " * 5000
    with pytest.raises(TeacherError, match="longer than the model's context"):
        teacher.generate([Request(prompt=long_prompt, params=SamplingParams(max_tokens=16))])
    assert teacher.usage.retries == 1


def test_second_identical_run_sends_nothing_to_the_server(vllm_server, tmp_path):
    requests = [
        Request(prompt=f"Say something about {w}.", params=SamplingParams(max_tokens=10, seed=3))
        for w in ("tea", "rain", "maps")
    ]
    config = TeacherConfig(backend="openai", model="bundled", base_urls=[vllm_server], cache=True)
    start = served_requests(vllm_server)
    first = make_teacher(config, cache_dir=tmp_path).generate(requests)
    after_first = wait_for_count(vllm_server, start + 3)
    assert after_first == start + 3
    second = make_teacher(config, cache_dir=tmp_path).generate(requests)
    time.sleep(1.0)
    assert served_requests(vllm_server) == after_first
    assert [c.texts for c in second] == [c.texts for c in first] and all(c.cached for c in second)
