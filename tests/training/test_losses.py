import os

import keras
import numpy as np
import pytest
from backend_utils import to_numpy

from keras_attention.training import MaskedAccuracy
from keras_attention.training import MaskedSparseCategoricalCrossentropy


def _np_log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_token_losses(labels, logits, ls):
    # Cross-entropy against q = (1 - ls) * one_hot(y) + ls / V (Szegedy et al.).
    vocab = logits.shape[-1]
    q = (1.0 - ls) * np.eye(vocab)[labels] + ls / vocab
    return -(q * _np_log_softmax(logits.astype("float64"))).sum(axis=-1)


def _np_masked_mean(labels, logits, ls, pad_id=0, weights=None):
    losses = _np_token_losses(np.where(labels == pad_id, 0, labels), logits, ls)
    m = (labels != pad_id).astype("float64")
    w = m if weights is None else m * weights
    return (losses * w).sum() / w.sum()


def _data(seed=0, batch=3, length=5, vocab=7):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(batch, length, vocab)).astype("float32")
    labels = rng.integers(1, vocab, size=(batch, length))
    labels[0, 3:] = 0
    labels[2, 1:] = 0
    return labels, logits


@pytest.mark.parametrize("ls", [0.0, 0.1, 0.35])
def test_matches_numpy_reference(ls):
    labels, logits = _data()
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=ls)
    np.testing.assert_allclose(
        float(loss(labels, logits)), _np_masked_mean(labels, logits, ls), rtol=1e-5
    )


@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_smoothing_convention_is_keras_categorical_crossentropy(ls):
    # Peer check: token by token, the same as Keras's dense loss with
    # label_smoothing on one-hot labels (smoothing over all V classes).
    labels, logits = _data(seed=1)
    ours = MaskedSparseCategoricalCrossentropy(
        label_smoothing=ls, pad_id=None, reduction="none"
    )(labels, logits)
    keras_loss = keras.losses.categorical_crossentropy(
        np.eye(logits.shape[-1], dtype="float32")[labels],
        logits,
        from_logits=True,
        label_smoothing=ls,
    )
    np.testing.assert_allclose(np.asarray(ours), np.asarray(keras_loss), rtol=1e-5)


def test_padding_has_no_effect():
    labels, logits = _data(seed=2)
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    base = float(loss(labels, logits))
    # Arbitrary scores at padded positions change nothing.
    noisy = logits.copy()
    noisy[labels == 0] = np.random.default_rng(3).normal(
        scale=50.0, size=noisy[labels == 0].shape
    )
    assert float(loss(labels, noisy)) == pytest.approx(base, rel=1e-6)
    # Nor does extra padding appended to every sequence.
    pad_labels = np.concatenate([labels, np.zeros((3, 4), labels.dtype)], axis=1)
    pad_logits = np.concatenate(
        [logits, np.random.default_rng(4).normal(size=(3, 4, 7)).astype("float32")],
        axis=1,
    )
    assert float(loss(pad_labels, pad_logits)) == pytest.approx(base, rel=1e-6)


def test_sample_weight_per_sample_and_per_token():
    labels, logits = _data(seed=5)
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    per_sample = np.array([0.5, 2.0, 1.0], "float32")
    np.testing.assert_allclose(
        float(loss(labels, logits, sample_weight=per_sample)),
        _np_masked_mean(labels, logits, 0.1, weights=per_sample[:, None]),
        rtol=1e-5,
    )
    per_token = np.random.default_rng(6).uniform(size=labels.shape).astype("float32")
    expected = _np_masked_mean(labels, logits, 0.1, weights=per_token)
    np.testing.assert_allclose(
        float(loss(labels, logits, sample_weight=per_token)), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        float(loss(labels, logits, sample_weight=per_token[..., None])),
        expected,
        rtol=1e-5,
    )


def test_probabilities_equal_logits_path_and_labels_with_trailing_axis():
    labels, logits = _data(seed=7)
    probs = np.asarray(keras.ops.softmax(logits, axis=-1))
    from_logits = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    from_probs = MaskedSparseCategoricalCrossentropy(
        from_logits=False, label_smoothing=0.1
    )
    expected = _np_masked_mean(labels, logits, 0.1)
    np.testing.assert_allclose(float(from_probs(labels, probs)), expected, rtol=1e-4)
    np.testing.assert_allclose(
        float(from_logits(labels[..., None], logits)), expected, rtol=1e-5
    )


def test_float16_logits_are_stable():
    # Large float16 logits: a float16 softmax/log would overflow or give -inf.
    labels, logits = _data(seed=8)
    big = (logits * 3000.0).clip(-60000, 60000).astype("float16")
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    got = loss(labels, big)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(
        float(got), _np_masked_mean(labels, big.astype("float64"), 0.1), rtol=1e-4
    )
    # Small logits: float16 input gives the float32 answer of the rounded input.
    small = logits.astype("float16")
    np.testing.assert_allclose(
        float(loss(labels, small)),
        _np_masked_mean(labels, small.astype("float64"), 0.1),
        rtol=1e-5,
    )


def test_all_padding_gives_zero_not_nan():
    logits = np.random.default_rng(9).normal(size=(2, 3, 5)).astype("float32")
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    assert float(loss(np.zeros((2, 3), "int32"), logits)) == 0.0


