import numpy as np
import pytest
from backend_utils import to_numpy

from keras_attention.generation import length_penalty
from keras_attention.generation import top_k_logits
from keras_attention.generation import top_p_logits
from keras_attention.generation.logits_processing import NEG


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
def test_length_penalty_is_gnmt(alpha):
    lengths = np.array([0, 1, 2, 7, 40])
    expected = (5.0 + lengths) ** alpha / 6.0 ** alpha
    np.testing.assert_allclose(to_numpy(length_penalty(lengths, alpha)), expected, rtol=1e-6)
    assert float(length_penalty(1, alpha)) == pytest.approx(1.0)


def test_top_k_keeps_the_k_largest():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 11)).astype("float32")
    for k in (1, 3, 11):
        out = to_numpy(top_k_logits(logits, k))
        for row, got in zip(logits, out):
            keep = np.argsort(-row)[:k]
            np.testing.assert_array_equal(got[keep], row[keep])
            assert (np.delete(got, keep) == NEG).all()


def test_top_p_keeps_the_smallest_nucleus():
    probs = np.array([[0.5, 0.05, 0.3, 0.15], [0.25, 0.25, 0.25, 0.25]], "float32")
    logits = np.log(probs)
    out = to_numpy(top_p_logits(logits, 0.7))
    # Row 0: 0.5 then 0.3 reach 0.8 >= 0.7: keep {0, 2}.
    np.testing.assert_array_equal(out[0] > NEG / 2, [True, False, True, False])
    # Row 1: three tokens are needed to reach 0.7 (ties with the third kept).
    assert (out[1] > NEG / 2).sum() >= 3
    np.testing.assert_array_equal(to_numpy(top_p_logits(logits, 1.0)), logits)
    tiny = to_numpy(top_p_logits(logits, 1e-6))
    np.testing.assert_array_equal(tiny[0] > NEG / 2, [True, False, False, False])


def test_top_p_matches_a_numpy_reference():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 20)).astype("float32") * 2
    for p in (0.1, 0.5, 0.9):
        out = to_numpy(top_p_logits(logits, p))
        for row, got in zip(logits, out):
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            order = np.argsort(-probs)
            before = np.cumsum(probs[order]) - probs[order]
            kept = set(order[before < p].tolist())
            assert {i for i in range(20) if got[i] > NEG / 2} == kept
