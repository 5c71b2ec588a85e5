import keras
import numpy as np
import pytest

from keras_attention.training import MaskedAccuracy


def _np_masked_accuracy(labels, scores, pad_id=0, weights=None):
    m = (labels != pad_id).astype("float64")
    w = m if weights is None else m * weights
    hits = (scores.argmax(axis=-1) == labels).astype("float64")
    return (hits * w).sum() / w.sum()


def _data(seed, batch=4, length=6, vocab=5):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(batch, length, vocab)).astype("float32")
    labels = rng.integers(1, vocab, size=(batch, length))
    # Make about half of the predictions right, and pad the sequence tails.
    right = rng.uniform(size=labels.shape) < 0.5
    labels = np.where(right, scores.argmax(-1), labels)
    labels[labels == 0] = 1
    labels[0, 4:] = 0
    labels[3, 2:] = 0
    return labels, scores


def test_matches_numpy_reference_and_accumulates_over_batches():
    metric = MaskedAccuracy()
    (l1, s1), (l2, s2) = _data(0), _data(1)
    metric.update_state(l1, s1)
    np.testing.assert_allclose(
        float(metric.result()), _np_masked_accuracy(l1, s1), rtol=1e-6
    )
    metric.update_state(l2, s2)
    both = _np_masked_accuracy(np.concatenate([l1, l2]), np.concatenate([s1, s2]))
    np.testing.assert_allclose(float(metric.result()), both, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_hand_derived_case_and_padding_never_counts():
    labels = np.array([[2, 1, 0, 0]])
    # argmax per position: 2 (right), 0 (wrong), 0 and 0 at padding, where
    # label 0 == argmax 0 would count as "right" if padding were included.
    scores = np.eye(3, dtype="float32")[[[2, 0, 0, 0]]]
    metric = MaskedAccuracy(pad_id=0)
    metric.update_state(labels, scores)
    assert float(metric.result()) == pytest.approx(0.5)
    plain = keras.metrics.SparseCategoricalAccuracy()
    plain.update_state(labels, scores)
    assert float(plain.result()) == pytest.approx(0.75)


def test_sample_weight_and_labels_with_trailing_axis():
    labels, scores = _data(2)
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    metric = MaskedAccuracy()
    metric.update_state(labels[..., None], scores, sample_weight=weights)
    np.testing.assert_allclose(
        float(metric.result()),
        _np_masked_accuracy(labels, scores, weights=weights[:, None]),
        rtol=1e-6,
    )


def test_pad_id_none_and_other_pad_id():
    labels, scores = _data(3)
    metric = MaskedAccuracy(pad_id=None)
    metric.update_state(labels, scores)
    expected = (scores.argmax(-1) == labels).mean()
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    metric = MaskedAccuracy(pad_id=-1)
    metric.update_state(np.where(labels == 0, -1, labels), scores)
    np.testing.assert_allclose(
        float(metric.result()), _np_masked_accuracy(labels, scores), rtol=1e-6
    )


def test_nothing_seen_gives_zero():
    metric = MaskedAccuracy()
    metric.update_state(np.zeros((2, 3), "int32"), np.ones((2, 3, 4), "float32"))
    assert float(metric.result()) == 0.0


def test_config_round_trip():
    metric = MaskedAccuracy(pad_id=3, name="acc")
    config = metric.get_config()
    assert config["pad_id"] == 3 and config["name"] == "acc"
    revived = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(revived, MaskedAccuracy)
    assert revived.get_config() == config


@pytest.mark.parametrize("value", [1.5, "pad"])
def test_invalid_pad_id(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `pad_id`, expected an integer or None\. "
        rf"Received: pad_id={value!r}",
    ):
        MaskedAccuracy(pad_id=value)