def test_other_pad_ids():
    labels, logits = _data(seed=10)
    # -100 (outside the vocabulary) as padding.
    hf = np.where(labels == 0, -100, labels)
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, pad_id=-100)
    np.testing.assert_allclose(
        float(loss(hf, logits)), _np_masked_mean(labels, logits, 0.1), rtol=1e-5
    )
    # pad_id=None: every token counts, including label 0.
    no_pad = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, pad_id=None)
    np.testing.assert_allclose(
        float(no_pad(labels, logits)),
        _np_token_losses(labels, logits, 0.1).mean(),
        rtol=1e-5,
    )


def test_sum_and_none_reductions():
    labels, logits = _data(seed=11)
    token = _np_token_losses(labels, logits, 0.1) * (labels != 0)
    summed = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, reduction="sum")
    np.testing.assert_allclose(float(summed(labels, logits)), token.sum(), rtol=1e-5)
    none = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, reduction=None)
    np.testing.assert_allclose(
        np.asarray(none(labels, logits)), token, rtol=1e-5, atol=1e-6
    )


def _masked_model(vocab=6):
    inputs = keras.Input((4,), dtype="int32")
    x = keras.layers.Embedding(vocab, 8, mask_zero=True)(inputs)
    outputs = keras.layers.Dense(vocab)(x)
    return keras.Model(inputs, outputs)


def test_keras_mask_of_predictions_is_merged():
    # Predictions carry the input mask (Embedding(mask_zero=True)); tokens
    # masked by either the inputs or the label padding are ignored.
    model = _masked_model()
    x = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    y = np.array([[2, 0, 3, 4], [1, 2, 3, 4]])
    ls = 0.1
    model.compile(loss=MaskedSparseCategoricalCrossentropy(label_smoothing=ls))
    got = model.evaluate(x, y, batch_size=2, verbose=0)
    logits = to_numpy(model(x))
    merged = (x != 0) & (y != 0)
    losses = _np_token_losses(y, logits, ls)
    np.testing.assert_allclose(got, (losses * merged).sum() / merged.sum(), rtol=1e-5)


def test_compiled_fit_with_metric_and_keras_save_load(tmp_path):
    model = _masked_model()
    model.compile(
        optimizer="adam",
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        metrics=[MaskedAccuracy()],
        jit_compile=True,
    )
    rng = np.random.default_rng(12)
    x = rng.integers(1, 6, size=(8, 4))
    y = np.where(rng.uniform(size=(8, 4)) < 0.3, 0, x)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert "masked_accuracy" in history.history
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.evaluate(x, y, batch_size=8, verbose=0),
        model.evaluate(x, y, batch_size=8, verbose=0),
        rtol=1e-5,
    )


def test_config_round_trip():
    loss = MaskedSparseCategoricalCrossentropy(
        from_logits=False, label_smoothing=0.2, pad_id=-1, reduction="sum", name="xent"
    )
    config = loss.get_config()
    for key, value in {
        "from_logits": False,
        "label_smoothing": 0.2,
        "pad_id": -1,
        "reduction": "sum",
        "name": "xent",
    }.items():
        assert config[key] == value
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(revived, MaskedSparseCategoricalCrossentropy)
    assert revived.get_config() == config


@pytest.mark.parametrize("value", [1.0, -0.1, 2])
def test_invalid_label_smoothing(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `label_smoothing`, expected a float in \[0, 1\)\. "
        rf"Received: label_smoothing={value!r}",
    ):
        MaskedSparseCategoricalCrossentropy(label_smoothing=value)


@pytest.mark.parametrize("value", [0.5, "0", True])
def test_invalid_pad_id(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `pad_id`, expected an integer or None\. "
        rf"Received: pad_id={value!r}",
    ):
        MaskedSparseCategoricalCrossentropy(pad_id=value)


def test_invalid_reduction():
    with pytest.raises(
        ValueError,
        match=r"argument `reduction`, expected one of \['mean_with_sample_weight', "
        r"'none', 'sum'\]\. Received: reduction='sum_over_batch_size'",
    ):
        MaskedSparseCategoricalCrossentropy(reduction="sum_over_batch_size")


def test_invalid_from_logits_type():
    with pytest.raises(TypeError, match=r"argument `from_logits`, expected a bool"):
        MaskedSparseCategoricalCrossentropy(from_logits=1)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "mixed_bfloat16"])
def test_low_precision_dtype_keeps_large_token_ids(dtype):
    # Keras' Loss converts labels to its dtype before `call`: in bfloat16
    # token 257 became 256 (float16: 2049 became 2048), so the loss looked
    # up the wrong class. The loss now computes in float32; `dtype` is the
    # result's.
    labels = np.array([[257, 2049, 3001]])
    logits = np.zeros((1, 3, 4000), "float32")
    logits[0, np.arange(3), labels[0]] = 20.0
    per_token = MaskedSparseCategoricalCrossentropy(reduction="none", dtype=dtype)
    reference = MaskedSparseCategoricalCrossentropy(reduction="none")
    expected = to_numpy(reference(labels, logits))
    assert expected.max() < 1e-3  # the true class holds the mass
    np.testing.assert_allclose(to_numpy(per_token(labels, logits), "float32"), expected, atol=1e-3)
    mean = MaskedSparseCategoricalCrossentropy(dtype=dtype)(labels, logits)
    assert keras.backend.standardize_dtype(mean.dtype) == dtype.replace("mixed_", "")


def test_dtype_survives_the_config_round_trip():
    loss = MaskedSparseCategoricalCrossentropy(dtype="float16")
    revived = MaskedSparseCategoricalCrossentropy.from_config(loss.get_config())
    assert loss.get_config()["dtype"] == "float16"
    result = revived(np.array([[3, 1]]), np.zeros((1, 2, 5), "float32"))
    assert keras.backend.standardize_dtype(result.dtype) == "float16"
