"""Smoke test of examples/ntm_copy.py: trains (under a tf.distribute
strategy), logs to TensorBoard, evaluates, exports a SavedModel, saves,
reloads, plots."""

import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "ntm_copy.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("ntm_copy_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scalar_tags(directory):
    tags = set()
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_smoke_run_writes_model_plots_history_logs_and_export(tmp_path):
    example = _load_example()
    logs = tmp_path / "logs"
    summary = example.main([
        "--smoke", "--export-dir", str(tmp_path), "--log-dir", str(logs),
        "--strategy", "mirrored", "--verbose", "0",
    ])
    assert summary["strategy"] == "mirrored"
    for name in ("model.keras", "learning_curve.png", "weightings.png", "history.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    # TensorBoard: the training curve, train and eval.
    assert {"epoch_loss", "epoch_bit_errors"} <= _scalar_tags(logs / "train")
    assert {"epoch_loss", "epoch_bit_errors"} <= _scalar_tags(logs / "validation")
    # SavedModel in the TF Serving layout, checked in a fresh process by main.
    assert summary["export_path"] == str(tmp_path / "1")
    assert (tmp_path / "1" / "saved_model.pb").is_file()
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    (logits,) = serve(bits=tf.zeros((2, 7, 5))).values()
    assert tuple(logits.shape) == (2, 7, 4)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history == json.loads(json.dumps(summary))
    steps = [r["step"] for r in history["records"]]
    assert steps == [30, 60]
    assert all(np.isfinite(r["val_bit_errors"]) for r in history["records"])
    # The saved model reloads without custom_objects and runs on any length.
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.predict(np.zeros((2, 11, 5), "float32"), verbose=0).shape == (2, 11, 4)


def test_model_flag_builds_each_model():
    example = _load_example()
    args = example.parse_args(["--smoke"])
    for name in example.MODELS:  # ntm, dnc, lstm
        model = example.build_model(name, 5, 4, args)
        assert model(np.zeros((1, 3, 5), "float32")).shape == (1, 3, 4)
    ntm = example.build_model("ntm", 5, 4, args, return_weightings=True)
    logits, reads, writes = ntm(np.zeros((1, 3, 5), "float32"))
    assert reads.shape == (1, 3, 1, args.memory_size)


def test_strategy_flag(capsys):
    example = _load_example()
    assert example.parse_args([]).strategy == "default"
    assert example.parse_args(["--strategy", "mirrored"]).strategy == "mirrored"
    for name, message in (
        ("multi_worker", "argument --strategy: the examples train with Keras fit"),
        ("horovod", "argument --strategy: invalid choice: 'horovod'"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            example.parse_args(["--smoke", "--strategy", name])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_docstring_has_the_run_commands():
    doc = _load_example().__doc__
    assert "python examples/ntm_copy.py\n" in doc
    assert "python examples/ntm_copy.py --smoke" in doc
