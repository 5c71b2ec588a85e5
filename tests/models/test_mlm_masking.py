import numpy as np
import pytest

from keras_attention.models import mlm_mask_tokens

VOCAB, MASK, CLS, SEP = 1000, 1, 2, 3


def corpus(seed=0, shape=(400, 250)):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, VOCAB, shape)
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[::3, 200:] = 0  # padded rows
    return ids


def test_80_10_10_statistics_on_a_large_sample():
    ids = corpus()
    inputs, labels, weights = mlm_mask_tokens(
        ids, VOCAB, MASK, special_token_ids=(CLS, SEP), seed=123
    )
    candidates = (ids != 0) & (ids != CLS) & (ids != SEP)
    selected = weights == 1
    n, k = candidates.sum(), selected.sum()
    # 15% of the non-special tokens, within 4 standard deviations.
    assert abs(k / n - 0.15) < 4 * np.sqrt(0.15 * 0.85 / n)
    assert not (selected & ~candidates).any()
    masked = selected & (inputs == MASK)
    unchanged = selected & (inputs == ids)
    replaced = selected & ~masked & ~unchanged
    for part, rate in ((masked, 0.8), (replaced, 0.1), (unchanged, 0.1)):
        # A random token can equal the original (1/996): a tiny bias.
        assert abs(part.sum() / k - rate) < 4 * np.sqrt(rate * (1 - rate) / k) + 0.001
    # Random tokens are drawn uniformly from the non-special ids.
    drawn = inputs[replaced]
    assert drawn.min() >= 4 and (drawn != MASK).all()
    counts = np.bincount(drawn, minlength=VOCAB)[4:]
    expected = len(drawn) / (VOCAB - 4)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < (VOCAB - 5) + 6 * np.sqrt(2 * (VOCAB - 5))
    # Nothing else changes; labels and weights mark exactly the selection.
    np.testing.assert_array_equal(inputs[~selected], ids[~selected])
    np.testing.assert_array_equal(labels[selected], ids[selected])
    assert (labels[~selected] == 0).all()
    assert inputs.dtype == labels.dtype == np.int32 and weights.dtype == np.float32


def test_seed_controls_the_draw():
    ids = corpus(shape=(4, 50))
    a = mlm_mask_tokens(ids, VOCAB, MASK, seed=7)
    b = mlm_mask_tokens(ids, VOCAB, MASK, seed=7)
    c = mlm_mask_tokens(ids, VOCAB, MASK, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
    rng = np.random.default_rng(0)
    first = mlm_mask_tokens(ids, VOCAB, MASK, seed=rng)[2]
    second = mlm_mask_tokens(ids, VOCAB, MASK, seed=rng)[2]
    assert not np.array_equal(first, second)  # a Generator moves on


def test_custom_rates():
    ids = corpus(shape=(100, 100))
    inputs, _, weights = mlm_mask_tokens(
        ids, VOCAB, MASK, selection_rate=1.0, mask_token_rate=1.0, random_token_rate=0.0, seed=0
    )
    # Without special_token_ids, CLS and SEP are ordinary tokens here.
    candidates = ids != 0
    assert (weights == candidates).all()
    assert (inputs[candidates] == MASK).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(selection_rate=0.0), "selection_rate"),
        (dict(selection_rate=1.5), "selection_rate"),
        (dict(mask_token_rate=-0.1), "mask_token_rate"),
        (dict(random_token_rate=2), "random_token_rate"),
        (dict(mask_token_rate=0.7, random_token_rate=0.4), "expected a sum <= 1"),
        (dict(mask_token_id=VOCAB), "mask_token_id"),
        (dict(special_token_ids=(-1,)), "special_token_ids"),
        (dict(vocabulary_size=1), "vocabulary_size"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    args = dict(vocabulary_size=VOCAB, mask_token_id=MASK)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mlm_mask_tokens(np.array([[5, 6]]), **args)


def test_bad_token_ids_raise():
    with pytest.raises(ValueError, match="expected ids in"):
        mlm_mask_tokens(np.array([[5, VOCAB]]), VOCAB, MASK)
    with pytest.raises(ValueError, match="integer array"):
        mlm_mask_tokens(np.array([[5.0]]), VOCAB, MASK)
    with pytest.raises(ValueError, match="at least one non-special"):
        mlm_mask_tokens(np.array([[2]]), 3, 1, special_token_ids=(2,))
