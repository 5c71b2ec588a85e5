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
    for line in lines:
        buckets = line["accuracy_by_marker_distance"]
        assert sum(b["fraction"] for b in buckets.values()) == pytest.approx(1.0)
        assert ("receptive_field" in line) == (line["config"]["kernel"] == "local")
    local = next(line for line in lines if line["config"]["kernel"] == "local")
    # Smoke: T = 16, window 16 // 8 = 2, 1 layer: reach 2, pairs <= 4 apart.
    assert local["receptive_field"]["reach_per_token"] == 2
    assert local["receptive_field"]["max_pair_distance"] == 4
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


def test_marker_distances(benchmark):
    # Markers are ids 2..5 (markers=4); 0 is padding, 6+ filler.
    ids = np.array([[7, 2, 9, 9, 5, 8],
                    [3, 3, 6, 6, 6, 6],
                    [6, 6, 6, 6, 6, 4]], dtype="int32")
    ids[2, 0] = 2
    np.testing.assert_array_equal(benchmark.marker_distances(ids, 4), [3, 1, 5])


def test_receptive_field_bound_and_buckets(benchmark):
    distances = np.array([1, 4, 5, 8, 9, 20])
    bound = benchmark.receptive_field_bound(distances, reach=4)
    assert bound["reach_per_token"] == 4 and bound["max_pair_distance"] == 8
    assert bound["fraction_pairs_within_reach"] == pytest.approx(4 / 6, abs=1e-4)
    assert bound["accuracy_bound"] == pytest.approx(4 / 6 + 0.5 * 2 / 6, abs=1e-4)
    assert bound["fraction_pairs_within_one_marker_reach"] == pytest.approx(2 / 6,
                                                                           abs=1e-4)
    correct = np.array([True, True, False, True, False, True])
    buckets = benchmark.bucket_accuracy(correct, distances, reach=4)
    assert list(buckets) == ["1-4", "5-8", ">8"]
    assert buckets["1-4"] == {"fraction": pytest.approx(2 / 6, abs=1e-4),
                              "accuracy": 1.0}
    assert buckets["5-8"]["accuracy"] == 0.5
    assert buckets[">8"]["accuracy"] == 0.5
    # The exact fraction at the benchmark's scaled setting (T = 64, w = 8,
    # 2 layers): P(|i - j| <= 32) over distinct pairs = 3040 / 4032.
    rng = np.random.default_rng(0)
    ids, _ = benchmark.pair_match_data(rng, 5000, 64, 4, 40)
    within = (benchmark.marker_distances(ids, 4) <= 32).mean()
    assert within == pytest.approx(3040 / 4032, abs=0.02)


def test_local_pair_match_keeps_markers_within_the_distance(benchmark):
    ids, labels = benchmark.pair_match_data(
        np.random.default_rng(0), 400, length=64, markers=4, vocabulary_size=40,
        max_distance=8)
    distances = benchmark.marker_distances(ids, 4)
    assert distances.min() >= 1 and distances.max() == 8
    assert ((np.where(ids < 6, 1, 0)).sum(axis=1) == 2).all()
    assert 0.4 < labels.mean() < 0.6


def test_task_defaults(benchmark):
    pair = benchmark.parse_args([])
    assert (pair.task, pair.length, pair.vocabulary_size) == ("pair_match", 64, 40)
    docs = benchmark.parse_args(["--task", "docstring_families"])
    assert (docs.length, docs.vocabulary_size) == (128, 4000)
    given = benchmark.parse_args(["--task", "docstring_families", "--length", "96"])
    assert given.length == 96


def test_docstring_families_data_holds_out_validation_and_test(benchmark):
    from keras_attention.data import docstring_classification_data

    (ids, labels), (test_ids, test_labels) = benchmark.docstring_families_data(
        length=24, vocabulary_size=300)
    train_texts, train_labels, names = docstring_classification_data("train")
    held_out = np.concatenate([docstring_classification_data(s)[1]
                               for s in ("validation", "test")])
    np.testing.assert_array_equal(labels, train_labels)
    np.testing.assert_array_equal(test_labels, held_out)
    assert ids.shape == (len(train_texts), 24) and ids.dtype == np.int32
    assert test_ids.shape == (len(held_out), 24)
    assert 0 <= ids.min() and ids.max() < 300 and test_ids.max() < 300
    # Docstrings shorter than 24 word pieces are padded with id 0 (the
    # classifier's mask) at the end only; long ones fill all 24 positions.
    words = np.array([len(t.split()) for t in train_texts])
    assert (ids[words > 60] != 0).all()
    padded = ids == 0
    assert padded.any()
    assert (np.sort(padded, axis=1) == padded).all()  # zeros only trail
    assert set(np.unique(labels)) == set(range(len(names)))


def test_docstring_families_smoke_line(benchmark, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchmark.common, "RESULTS_DIR", str(tmp_path))
    (line,) = benchmark.main(
        ["--smoke", "--task", "docstring_families", "--kernels", "dot_product"])
    config = line["config"]
    assert config["task"] == "docstring_families" and config["markers"] is None
    assert config["train_examples"] > config["test_examples"] > 0
    assert "accuracy_by_marker_distance" not in line
    assert 0.0 <= line["ours"] <= 1.0
    assert list(tmp_path.iterdir()) == []


def test_kernel_options_scaled_and_overridden(benchmark):
    assert benchmark.kernel_options("local", 64, "scaled") == {"window_size": 8}
    assert benchmark.kernel_options("local", 64, "scaled",
                                    local_window_size=16) == {"window_size": 16}
    assert benchmark.kernel_options("big_bird", 64, "scaled") == {"block_size": 4}
    assert benchmark.kernel_options("linformer", 64, "scaled") == {
        "sequence_length": 64, "projection_dim": 16}
    assert benchmark.kernel_options("local", 64, "default") == {}
    # The reach the distance buckets use follows the window.
    assert benchmark.local_reach("local", {"window_size": 16}, 2) == 32
    # Global tokens: any two tokens meet through them, so no reach bound.
    options = benchmark.kernel_options("local", 64, "scaled", local_global_tokens=1)
    assert options == {"window_size": 8, "num_global_tokens": 1}
    assert benchmark.local_reach("local", options, 2) is None
    assert benchmark.kernel_options("local", 64, "default", local_global_tokens=2) == {
        "num_global_tokens": 2}
    assert benchmark.kernel_options("big_bird", 64, "scaled",
                                    local_global_tokens=1) == {"block_size": 4}
    assert benchmark.kernel_options("linformer", 64, "scaled",
                                    linformer_sharing="key_value") == {
        "sequence_length": 64, "projection_dim": 16,
        "projection_sharing": "key_value"}
