"""Mask properties of every attention path, property-tested with hypothesis.

For every combination of compute dtype (float32 / float16 / bfloat16),
dropout (0, or > 0 in training) and weights returned or not (a pytest
cross product, `COMBINATIONS`), over lengths and masks drawn by hypothesis
(random query/key padding masks, causal or not, plus one fixed case with
T != S and a fully masked sequence), every path must satisfy:

1. masked keys get exactly zero weight, so the values and keys at masked
   positions have no influence on the output;
2. fully masked rows (padded queries, queries with no attendable key) give
   finite zeros, outputs and weights, and every other weight row sums to 1;
3. under a causal mask, changing future tokens never changes earlier
   outputs.

Reuse: a path is an `AttentionPath` whose `make(dtype, dropout, seed)`
returns a callable `fn(query, value, query_mask, value_mask, causal,
training, return_weights) -> (output (B, T, F), weights (B, H, T, S) or
None)` as NumPy float32. `fn` must be a deterministic function of its
arguments: with dropout, every call replays the same dropout stream (reset
the layer's seed generator, see `_replay_dropout`).
`check_mask_properties(path, case)` and `check_causal_property(path, case)`
take a case drawn from `mask_cases()` merged with one of `COMBINATIONS`
(`with_options`); another test module can build its own `AttentionPath` and
call them.
"""

import dataclasses
from typing import Callable

import keras
import numpy as np
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from keras import ops

from keras_attention.layers import AdditiveAttention
from keras_attention.layers import AttentionPooling
from keras_attention.layers import MultiplicativeAttention
from keras_attention.layers import ScaledDotProductAttention
from keras_attention.ops import padding_mask
from keras_attention.ops import scaled_dot_product_attention

FEATURES = 4  # D of every path's inputs
MAX_BATCH, MAX_QUERY, MAX_KEY = 3, 5, 6
# Few drawn examples per combination: the combinations themselves are
# enumerated, and each test also runs the fixed `EXPLICIT_*` case.
SETTINGS = settings(max_examples=2, deadline=None, database=None, derandomize=True)
DTYPES = ("float32", "float16", "bfloat16")
DROPOUTS = ((0.0, False), (0.4, True))  # (rate, training)
COMBINATIONS = [
    pytest.param(
        {
            "dtype": dtype,
            "dropout": rate,
            "training": training,
            "return_weights": weights,
        },
        id=f"{dtype}-dropout{rate}-{'weights' if weights else 'output'}",
    )
    for dtype in DTYPES
    for rate, training in DROPOUTS
    for weights in (True, False)
]


@dataclasses.dataclass(frozen=True)
class AttentionPath:
    """One attention implementation under test.

    Attributes:
        name: test id.
        make: `make(dtype, dropout, seed) -> fn` (see the module docstring).
        causal: whether the path supports a causal mask.
        query_mask: whether the path supports a query padding mask (pooling
            has a single learned query and no query mask).
    """

    name: str
    make: Callable
    causal: bool = True
    query_mask: bool = True


def _numpy(x):
    return None if x is None else ops.convert_to_numpy(ops.cast(x, "float32"))


def _policy(dtype):
    return "float32" if dtype == "float32" else f"mixed_{dtype}"


def _replay_dropout(layer):
    """Make every call of `layer` draw the same dropout masks: restore the
    initial state of its seed generator before the call."""
    generator = getattr(layer, "seed_generator", None)
    if generator is None:
        return lambda: None
    initial = ops.convert_to_numpy(generator.state)
    return lambda: generator.state.assign(initial)


def _layer_path(factory):
    """Adapt a query/value layer: `factory(dtype_policy, dropout, seed)`."""

    def make(dtype, dropout, seed):
        keras.utils.set_random_seed(seed)
        layer = factory(_policy(dtype), dropout, seed)
        replay = _replay_dropout(layer)

        def fn(query, value, query_mask, value_mask, causal, training, return_weights):
            replay()
            result = layer(
                query,
                value,
                query_mask=query_mask,
                value_mask=value_mask,
                use_causal_mask=causal,
                return_attention_scores=return_weights,
                training=training,
            )
            if not return_weights:
                return _numpy(result), None
            output, scores = result
            return _numpy(output), _numpy(scores)[:, None]  # (B, 1, T, S)

        return fn

    return make


