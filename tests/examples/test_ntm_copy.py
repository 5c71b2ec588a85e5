"""Smoke test of examples/ntm_copy.py: trains, evaluates, saves, reloads, plots."""

import importlib.util
import json
import pathlib

import keras
import numpy as np

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "ntm_copy.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("ntm_copy_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_model_plots_and_history(tmp_path):
    example = _load_example()
    summary = example.main(["--smoke", "--export-dir", str(tmp_path), "--verbose", "0"])
    for name in ("model.keras", "learning_curve.png", "weightings.png", "history.json"):
        assert (tmp_path / name).stat().st_size > 0, name
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
