"""MultiHeadAttention mask properties (hypothesis), on the plain and cached
paths:

- masked keys get zero weight and have no influence on the output;
- fully masked query rows give finite zeros;
- under `use_causal_mask`, changing future tokens never changes earlier
  outputs.

Every combination of dtype policy (float32, mixed_float16, mixed_bfloat16),
dropout (0, or > 0 in training) and scores returned or not runs on the
`"full"` implementation (a pytest cross product, `COMBINATIONS`); the
`"blockwise"` and `"fused"` implementations (no dropout, and scores take the
full path) run under each policy. Hypothesis draws only lengths, masks and
head layouts, plus one fixed `@example` per test (T != S, fully masked rows,
grouped heads).
"""

import keras
import numpy as np
import pytest
from backend_utils import to_numpy
from harness import run_layer_test
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_attention.layers import MultiHeadAttention

SETTINGS = settings(
    max_examples=2,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]
DROPOUTS = ((0.0, False), (0.4, True))  # (rate, training)
HEADS = [(2, 2), (2, 1), (4, 2)]  # (num_heads, num_key_value_heads)
SUM_TOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 2e-2}


def _combinations():
    for implementation in ("full", "blockwise", "fused"):
        for policy in POLICIES:
            for dropout, training in DROPOUTS:
                for scores in (True, False):
                    if implementation != "full" and (dropout > 0 or scores):
                        continue  # dropout=0 only; scores take the full path
                    yield pytest.param(
                        dict(
                            implementation=implementation,
                            policy=policy,
                            dropout=dropout,
                            training=training,
                            scores=scores,
                        ),
                        id=f"{implementation}-{policy}-dropout{dropout}-"
                        + ("scores" if scores else "output"),
                    )


COMBINATIONS = list(_combinations())


def _layer(heads, options):
    num_heads, kv_heads = heads
    return MultiHeadAttention(
        num_heads, 4, num_key_value_heads=kv_heads, dropout=options["dropout"],
        use_bias=False, seed=5, dtype=options["policy"],
        attention_implementation=options["implementation"],
    )


class _SameDropout:
    """Calls the layer twice with the same dropout draws (seed state reset)."""

    def __init__(self, layer):
        self.layer = layer
        self.state = None

    def __call__(self, *args, **kwargs):
        generator = self.layer.seed_generator
        if self.state is None:
            self.state = ops.convert_to_numpy(generator.state)
        else:
            generator.state.assign(self.state)
        return self.layer(*args, **kwargs)


@st.composite
def cases(draw):
    batch = draw(st.integers(1, 2))
    t = draw(st.integers(1, 4))
    s = draw(st.integers(1, 5))
    return dict(
        batch=batch, t=t, s=s,
        heads=draw(st.sampled_from(HEADS)),
        causal=draw(st.booleans()),
        key_mask=np.array(draw(st.lists(st.booleans(), min_size=batch * s,
                                        max_size=batch * s))).reshape(batch, s),
        query_mask=np.array(draw(st.lists(st.booleans(), min_size=batch * t,
                                          max_size=batch * t))).reshape(batch, t),
        seed=draw(st.integers(0, 2**16)),
    )


@pytest.mark.parametrize("options", COMBINATIONS)
@SETTINGS
@example(
    case=dict(
        batch=2, t=3, s=5, heads=(4, 2), causal=True,
        key_mask=np.array([[True, False, True, False, True], [False] * 5]),
        query_mask=np.array([[True, True, False], [True, True, True]]),
        seed=3,
    )
)
@given(case=cases())
def test_masked_keys_get_zero_weight_and_empty_rows_give_zeros(options, case):
    case = {**case, **options}
    rng = np.random.default_rng(case["seed"])
    b, t, s = case["batch"], case["t"], case["s"]
    query = rng.normal(size=(b, t, 8)).astype("float32")
    value = rng.normal(size=(b, s, 8)).astype("float32")
    layer = _layer(case["heads"], case)
    call = _SameDropout(layer)
    kwargs = dict(
        query_mask=case["query_mask"], value_mask=case["key_mask"],
        use_causal_mask=case["causal"], training=case["training"],
        return_attention_scores=case["scores"],
    )
    result = call(query, value, **kwargs)
    out = to_numpy(result[0] if case["scores"] else result, "float64")
    assert np.all(np.isfinite(out))

    allowed = case["query_mask"][:, :, None] & case["key_mask"][:, None, :]  # (B, T, S)
    if case["causal"]:
        allowed = allowed & np.tril(np.ones((t, s), bool))
    empty = ~allowed.any(-1)  # (B, T) fully masked query rows
    np.testing.assert_array_equal(out[empty], 0.0)  # no bias: exact zeros

    if case["scores"]:
        scores = to_numpy(result[1], "float64")  # (B, H, T, S)
        blocked = np.broadcast_to(~allowed[:, None], scores.shape)
        np.testing.assert_array_equal(scores[blocked], 0.0)
        dtype = keras.backend.standardize_dtype(result[1].dtype)
        sums = scores.sum(-1)  # (B, H, T)
        full = np.broadcast_to(~empty[:, None], sums.shape)
        np.testing.assert_allclose(sums[full], 1.0, atol=SUM_TOL[dtype])

    # Masked keys have no influence: change their (key and value) features.
    noisy = value.copy()
    noisy[~case["key_mask"]] = 10 * rng.normal(size=(int((~case["key_mask"]).sum()), 8))
    again = call(query, noisy, **kwargs)
    np.testing.assert_array_equal(to_numpy(again[0] if case["scores"] else again, "float64"), out)