def _make_ops(dtype, dropout, seed):
    def fn(query, value, query_mask, value_mask, causal, training, return_weights):
        b, t, s = query.shape[0], query.shape[1], value.shape[1]
        q = ops.cast(np.reshape(query, (b, t, 2, 2)), dtype)  # (B, T, H, D)
        kv = ops.cast(np.reshape(value, (b, s, 2, 2))[:, :, :1], dtype)  # (B, S, 1, D)
        result = scaled_dot_product_attention(
            q,
            kv,
            kv,
            mask=padding_mask(value_mask, query_mask),  # (B, 1, T, S)
            causal=causal,
            dropout=dropout,
            seed=seed,
            training=training,
            return_weights=return_weights,
        )
        output, weights = result if return_weights else (result, None)
        assert keras.backend.standardize_dtype(output.dtype) == dtype
        return np.reshape(_numpy(output), (b, t, 4)), _numpy(weights)

    return fn


def _make_pooling(dtype, dropout, seed):
    keras.utils.set_random_seed(seed)
    layer = AttentionPooling(
        num_heads=2, dropout=dropout, seed=seed, dtype=_policy(dtype)
    )
    replay = _replay_dropout(layer)

    def fn(query, value, query_mask, value_mask, causal, training, return_weights):
        replay()
        result = layer(
            value,
            mask=value_mask,
            return_attention_scores=return_weights,
            training=training,
        )
        output, scores = result if return_weights else (result, None)
        weights = None if scores is None else _numpy(scores)[:, :, None]
        return _numpy(output)[:, None], weights  # (B, 1, D), (B, H, 1, S)

    return fn


PATHS = [
    AttentionPath("ops", _make_ops),
    AttentionPath(
        "scaled_dot_product",
        _layer_path(
            lambda dtype, dropout, seed: ScaledDotProductAttention(
                dropout=dropout, seed=seed, dtype=dtype
            )
        ),
    ),
    AttentionPath(
        "additive",
        _layer_path(
            lambda dtype, dropout, seed: AdditiveAttention(
                units=3, dropout=dropout, seed=seed, dtype=dtype
            )
        ),
    ),
    *[
        AttentionPath(
            f"multiplicative_{score}",
            _layer_path(
                lambda dtype, dropout, seed, score=score: MultiplicativeAttention(
                    score=score,
                    units=3,
                    sequence_length=MAX_KEY,
                    dropout=dropout,
                    seed=seed,
                    dtype=dtype,
                )
            ),
        )
        for score in ("dot", "general", "concat", "location")
    ],
    AttentionPath("pooling", _make_pooling, causal=False, query_mask=False),
]


@st.composite
def mask_cases(draw, self_attention=False):
    """A random case: shapes, data seed and masks (the call options come
    from `COMBINATIONS`, see `with_options`)."""
    batch = draw(st.integers(1, MAX_BATCH))
    query_len = draw(st.integers(2 if self_attention else 1, MAX_QUERY))
    key_len = query_len if self_attention else draw(st.integers(1, MAX_KEY))
    value_mask = draw(arrays(bool, (batch, key_len)))
    if draw(st.booleans()):
        value_mask[-1] = False  # one sequence with no attendable key
    query_mask = draw(arrays(bool, (batch, query_len)))
    if self_attention:
        query_mask = value_mask.copy()
    return {
        "seed": draw(st.integers(0, 2**16)),
        "batch": batch,
        "query_len": query_len,
        "key_len": key_len,
        "query_mask": query_mask,
        "value_mask": value_mask,
        "causal": draw(st.booleans()),
    }


def with_options(case, options):
    """A drawn case merged with one of `COMBINATIONS`."""
    return {**case, **options}


# Run in every combination besides the drawn cases: T != S, a padded query,
# keys masked in the middle, and a sequence with no attendable key.
EXPLICIT_CROSS = {
    "seed": 7,
    "batch": 2,
    "query_len": 3,
    "key_len": 5,
    "query_mask": np.array([[True, True, False], [True, True, True]]),
    "value_mask": np.array([[True, False, True, False, True], [False] * 5]),
    "causal": True,
}
EXPLICIT_SELF = {
    "seed": 11,
    "batch": 2,
    "query_len": 4,
    "key_len": 4,
    "query_mask": np.array([[True, False, True, True], [True, True, True, False]]),
    "value_mask": np.array([[True, False, True, True], [True, True, True, False]]),
    "causal": True,
}


def _inputs(case):
    rng = np.random.default_rng(case["seed"])
    query = rng.standard_normal((case["batch"], case["query_len"], FEATURES))
    value = rng.standard_normal((case["batch"], case["key_len"], FEATURES))
    return query.astype("float32"), value.astype("float32"), rng


def _effective_masks(path, case):
    """What the path should apply: (query_mask, causal, full (B, T, S) mask)."""
    query_mask = case["query_mask"] if path.query_mask else None
    causal = case["causal"] and path.causal
    full = case["value_mask"][:, None, :]
    if query_mask is not None:
        full = full & query_mask[:, :, None]
    if causal:
        t, s = case["query_len"], case["key_len"]
        full = full & (np.arange(s)[None, :] <= np.arange(t)[:, None])
    if not path.query_mask:
        full = full[:, :1]  # one pooled "row"
    return query_mask, causal, np.asarray(full, bool)


