"""benchmarks/kernel_quality.py --smoke runs end to end and prints DESIGN.md lines."""

import json

import numpy as np
import pytest

from keras_attention.layers.transformer import block_components

KEYS = {"benchmark", "config", "metric", "ours", "peer_name", "peer", "ratio"}


@pytest.fixture
def benchmark(load_benchmark):
    return load_benchmark("kernel_quality")


def test_kernel_quality_smoke_prints_result_lines(
    benchmark, tmp_path, monkeypatch, capsys
):
    registered = dict(block_components.ATTENTION_KERNELS)
    # Any results file would land in tmp_path; smoke mode must write none.
    monkeypatch.setattr(benchmark.common, "RESULTS_DIR", str(tmp_path))
    returned = benchmark.main(["--smoke"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert lines == json.loads(json.dumps(returned))
    assert [line["config"]["kernel"] for line in lines] == list(benchmark.KERNELS)
    exact = lines[0]
    assert exact["config"]["kernel"] == "dot_product" and "peer_name" not in exact
    for line in lines:
        assert line["benchmark"] == "kernel_quality"
        assert line["metric"] == "test_accuracy"
        assert 0.0 <= line["ours"] <= 1.0
        assert line["context"]["backend"] == "tensorflow"
    for line in lines[1:]:
        assert KEYS <= set(line), line
        assert line["peer_name"] == "dot_product"
        assert line["peer"] == exact["ours"]
        assert line["difference_points"] == pytest.approx(
            100 * (line["ours"] - line["peer"]), abs=0.01)
        assert line["meets_target"] == (line["difference_points"] >= -2.0)
        # Same recipe for every kernel: only the kernel and its options differ.
        config = {k: v for k, v in line["config"].items()
                  if k not in ("kernel", "kernel_options")}
        assert config == {k: v for k, v in exact["config"].items()
                          if k not in ("kernel", "kernel_options")}
    # The benchmark-local kernel variants are unregistered afterwards.
    assert block_components.ATTENTION_KERNELS == registered
    assert list(tmp_path.iterdir()) == []


def test_pair_match_data_is_balanced_with_two_markers(benchmark):
    ids, labels = benchmark.pair_match_data(
        np.random.default_rng(0), 500, length=32, markers=4, vocabulary_size=40)
    assert ids.shape == (500, 32) and ids.min() >= 2 and ids.max() < 40
    is_marker = ids < 2 + 4
    assert (is_marker.sum(axis=1) == 2).all()
    markers = np.sort(np.where(is_marker, ids, 99), axis=1)[:, :2]
    assert ((markers[:, 0] == markers[:, 1]) == (labels == 1)).all()
    assert 0.4 < labels.mean() < 0.6
