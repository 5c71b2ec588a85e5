import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.export import export_for_serving
from keras_attention.export import serving

IDS = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]], dtype="int32")
FEATURES = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")


def _model():
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    extra = keras.Input((3,), name="extra")
    x = ka.layers.TokenAndPositionEmbedding(
        vocabulary_size=12, sequence_length=8, embedding_dim=8, mask_zero=True
    )(ids)
    x = ka.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    pooled = ka.layers.AttentionPooling(num_heads=2)(x)
    logits = keras.layers.Dense(2, name="logits")(
        keras.layers.Concatenate()([pooled, extra])
    )
    return keras.Model({"token_ids": ids, "extra": extra}, logits)


LOAD_AND_RUN = r"""
import json, sys
import numpy as np
import tensorflow as tf
assert "keras_attention" not in sys.modules
loaded = tf.saved_model.load(sys.argv[1])
fn = loaded.signatures["serving_default"]
data = json.loads(sys.argv[2])
out = fn(token_ids=tf.constant(data["ids"], tf.int32),
         extra=tf.constant(data["extra"], tf.float32))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
"""


def test_exported_model_serves_the_same_predictions_in_plain_tensorflow(tmp_path):
    model = _model()
    expected = model.predict({"token_ids": IDS, "extra": FEATURES}, verbose=0)
    path = export_for_serving(model, tmp_path / "classifier", version=1)
    assert path == os.path.join(tmp_path / "classifier", "1")
    assert os.path.exists(os.path.join(path, "assets.extra", "model.keras"))
    for batch in (1, 2):
        args = json.dumps({"ids": IDS[:batch].tolist(), "extra": FEATURES[:batch].tolist()})
        result = subprocess.run(
            [sys.executable, "-c", LOAD_AND_RUN, path, args],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert result.returncode == 0, result.stderr[-2000:]
        served = json.loads(result.stdout.strip().splitlines()[-1])
        np.testing.assert_allclose(served["logits"], expected[:batch], atol=1e-5)


def test_saved_model_cli_lists_serving_default(tmp_path):
    path = export_for_serving(_model(), tmp_path / "m", version=2)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--dir", path, "--all"], capture_output=True, text=True,
        timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signature_def['serving_default']" in result.stdout
    assert "token_ids" in result.stdout and "DT_INT32" in result.stdout


def test_keras_file_in_the_export_reloads(tmp_path):
    model = _model()
    path = export_for_serving(model, tmp_path / "m")
    reloaded = keras.models.load_model(
        os.path.join(path, "assets.extra", "model.keras"), safe_mode=True
    )
    data = {"token_ids": IDS, "extra": FEATURES}
    np.testing.assert_allclose(reloaded.predict(data, verbose=0),
                               model.predict(data, verbose=0), atol=1e-6)


def test_existing_version_is_refused_unless_overwrite(tmp_path):
    model = _model()
    export_for_serving(model, tmp_path / "m", version=1)
    with pytest.raises(ValueError, match="`version`.*does not exist yet.*version=1"):
        export_for_serving(model, tmp_path / "m", version=1)
    export_for_serving(model, tmp_path / "m", version=1, overwrite=True)
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


@pytest.mark.parametrize("stage", ["keras_file", "rename"])
def test_interrupted_export_leaves_no_partial_version(tmp_path, monkeypatch, stage):
    model = _model()
    export_for_serving(model, tmp_path / "m", version=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    if stage == "keras_file":  # after the SavedModel, while writing .keras
        monkeypatch.setattr(keras.Model, "save", interrupted)
    else:  # everything written, interrupted before the rename
        monkeypatch.setattr(serving, "_move_into_place", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_for_serving(model, tmp_path / "m", version=2)
    assert os.listdir(tmp_path / "m") == ["1"]


@pytest.mark.parametrize("version", [0, -1, 1.5, "2"])
def test_invalid_version(tmp_path, version):
    with pytest.raises(ValueError, match="`version`.*positive integer"):
        export_for_serving(_model(), tmp_path / "m", version=version)


def test_invalid_object(tmp_path):
    with pytest.raises(ValueError, match="`model_or_pipeline`.*Received: dict"):
        export_for_serving({}, tmp_path / "m")


# Kills itself with SIGKILL once the SavedModel is written to the staging
# directory, before the .keras file and the rename: what a killed job leaves.
KILLED_MID_EXPORT = r"""
import os, signal, sys
import keras
from keras_attention.export import export_for_serving

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save = killed
inputs = keras.Input((3,), name="features")
model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
export_for_serving(model, sys.argv[1], version=2)
"""


def test_export_after_a_killed_export_removes_its_staging_directory(tmp_path):
    root = tmp_path / "m"
    model = _model()
    export_for_serving(model, root, version=1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", KILLED_MID_EXPORT, str(root)],
                            env=env, capture_output=True, timeout=600)
    assert result.returncode == -9, result.stderr[-2000:]
    (left,) = [n for n in os.listdir(root) if n != "1"]
    assert left.startswith(".tmp-2-") and (root / left / "saved_model.pb").is_file()
    # Left alone: a staging directory of a live process (this one), a
    # directory of another host (it cannot be checked from here), other
    # hidden entries, and numeric versions.
    live = f".tmp-7-{serving._host()}-{os.getpid()}-abc"
    other_host = ".tmp-8-elsewhere-1-abc"
    for name in (live, other_host, ".keep", "5"):
        (root / name).mkdir()
    (root / ".tmp-9-x").write_text("not a directory")
    path = export_for_serving(model, root, version=2)
    assert path == str(root / "2") and (root / "2" / "saved_model.pb").is_file()
    assert sorted(os.listdir(root)) == sorted(
        ["1", "2", "5", live, other_host, ".keep", ".tmp-9-x"])


def test_staging_directories_without_an_owner_are_stale(tmp_path):
    (tmp_path / ".tmp-3-k2j_x9").mkdir()  # the older naming, no host and pid
    (tmp_path / "3").mkdir()
    assert serving.remove_stale_staging(tmp_path) == [".tmp-3-k2j_x9"]
    assert os.listdir(tmp_path) == ["3"]
