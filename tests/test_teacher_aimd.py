"""Adaptive concurrency per replica: the AIMD limit alone, in the router, and our openai client against
simulated replicas that refuse (429) beyond their capacity or crash mid-run and come back."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline.teachers import Request, SamplingParams, TeacherConfig
from pipeline.teachers.aimd import START, ConcurrencyLimit
from pipeline.teachers.openai_compat import OpenAITeacher
from pipeline.teachers.replicas import ReplicaRouter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fake_replica import FakeReplica  # noqa: E402  (bench/fake_replica.py: the simulated replica)


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


# --- the router with per-replica limits --------------------------------------------------------------


def limited(*urls: str, maximum: int = 8, adaptive: bool = True) -> ReplicaRouter:
    return ReplicaRouter(urls, bench_base_s=1.0, bench_max_s=8.0, max_concurrency=maximum, adaptive=adaptive)


def test_a_replica_at_its_limit_takes_no_more_and_a_full_pool_says_wait():
    pool = limited("a", "b", maximum=2, adaptive=False)
    a, b = pool.replicas
    for _ in range(4):
        pool.sent(pool.route(0.0).replica)
    assert (a.in_flight, b.in_flight) == (2, 2)
    assert pool.route(0.0).replica is None and pool.route(0.0).wait_s == 0.0
    pool.answered(b)
    assert pool.route(0.0).replica is b


def test_a_full_refusal_shrinks_the_limit_without_benching():
    pool = limited("a", maximum=16, adaptive=False)
    (a,) = pool.replicas
    epochs = [pool.sent(a) for _ in range(16)]
    for epoch in epochs[:5]:  # five refused at once: one overload event
        pool.refused(a, epoch)
    assert a.limit.current == 11 and not a.benched(0.0) and a.failures == 5
    assert pool.counts()["a"].concurrency == 11


def test_a_503_benches_and_shrinks_a_timeout_too_but_a_500_only_benches():
    pool = limited("a", "b", maximum=10, adaptive=False)
    a, b = pool.replicas
    pool.failed(a, now=0.0, overload_epoch=pool.sent(a))
    assert a.benched(0.5) and a.limit.current == 7
    pool.sent(b)
    pool.failed(b, now=0.0)  # a plain server error: benched, but no sign of overload
    assert b.benched(0.5) and b.limit.current == 10


def test_healthy_answers_grow_the_limit_of_a_busy_replica():
    pool = limited("a", maximum=64)
    (a,) = pool.replicas
    start = a.limit.current
    for _ in range(start):
        pool.sent(a)
    for _ in range(start):
        pool.answered(a)
    assert a.limit.current > start


# --- our openai client against a server that refuses beyond its capacity ----------------------------


def refusing_teacher(*replicas: FakeReplica, concurrency: int = 32) -> OpenAITeacher:
    return OpenAITeacher(
        TeacherConfig(
            backend="openai",
            model="fake-model",
            base_urls=[r.base_url for r in replicas],
            concurrency=concurrency,
            max_retries=10,
            retry_base_s=0.01,
            retry_max_s=0.05,
            timeout_s=10.0,
            cache=False,
        )
    )


def requests_for(count: int) -> list[Request]:
    return [Request(prompt=f"prompt {i}", params=SamplingParams(max_tokens=8, seed=i)) for i in range(count)]


def test_aimd_converges_near_a_servers_capacity_and_the_run_finishes():
    # 100 ms per request: long against the client's own time per request, so the limit it finds is
    # the server's (the client counts a request open a little longer than the server works on it).
    server = FakeReplica(capacity=6, service_s=0.1, overflow="refuse").start()
    try:
        teacher = refusing_teacher(server)
        out = teacher.generate(requests_for(300))
    finally:
        server.stop()
    assert [c.texts for c in out] == [[f"answer to: prompt {i}"] for i in range(300)]
    assert server.stats.answered == Counter(f"prompt {i}" for i in range(300))  # each once
    assert server.stats.peak_concurrency <= 6
    counts = teacher.usage.replicas[server.base_url]
    # It found the limit (some refusals) and settled just under it, not at the configured 32.
    assert server.stats.refused >= 1 and counts.failures == server.stats.refused
    assert 4 <= counts.concurrency <= 8
    assert server.stats.refused < 0.2 * 300  # refusals are the probe, not the traffic


def test_each_replica_finds_its_own_limit_and_the_bigger_one_carries_more():
    small = FakeReplica(capacity=2, service_s=0.1, overflow="refuse").start()
    big = FakeReplica(capacity=10, service_s=0.1, overflow="refuse").start()
    try:
        teacher = refusing_teacher(small, big)
        out = teacher.generate(requests_for(400))
    finally:
        small.stop()
        big.stop()
    assert len(out) == 400
    assert small.stats.answered + big.stats.answered == Counter(f"prompt {i}" for i in range(400))
    limits = {url: c.concurrency for url, c in teacher.usage.replicas.items()}
    assert limits[small.base_url] <= 4 and 7 <= limits[big.base_url] <= 12
    assert sum(big.stats.answered.values()) > 2 * sum(small.stats.answered.values())


def test_a_replica_that_dies_mid_run_is_benched_then_used_again_when_back():
    steady = FakeReplica(capacity=8, service_s=0.01).start()
    flaky = FakeReplica(capacity=8, service_s=0.01).start()
    teacher = refusing_teacher(steady, flaky, concurrency=8)
    requests = requests_for(900)
    answered = 0
    at_revival: list[int] = []

    def on_done(count: int) -> None:  # crash the replica a third of the way, restart it at two thirds
        nonlocal answered
        answered += count
        if 300 <= answered < 600 and not flaky.dead and not at_revival:
            flaky.die()
        elif answered >= 600 and flaky.dead:
            at_revival.append(sum(flaky.stats.answered.values()))
            flaky.revive()

    try:
        out = teacher.generate(requests, on_done=on_done)
        after_restart = sum(flaky.stats.answered.values()) - at_revival[0]
    finally:
        steady.stop()
        flaky.stop()
    assert [c.texts for c in out] == [[f"answer to: prompt {i}"] for i in range(900)]
    # Nothing lost, nothing paid twice: every prompt got exactly one answer, from one replica or the other.
    assert steady.stats.answered + flaky.stats.answered == Counter(f"prompt {i}" for i in range(900))
    counts = teacher.usage.replicas[flaky.base_url]
    assert counts.failures >= 1  # it failed while down ...
    assert after_restart > 0 and not flaky.dead  # ... and was probed and used again once back


def test_a_retry_waits_for_a_full_healthy_replica_rather_than_return_to_a_dead_one():
    pool = limited("live", "dead", maximum=1, adaptive=False)
    live, dead = pool.replicas
    pool.sent(live)  # the healthy replica is at its limit
    pool.sent(dead)
    pool.failed(dead, now=0.0)  # benched for 1 s
    # Back on probation at 2.0 and free for a probe: a fresh request may probe it ...
    assert pool.route(2.0).replica is dead
    # ... but the request that just failed there waits for the healthy one instead.
    assert pool.route(2.0, avoid="dead").replica is None
    pool.answered(live)
    assert pool.route(2.0, avoid="dead").replica is live
