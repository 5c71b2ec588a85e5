"""benchmarks/backend_throughput.py on a tiny size, on TensorFlow and JAX."""

import json
from pathlib import Path

import keras
import pytest
from backend_utils import run_on_backend

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
    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    script = (
        "import sys; sys.path.insert(0, {b!r})\n"
        "import backend_throughput as bt\n"
        "bt.run_size('tiny', {tiny!r}, bt.parse_args({args!r}))\n"
        "print('ok')\n"
    ).format(b=str(benchmarks), tiny=TINY, args=ARGS + ["--dtype-policy", "mixed_bfloat16"])
    lines = _lines(run_on_backend(script, "jax", cwd=tmp_path))
    assert lines[0]["context"]["backend"] == "jax"
    assert lines[0]["config"]["fused_attention"] is True
    assert lines[0]["config"]["dtype_policy"] == "mixed_bfloat16"
    assert lines[1]["peer_name"] == "keras.ops.matmul, square, compiled"

