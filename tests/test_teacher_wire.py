"""The HTTP teacher's wire path (`pipeline/teachers/wire.py`): the body it sends, how it reads a reply,
and the SDK error types it raises (which the retry policy reads). End to end against misbehaving
servers: tests/test_teacher_faults.py."""

from __future__ import annotations

import json

import openai
import pytest

from pipeline.teachers.openai_compat import rejects_structured
from pipeline.teachers.retry import BadResponse, classify, is_full_refusal, is_overload
from pipeline.teachers.wire import parse_completion, request_body, status_error

URL = "http://127.0.0.1:9/v1/completions"


def test_extra_body_is_merged_into_the_top_level_as_the_sdk_sends_it():
    body = json.loads(
        request_body({"model": "m", "prompt": "p", "extra_body": {"structured_outputs": {"regex": "a"}}})
    )
    assert body == {"model": "m", "prompt": "p", "structured_outputs": {"regex": "a"}}


def test_choices_are_read_in_index_order_with_usage():
    raw = json.dumps(
        {
            "choices": [
                {"index": 1, "text": "second", "finish_reason": "length"},
                {"index": 0, "text": "first", "finish_reason": None},
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }
    ).encode()
    done = parse_completion(raw, 2, False, "m", "openai")
    assert done.texts == ["first", "second"]
    assert done.finish_reasons == ["unknown", "length"]
    assert (done.prompt_tokens, done.completion_tokens) == (3, 4)
    chat = json.dumps({"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]})
    assert parse_completion(chat.encode(), 1, True, "m", "openai").texts == ["hi"]


@pytest.mark.parametrize(
    "raw",
    [b'{"choices": [ {"text": "unterminated', b"[]", b'{"choices": []}', b'{"choices": [1]}', b'{"x": 1}'],
)
def test_an_unusable_reply_is_a_bad_response_worth_a_retry(raw):
    with pytest.raises(BadResponse) as caught:
        parse_completion(raw, 1, False, "m", "openai")
    assert classify(caught.value)[0] == "retry"


def test_a_wrong_number_of_choices_is_a_bad_response():
    raw = json.dumps({"choices": [{"index": 0, "text": "a"}]}).encode()
    with pytest.raises(BadResponse, match="asked for 2 choices, got 1"):
        parse_completion(raw, 2, False, "m", "openai")


def test_error_replies_raise_the_sdk_error_of_their_status():
    refusal = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode()
    error = status_error(429, [("Retry-After", "2")], refusal, URL)
    assert isinstance(error, openai.RateLimitError)
    assert error.message == "Error code: 429 - slow down" and error.body == {
        "message": "slow down",
        "type": "rate_limit",
    }
    assert classify(error) == ("retry", 2.0) and is_full_refusal(error) and is_overload(error)
    assert isinstance(status_error(503, [], b"busy", URL), openai.InternalServerError)
    assert classify(status_error(503, [], b"", URL))[0] == "retry"
    assert classify(status_error(401, [], b"{}", URL))[0] == "fatal"
    overflow = json.dumps(
        {"error": {"message": "This model's maximum context length is 2048 tokens"}}
    ).encode()
    assert classify(status_error(400, [], overflow, URL))[0] == "shrink"


def test_an_unknown_structured_field_is_recognised_as_refused():
    unknown = json.dumps(
        {"error": {"message": "Unrecognized request argument supplied: structured_outputs"}}
    ).encode()
    assert rejects_structured(status_error(400, [], unknown, URL))
    other = json.dumps({"error": {"message": "temperature must be >= 0"}}).encode()
    assert not rejects_structured(status_error(400, [], other, URL))
