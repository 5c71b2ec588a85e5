"""examples/tune.py --smoke runs offline end to end (in a subprocess)."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_tune_smoke_memory_hyperband_mirrored(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tune.py"), "--smoke", "--model", "memory",
         "--tuner", "hyperband", "--strategy", "mirrored",
         "--directory", str(tmp_path / "tuning"), "--export-dir", str(tmp_path / "export")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "under MirroredStrategy (1 replica(s))" in out
    assert "2 trial(s), objective val_bit_errors_per_sequence (min)" in out
    assert "best trial" in out and "  memory_size = 8" in out
    # The best model was evaluated, reloaded from .keras and exported.
    (evaluated,) = [line for line in out.splitlines() if line.startswith("best model on")]
    (reloaded,) = [line for line in out.splitlines() if line.startswith("reloaded from")]
    assert evaluated.split(": ", 1)[1] == reloaded.split(": ", 1)[1]
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()


def test_tune_rejects_multi_worker(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tune.py"), "--strategy", "multi_worker"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2
    assert "does not run under MultiWorkerMirroredStrategy (tensorflow#72388)" in result.stderr


def _run_tune(tmp_path, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop("TF_CONFIG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tune.py"), "--smoke", *flags,
         "--directory", str(tmp_path / "tuning"), "--export-dir", str(tmp_path / "export")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    (evaluated,) = [line for line in out.splitlines() if line.startswith("best model on")]
    (reloaded,) = [line for line in out.splitlines() if line.startswith("reloaded from")]
    assert evaluated.split(": ", 1)[1] == reloaded.split(": ", 1)[1]
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model,objective,kernels,option", [
    ("classifier", "val_accuracy (max)", "dot_product, performer",
     "performer_num_random_features (Choice)\n{'default': 8, 'conditions': [{'class_name': "
     "'Parent', 'config': {'name': 'attention_kernel', 'values': ['performer']}}], "
     "'values': [8, 16], 'ordered': True}"),
    ("translator", "val_loss (min)", "dot_product, local",
     "local_window_size (Choice)\n{'default': 2, 'conditions': [{'class_name': "
     "'Parent', 'config': {'name': 'attention_kernel', 'values': ['local']}}], "
     "'values': [2, 4], 'ordered': True}"),
])
def test_tune_smoke_random_search(tmp_path, model, objective, kernels, option):
    out = _run_tune(tmp_path, "--model", model, "--tuner", "random")
    assert f"2 trial(s), objective {objective}" in out
    # The attention kernel is searched (keras-tuner's space summary), and
    # the kernel's option, conditional on it.
    assert "attention_kernel (Choice)" in out
    assert f"'values': [{', '.join(repr(k) for k in kernels.split(', '))}]" in out
    assert option in out
    (best,) = [line for line in out.splitlines() if line.startswith("best trial")]
    assert "attention_kernel=" in best
