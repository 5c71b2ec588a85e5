"""BitErrorsPerSequence against a NumPy count of wrong bits."""

import keras
import numpy as np
import pytest

from keras_attention.training import BitErrorsPerSequence


def _np_errors(y_true, probs, weight, threshold=0.5):
    wrong = (probs > threshold) != (y_true > 0.5)  # (B, T, C)
    wrong = wrong & (weight[..., None] > 0)
    return wrong.sum(axis=(1, 2))  # (B,)


def _data(seed, b=4, t=7, c=3):
    rng = np.random.default_rng(seed)
    y_true = (rng.uniform(size=(b, t, c)) < 0.5).astype("float32")
    probs = rng.uniform(size=(b, t, c)).astype("float32")
    weight = (rng.uniform(size=(b, t)) < 0.6).astype("float32") * rng.uniform(0.5, 2, (b, t)).astype("float32")
    return y_true, probs, weight


def test_matches_numpy_and_accumulates_over_batches():
    metric = BitErrorsPerSequence()
    counts = []
    for seed in range(3):
        y_true, probs, weight = _data(seed, b=2 + seed)
        metric.update_state(y_true, probs, sample_weight=weight)
        counts.append(_np_errors(y_true, probs, weight))
    all_counts = np.concatenate(counts)
    np.testing.assert_allclose(float(metric.result()), all_counts.mean(), rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_without_weights_every_step_counts():
    y_true, probs, _ = _data(4)
    metric = BitErrorsPerSequence()
    metric.update_state(y_true, probs)
    want = _np_errors(y_true, probs, np.ones(probs.shape[:2])).mean()
    np.testing.assert_allclose(float(metric.result()), want, rtol=1e-6)


def test_from_logits_and_threshold():
    y_true, probs, weight = _data(5)
    logits = np.log(probs / (1 - probs))
    metric = BitErrorsPerSequence(from_logits=True, threshold=0.7)
    metric.update_state(y_true, logits, sample_weight=weight)
    want = _np_errors(y_true, probs, weight, threshold=0.7).mean()
    np.testing.assert_allclose(float(metric.result()), want, rtol=1e-6)


def test_perfect_and_inverted_predictions():
    y_true, _, weight = _data(6)
    metric = BitErrorsPerSequence()
    metric.update_state(y_true, y_true * 0.8 + 0.1, sample_weight=weight)
    assert float(metric.result()) == 0.0
    metric.reset_state()
    metric.update_state(y_true, 0.9 - y_true * 0.8, sample_weight=weight)
    want = 3 * (weight > 0).sum(1).mean()  # every weighted bit wrong
    np.testing.assert_allclose(float(metric.result()), want)


def test_in_compile_weighted_metrics():
    y_true, probs, weight = _data(7, b=8)
    logits = np.log(probs / (1 - probs)).astype("float32")
    model = keras.Sequential([keras.Input((7, 3)), keras.layers.Identity()])
    model.compile(loss="mse", weighted_metrics=[BitErrorsPerSequence(from_logits=True, name="bits")])
    result = model.evaluate(logits, y_true, sample_weight=weight, batch_size=3, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["bits"], _np_errors(y_true, probs, weight).mean(), rtol=1e-5)


def test_config_round_trip():
    metric = BitErrorsPerSequence(threshold=0.4, from_logits=True, name="errors")
    revived = BitErrorsPerSequence.from_config(metric.get_config())
    assert revived.get_config() == metric.get_config()
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric)).threshold == 0.4


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, True, "half"])
def test_invalid_threshold(threshold):
    with pytest.raises(ValueError, match=r"`threshold`, expected a float in \(0, 1\)"):
        BitErrorsPerSequence(threshold=threshold)


def test_invalid_from_logits():
    with pytest.raises(TypeError, match="`from_logits`, expected a bool"):
        BitErrorsPerSequence(from_logits="yes")


def test_result_has_the_metric_dtype():
    metric = BitErrorsPerSequence(dtype="float16")
    metric.update_state(np.ones((2, 3, 4)), np.zeros((2, 3, 4)))
    assert keras.backend.standardize_dtype(metric.result().dtype) == "float16"
    assert float(metric.result()) == 12.0  # 3 * 4 wrong bits per sequence
