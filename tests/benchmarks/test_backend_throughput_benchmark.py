"""benchmarks/backend_throughput.py on a tiny size, on TensorFlow and JAX."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

TINY = dict(hidden=8, heads=2, intermediate=16, length=4, batch=3, layers=2)
ARGS = ["--repeats", "1", "--steps", "1", "--results-file", "", "--matmul-size", "32"]


@pytest.fixture
def benchmark(load_benchmark):
    return load_benchmark("backend_throughput")


def _lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_runs_on_the_current_backend(benchmark, capsys):
    args = benchmark.parse_args(ARGS + ["--peak-tflops", "1"])
    benchmark.run_size("tiny", TINY, args)
    lines = _lines(capsys.readouterr().out)
    assert [line["metric"] for line in lines] == ["train_tokens_per_s"] + ["train_gflops"] * 2
    throughput, *flops = lines
    assert throughput["peer_name"] == benchmark.HUB and throughput["ratio"] > 0
    backend = keras.backend.backend()
    assert throughput["config"]["fused_attention"] == (backend == "jax")
    assert throughput["config"]["device"]
    for line in flops:
        # Achieved GFLOP/s = tokens/s x the model-FLOP count per token.
        assert line["config"]["flops_per_token"] == benchmark.flops_per_token(TINY)
        assert line["model_flops_utilisation"] == pytest.approx(line["ours"] / 1e3, rel=1e-2)


def test_runs_on_jax_with_the_fused_attention(tmp_path):
    pytest.importorskip("jax")
    repo = Path(__file__).resolve().parents[2]
    script = (
        "import sys; sys.path[:0] = [{b!r}, {r!r}]\n"
        "import backend_throughput as bt\n"
        "bt.run_size('tiny', {tiny!r}, bt.parse_args({args!r}))\n"
    ).format(b=str(repo / "benchmarks"), r=str(repo), tiny=TINY,
             args=ARGS + ["--dtype-policy", "mixed_bfloat16"])
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = _lines(done.stdout)
    assert lines[0]["context"]["backend"] == "jax"
    assert lines[0]["config"]["fused_attention"] is True
    assert lines[0]["config"]["dtype_policy"] == "mixed_bfloat16"
    assert lines[1]["peer_name"] == "keras.ops.matmul, square, compiled"

