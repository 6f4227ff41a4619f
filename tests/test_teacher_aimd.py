"""The AIMD concurrency limit alone: slow start, additive increase, one decrease per overload event."""

from __future__ import annotations

import pytest

from pipeline.teachers.aimd import START, ConcurrencyLimit


def test_slow_start_grows_by_one_per_answer_while_the_limit_is_used():
    limit = ConcurrencyLimit(maximum=64)
    assert limit.current == START
    for _ in range(10):
        limit.answered(in_flight=limit.current)
    assert limit.current == START + 10


def test_an_idle_replica_does_not_grow():
    limit = ConcurrencyLimit(maximum=64, limit=20)
    for _ in range(50):
        limit.answered(in_flight=3)  # far below half of 20: no evidence about 21
    assert limit.current == 20


def test_never_beyond_the_configured_maximum_nor_below_one():
    limit = ConcurrencyLimit(maximum=6)
    for _ in range(100):
        limit.answered(in_flight=limit.current)
    assert limit.current == 6
    for epoch in range(30):
        limit.overloaded(epoch)
    assert limit.current == 1 and limit.limit >= 1.0


def test_overload_decreases_multiplicatively_once_per_event():
    limit = ConcurrencyLimit(maximum=64, limit=40, slow_start=False)
    sent = limit.epoch
    assert limit.overloaded(sent)
    assert limit.current == 28  # 40 x 0.7
    # The other requests that were open at the same moment fail too: no further decrease.
    for _ in range(10):
        assert not limit.overloaded(sent)
    assert limit.current == 28 and limit.decreases == 1
    # A request sent after the decrease that is refused again is news: decrease again.
    assert limit.overloaded(limit.epoch)
    assert limit.current == 19


def test_after_the_first_overload_growth_is_one_per_window():
    limit = ConcurrencyLimit(maximum=64, limit=10)
    limit.overloaded(limit.epoch)  # 10 -> 7, slow start over
    assert limit.current == 7 and not limit.slow_start
    for _ in range(7):  # one window of answers at 7
        limit.answered(in_flight=7)
    assert 7.9 < limit.limit < 8.0  # 7 answers of 1/7 (a little less as it grows): about one
    for _ in range(8 * 3):
        limit.answered(in_flight=limit.current)
    assert 9 <= limit.current <= 11  # about one per window, not one per answer


def test_fixed_limit_starts_at_the_maximum():
    limit = ConcurrencyLimit.fixed(16)
    assert limit.current == 16
    limit.overloaded(limit.epoch)
    assert limit.current == 11


@pytest.mark.parametrize(
    "bad", [{"maximum": 0}, {"maximum": 4, "backoff": 1.0}, {"maximum": 4, "backoff": 0}]
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ConcurrencyLimit(**bad)


def test_a_sawtooth_under_a_hard_capacity_stays_near_it():
    """A server that refuses anything above 10 open requests: the limit oscillates just under 10."""
    capacity = 10
    limit = ConcurrencyLimit(maximum=64)
    seen = []
    for _ in range(2000):
        if limit.current > capacity:
            limit.overloaded(limit.epoch)
        else:
            limit.answered(in_flight=limit.current)
        seen.append(limit.current)
    tail = seen[-500:]
    assert max(tail) <= capacity + 1
    assert min(tail) >= int(capacity * 0.7)
    assert capacity * 0.75 <= sum(tail) / len(tail) <= capacity + 1