def _make(path, case):
    return path.make(case["dtype"], case["dropout"], case["seed"])


def _run(fn, path, case, query, value, causal):
    query_mask = case["query_mask"] if path.query_mask else None
    return fn(
        query,
        value,
        query_mask,
        case["value_mask"],
        causal,
        case["training"],
        case["return_weights"],
    )


def check_mask_properties(path, case):
    """Properties 1 and 2 on one case (cross-attention, T != S allowed)."""
    query, value, rng = _inputs(case)
    _, causal, full = _effective_masks(path, case)
    fn = _make(path, case)
    output, weights = _run(fn, path, case, query, value, causal)
    assert np.all(np.isfinite(output)), "non-finite output"
    empty = ~full.any(-1)  # (B, T) rows with nothing to attend
    assert np.all(output[empty] == 0), "a fully masked row is not zero"
    if weights is not None:
        assert np.all(np.isfinite(weights)), "non-finite weights"
        masked = np.broadcast_to(~full[:, None], weights.shape)
        assert np.all(weights[masked] == 0), "a masked key has non-zero weight"
        sums = weights.sum(-1)  # (B, H, T)
        live = np.broadcast_to(~empty[:, None], sums.shape)
        tol = 1e-5 if case["dtype"] == "float32" else 3e-2
        np.testing.assert_allclose(sums[live], 1.0, atol=tol)
    # Rewriting what sits at masked key positions changes nothing.
    hidden = ~case["value_mask"]
    if hidden.any():
        noisy = value.copy()
        noisy[hidden] = 10.0 * rng.standard_normal((int(hidden.sum()), FEATURES))
        noisy_output, _ = _run(fn, path, case, query, noisy, causal)
        np.testing.assert_array_equal(noisy_output, output)


def check_causal_property(path, case):
    """Property 3 on one self-attention case: outputs before a cut position
    do not depend on the tokens from it on."""
    x, _, rng = _inputs(case)
    length = case["query_len"]
    cut = int(rng.integers(1, length))  # length >= 2: a real prefix
    changed = x.copy()
    changed[:, cut:] = 10.0 * rng.standard_normal(changed[:, cut:].shape)
    fn = _make(path, case)
    before, _ = _run(fn, path, case, x, x, True)
    after, _ = _run(fn, path, case, changed, changed, True)
    assert np.all(np.isfinite(before)) and np.all(np.isfinite(after))
    np.testing.assert_array_equal(after[:, :cut], before[:, :cut])


@pytest.mark.parametrize("options", COMBINATIONS)
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
@SETTINGS
@example(case=EXPLICIT_CROSS)
@given(case=mask_cases())
def test_masked_keys_and_fully_masked_rows(path, options, case):
    check_mask_properties(path, with_options(case, options))


@pytest.mark.parametrize("options", COMBINATIONS)
@pytest.mark.parametrize("path", [p for p in PATHS if p.causal], ids=lambda p: p.name)
@SETTINGS
@example(case=EXPLICIT_SELF)
@given(case=mask_cases(self_attention=True))
def test_causal_future_does_not_change_past(path, options, case):
    check_causal_property(path, with_options(case, options))


def test_combinations_cover_the_cross_product():
    seen = {
        (o["dtype"], o["dropout"] > 0 and o["training"], o["return_weights"])
        for o in (p.values[0] for p in COMBINATIONS)
    }
    assert seen == {
        (dtype, active, weights)
        for dtype in DTYPES
        for active in (False, True)
        for weights in (False, True)
    }


def test_properties_detect_a_leaking_path():
    """The checks can fail: a path that ignores the masks is caught."""

    def make(dtype, dropout, seed):
        def fn(query, value, query_mask, value_mask, causal, training, return_weights):
            weights = np.full((len(query), 1, query.shape[1], value.shape[1]), 1.0 / value.shape[1])
            return np.einsum("bts,bsd->btd", weights[:, 0], value), weights

        return fn

    leaky = AttentionPath("leaky", make)
    case = {
        "seed": 0,
        "batch": 1,
        "query_len": 3,
        "key_len": 3,
        "query_mask": np.array([[True, True, False]]),
        "value_mask": np.array([[True, False, True]]),
        "causal": True,
        "dropout": 0.0,
        "training": False,
        "return_weights": True,
        "dtype": "float32",
    }
    with pytest.raises(AssertionError):
        check_mask_properties(leaky, case)
    with pytest.raises(AssertionError):
        check_causal_property(leaky, dict(case, query_mask=case["value_mask"]))
