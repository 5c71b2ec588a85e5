"""benchmarks/generation.py --smoke runs end to end and prints DESIGN.md lines."""

import json

import pytest

KEYS = {"benchmark", "config", "metric", "ours", "peer_name", "peer", "ratio"}


@pytest.fixture
def benchmark(load_benchmark):
    return load_benchmark("generation")


def test_generation_benchmark_smoke_prints_result_lines(
    benchmark, tmp_path, monkeypatch, capsys
):
    # Any results file would land in tmp_path; smoke mode must write none.
    monkeypatch.setattr(benchmark.common, "RESULTS_DIR", str(tmp_path))
    returned = benchmark.main(["--smoke"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert lines == json.loads(json.dumps(returned))
    assert [line["peer_name"] for line in lines] == [benchmark.UNCACHED, benchmark.HUB]
    for line in lines:
        assert KEYS <= set(line), line
        assert line["benchmark"] == "generation"
        assert line["metric"] == "tokens_per_second"
        assert line["ours"] > 0 and line["peer"] > 0
        assert abs(line["ratio"] - line["ours"] / line["peer"]) < 0.01 * line["ratio"]
        # Equivalent work: every side generated all the requested tokens.
        new = line["config"]["new_tokens"]
        assert set(line["new_tokens_per_row"].values()) == {new}
        assert line["retraced_while_timing"] is False
        assert line["context"]["backend"] == "tensorflow"
    # Both sides run the same architecture (same parameter count).
    assert lines[1]["params"]["ours"] == lines[1]["params"]["keras_hub"]
    # Cached and uncached decoding choose the same tokens.
    assert lines[0]["cached_equals_uncached"] is True
    assert list(tmp_path.iterdir()) == []


def test_generation_benchmark_kernel_mode_compares_with_exact_attention(
    benchmark, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(benchmark.common, "RESULTS_DIR", str(tmp_path))
    lines = benchmark.main(["--smoke", "--skip-keras-hub", "--attention-kernel", "local",
                            "--kernel-option", "window_size=2"])
    assert [line["peer_name"] for line in lines] == [benchmark.UNCACHED, benchmark.EXACT]
    for line in lines:
        assert line["config"]["attention_kernel"] == "local"
        assert line["config"]["attention_kernel_options"] == {"window_size": 2}
        assert set(line["new_tokens_per_row"].values()) == {line["config"]["new_tokens"]}
        assert line["ours"] > 0 and line["peer"] > 0
    # The kernel's cached decoding picks the tokens its full passes pick.
    assert lines[0]["cached_equals_uncached"] is True
    # Decoding caches, 1 layer x (keys, values) x batch 2 x 2 heads x 8
    # float32: exact attention's hold the 4 + 4 positions, local's ring
    # the w + 1 = 3 a query reaches and 4 - 1 = 3 more (the generator
    # re-decodes from the shortest prompt's end, at most 3 positions back).
    assert lines[1]["cache_bytes"] == {"ours": 2 * 2 * (3 + 3) * 2 * 8 * 4,
                                       "peer": 2 * 2 * 8 * 2 * 8 * 4}
    assert list(tmp_path.iterdir()) == []


def test_generation_benchmark_can_skip_uncached_decoding(benchmark, capsys):
    # Long generations time only the cached paths (uncached is quadratic).
    lines = benchmark.main(["--smoke", "--skip-keras-hub", "--skip-uncached",
                            "--attention-kernel", "performer",
                            "--kernel-option", "num_random_features=8"])
    assert [line["peer_name"] for line in lines] == [benchmark.EXACT]
    assert lines[0]["new_tokens_per_row"] == {"cached": 4, "exact": 4}
    assert lines[0]["retraced_while_timing"] is False
    assert capsys.readouterr().out.count('"benchmark": "generation"') == 1