@st.composite
def causal_cases(draw):
    t = draw(st.integers(2, 6))
    return dict(
        t=t,
        split=draw(st.integers(0, t - 2)),  # outputs 0..split must not change
        heads=draw(st.sampled_from(HEADS)),
        padded=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


@pytest.mark.parametrize("options", COMBINATIONS)
@SETTINGS
@example(case=dict(t=5, split=1, heads=(2, 1), padded=True, seed=2))
@given(case=causal_cases())
def test_future_tokens_never_change_earlier_outputs(options, case):
    case = {**case, **options}
    rng = np.random.default_rng(case["seed"])
    t, split = case["t"], case["split"]
    x = rng.normal(size=(2, t, 8)).astype("float32")
    future = x.copy()
    future[:, split + 1:] = 5 * rng.normal(size=(2, t - split - 1, 8))
    mask = rng.random((2, t)) > 0.3 if case["padded"] else None
    layer = _layer(case["heads"], case)
    call = _SameDropout(layer)
    kwargs = dict(use_causal_mask=True, training=case["training"],
                  return_attention_scores=case["scores"], value_mask=mask)
    a = keras.tree.flatten(call(x, x, **kwargs))
    b = keras.tree.flatten(call(future, future, **kwargs))
    np.testing.assert_array_equal(
        to_numpy(a[0], "float64")[:, : split + 1], to_numpy(b[0], "float64")[:, : split + 1]
    )
    assert np.all(np.isfinite(to_numpy(a[0], "float64")))
    if case["scores"]:
        np.testing.assert_array_equal(
            to_numpy(a[1], "float64")[:, :, : split + 1],
            to_numpy(b[1], "float64")[:, :, : split + 1],
        )
        np.testing.assert_array_equal(
            to_numpy(a[1], "float64")[:, :, np.arange(t)[:, None] < np.arange(t)[None, :]], 0.0
        )


@st.composite
def cached_cases(draw):
    t = draw(st.integers(1, 4))  # new tokens in the chunk
    return dict(
        prefix=draw(st.integers(0, 3)),  # tokens already in the cache
        t=t,
        split=draw(st.integers(0, t - 1)),
        extra=draw(st.integers(0, 2)),  # unused cache slots
        causal=draw(st.booleans()),
        heads=draw(st.sampled_from(HEADS)),
        seed=draw(st.integers(0, 2**16)),
    )


@pytest.mark.parametrize("options", COMBINATIONS)
@SETTINGS
@example(
    case=dict(prefix=2, t=3, split=0, extra=2, causal=True, heads=(4, 2), seed=4)
)
@given(case=cached_cases())
def test_cached_path_is_causal_and_ignores_unfilled_slots(options, case):
    case = {**case, **options}
    rng = np.random.default_rng(case["seed"])
    prefix, t, split = case["prefix"], case["t"], case["split"]
    max_length = prefix + t + case["extra"]
    x = rng.normal(size=(2, prefix + t, 8)).astype("float32")
    layer = _layer(case["heads"], case)
    cache = layer.get_initial_cache(2, max_length)
    if prefix:
        _, cache = layer(x[:, :prefix], x[:, :prefix], use_causal_mask=case["causal"],
                         cache=cache, cache_index=0)
    # Garbage in the slots after the chunk must not matter either.
    garbage = tuple(
        ops.slice_update(c, (0, prefix + t, 0, 0), ops.cast(
            100 * rng.normal(size=(2, case["extra"], *c.shape[2:])), c.dtype))
        for c in cache
    ) if case["extra"] else cache
    chunk = x[:, prefix:]
    future = chunk.copy()
    if case["causal"]:
        future[:, split + 1:] = 5 * rng.normal(size=(2, t - split - 1, 8))
    else:
        split = t - 1  # no future change: every output must stay the same
    call = _SameDropout(layer)
    kwargs = dict(use_causal_mask=case["causal"], cache_index=prefix,
                  training=case["training"], return_attention_scores=case["scores"])
    a = call(chunk, chunk, cache=cache, **kwargs)
    b = call(future, future, cache=garbage, **kwargs)
    np.testing.assert_array_equal(
        to_numpy(a[0], "float64")[:, : split + 1], to_numpy(b[0], "float64")[:, : split + 1]
    )
    assert np.all(np.isfinite(to_numpy(a[0], "float64")))
    if case["scores"]:
        scores = to_numpy(a[1], "float64")  # (B, H, T, S_max)
        if case["causal"]:
            visible = np.arange(max_length)[None, :] <= prefix + np.arange(t)[:, None]
        else:
            visible = np.broadcast_to(np.arange(max_length) < prefix + t, (t, max_length))
        np.testing.assert_array_equal(scores[..., ~visible], 0.0)


def test_combinations_cover_every_dtype_dropout_and_scores_choice():
    seen = {
        (o["implementation"], o["policy"], o["dropout"] > 0 and o["training"], o["scores"])
        for o in (p.values[0] for p in COMBINATIONS)
    }
    full = {
        ("full", policy, active, scores)
        for policy in POLICIES
        for active in (False, True)
        for scores in (False, True)
    }
    fast = {
        (implementation, policy, False, False)
        for implementation in ("blockwise", "fused")
        for policy in POLICIES
    }
    assert seen == full | fast


def test_harness_explicit_attention_mask_multi_dim_output():
    rng = np.random.default_rng(0)
    mask = rng.random((2, 3, 5)) > 0.3
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 2, "key_dim": 4, "output_shape": (2, 3)},
        {
            "query": rng.normal(size=(2, 3, 8)).astype("float32"),
            "value": rng.normal(size=(2, 5, 8)).astype("float32"),
            "attention_mask": mask,
        },
        expected_output_shape=(2, 3, 2, 3),
        run_mixed_precision=False,
    )
