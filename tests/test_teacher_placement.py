"""Where `serve --replicas N` puts each server: consecutive ports, disjoint cores or GPUs."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UserError
from pipeline.teachers.placement import is_loopback, place_replicas, visible_gpus


def test_cpu_replicas_get_disjoint_core_blocks_and_consecutive_ports():
    placed = place_replicas(2, 8000, 1, cpus=[0, 1], gpus=None)
    assert [p.port for p in placed] == [8000, 8001]
    assert [p.cpus for p in placed] == [(0,), (1,)]
    assert [p.env for p in placed] == [{"VLLM_CPU_OMP_THREADS_BIND": "0"}, {"VLLM_CPU_OMP_THREADS_BIND": "1"}]


def test_cpu_blocks_split_unevenly_and_per_worker():
    placed = place_replicas(3, 9000, 1, cpus=list(range(8)), gpus=None)
    assert [p.cpus for p in placed] == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert placed[0].env["VLLM_CPU_OMP_THREADS_BIND"] == "0-2"
    # A replica with tensor parallel 2 on CPU: one OpenMP list per worker, `|`-separated.
    tp2 = place_replicas(2, 9000, 2, cpus=list(range(8)), gpus=None)
    assert [p.env["VLLM_CPU_OMP_THREADS_BIND"] for p in tp2] == ["0-1|2-3", "4-5|6-7"]
    assert tp2[1].describe() == "cores 4-7"


def test_gpu_replicas_each_see_their_own_devices():
    placed = place_replicas(2, 8000, 2, cpus=[0, 1], gpus=["0", "1", "2", "3"])
    assert [p.env for p in placed] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert placed[1].describe() == "GPU 2,3" and placed[1].cpus == ()


def test_one_cpu_replica_keeps_vllms_own_binding():
    (only,) = place_replicas(1, 8000, 1, cpus=[0, 1, 2, 3], gpus=[])
    assert only.env == {} and only.cpus == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 8000, 1, [0, 1], None), "need at least 3 cores"),
        ((2, 8000, 2, [0, 1], ["0", "1", "2"]), "need 4 GPUs"),
        ((0, 8000, 1, [0], None), "at least 1"),
        ((2, 65535, 1, [0, 1], None), "past 65535"),
    ],
)
def test_impossible_layouts_are_refused_with_the_reason(args, message):
    replicas, port, workers, cpus, gpus = args
    with pytest.raises(UserError, match=message):
        place_replicas(replicas, port, workers, cpus=cpus, gpus=gpus)


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, count=8) == []
    assert visible_gpus({}, count=2) == ["0", "1"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False)],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback
    assert not is_loopback("teacher.example.org")
