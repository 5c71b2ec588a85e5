"""The shared layer test harness: every public layer's test calls it first.

`run_layer_test` checks the Keras contract that users rely on:

1. config round trip (`from_config(get_config())`) and
   `keras.layers.serialize` / `deserialize`;
2. weight counts after build;
3. eager output structure and shapes (pass data with T != S);
4. symbolic (functional `keras.Input`) output structure and shapes equal the
   eager ones, dimension by dimension, with an unknown batch size (the only
   dimension allowed to stay `None`); layers with separate query and
   key/value inputs are also checked with T != S (see
   `_check_cross_lengths`);
5. one compiled `fit` step (`jit_compile=True` by default) with a finite loss;
6. `.keras` save and `keras.models.load_model(..., safe_mode=True)` without
   `custom_objects`, giving identical outputs;
7. `mixed_float16` and `mixed_bfloat16`: every sub-layer carries the policy,
   variables stay float32, float outputs are in the compute dtype and finite.
"""

import os
import tempfile

import keras
import numpy as np
from keras import ops

_BASE_CONFIG_KEYS = {"name", "trainable", "dtype"}


def _as_dict(input_data):
    if isinstance(input_data, dict):
        return dict(input_data)
    return {None: input_data}


def _call(layer, inputs, call_kwargs):
    if None in inputs:
        return layer(inputs[None], **call_kwargs)
    return layer(**inputs, **call_kwargs)


def _flatten(x):
    return keras.tree.flatten(x)


def _structure(x):
    return keras.tree.map_structure(lambda _: 0, x)


def _shapes(x):
    return [tuple(t.shape) for t in _flatten(x)]


def _is_float(t):
    return "float" in str(keras.backend.standardize_dtype(t.dtype))


def _make_inputs(inputs):
    symbolic = {}
    for name, value in inputs.items():
        value = np.asarray(value)
        symbolic[name] = keras.Input(
            shape=value.shape[1:],
            dtype=keras.backend.standardize_dtype(value.dtype),
            name=name or "inputs",
        )
    return symbolic


def _model_inputs(symbolic):
    return symbolic[None] if None in symbolic else symbolic


def _model_data(inputs):
    return inputs[None] if None in inputs else inputs


def _check_config(layer_cls, layer, init_kwargs):
    config = layer.get_config()
    import inspect

    params = set(inspect.signature(layer_cls.__init__).parameters) - {
        "self",
        "kwargs",
    }
    extra = set(config) - params - _BASE_CONFIG_KEYS
    assert not extra, (
        f"{layer_cls.__name__}.get_config() holds keys that are not "
        f"constructor arguments: {sorted(extra)}"
    )
    missing = params - set(config)
    assert not missing, (
        f"{layer_cls.__name__}.get_config() misses constructor arguments "
        f"{sorted(missing)}"
    )
    revived = layer_cls.from_config(config)
    assert revived.get_config() == config, "from_config(get_config()) differs"
    serialized = keras.layers.serialize(layer)
    deserialized = keras.layers.deserialize(serialized)
    assert isinstance(deserialized, layer_cls)
    assert deserialized.get_config() == config, "serialize/deserialize differs"
    for key, value in init_kwargs.items():
        serialized_object = isinstance(config[key], dict)  # e.g. "he_normal"
        if isinstance(value, (int, float, str, bool, type(None))) and not (
            serialized_object
        ):
            assert config[key] == value, (
                f"get_config()[{key!r}]={config[key]!r}, passed {value!r}"
            )
            assert getattr(layer, key) == value, (
                f"public attribute `{key}` does not hold the constructor value"
            )


def _training_model(layer_cls, init_kwargs, inputs, call_kwargs):
    symbolic = _make_inputs(inputs)
    layer = layer_cls(**init_kwargs)
    outputs = _call(layer, symbolic, call_kwargs)
    first = _flatten(outputs)[0]
    return keras.Model(_model_inputs(symbolic), first)


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    call_kwargs=None,
    expected_output_shape=None,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    run_training=True,
    run_saving=True,
    run_mixed_precision=True,
    jit_compile=True,
    float32_outputs=(),
    atol=1e-6,
):
    """Run the shared Keras-contract checks on one layer configuration.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a NumPy array (passed positionally) or a dict mapping
            call-argument names (`query`, `value`, ...) to arrays. Use
            different query and key lengths for attention layers.
        call_kwargs: non-tensor call arguments (e.g. `use_causal_mask`).
        expected_output_shape: a shape tuple, or a structure of shape tuples
            matching the outputs (tuples of outputs are lists here).
        expected_num_trainable_weights: count after build, or `None` to skip.
        expected_num_non_trainable_weights: count after build, or `None`.
        run_training: run one compiled `fit` step.
        run_saving: check the `.keras` round trip.
        run_mixed_precision: check `mixed_float16` and `mixed_bfloat16`.
        jit_compile: passed to `compile` for the fit step.
        float32_outputs: indices (in the flattened outputs) that stay
            float32 under mixed precision by design (e.g. attention weights).
        atol: tolerance of the save/load output comparison.

    Returns:
        The eager outputs of the first layer instance.
    """
    call_kwargs = dict(call_kwargs or {})
    inputs = _as_dict(input_data)
    keras.utils.set_random_seed(1234)

    # 1. Config round trip and serialization.
    layer = layer_cls(**init_kwargs)
    _check_config(layer_cls, layer, init_kwargs)

    # 2-3. Eager call, weights, output structure and shapes.
    eager_out = _call(layer, inputs, call_kwargs)
    assert layer.built, f"{layer_cls.__name__} is not built after a call"
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, (
            f"expected {expected_num_trainable_weights} trainable weights, got "
            f"{len(layer.trainable_weights)}"
        )
    if expected_num_non_trainable_weights is not None:
        assert (
            len(layer.non_trainable_weights) == expected_num_non_trainable_weights
        ), (
            f"expected {expected_num_non_trainable_weights} non-trainable "
            f"weights, got {len(layer.non_trainable_weights)}"
        )
    if expected_output_shape is not None:
        expected = _flatten_shapes(expected_output_shape)
        assert _shapes(eager_out) == expected, (
            f"eager output shapes {_shapes(eager_out)} != expected {expected}"
        )
    for t in _flatten(eager_out):
        if _is_float(t):
            assert np.all(np.isfinite(ops.convert_to_numpy(t))), "non-finite output"

    # 4. Symbolic call matches eager structure and shapes.
    symbolic = _make_inputs(inputs)
    sym_out = _call(layer_cls(**init_kwargs), symbolic, call_kwargs)
    assert _structure(sym_out) == _structure(eager_out), (
        f"symbolic output structure {_structure(sym_out)} != eager "
        f"{_structure(eager_out)}"
    )
    _check_symbolic_shapes(_shapes(sym_out), _shapes(eager_out))
    _check_cross_lengths(layer_cls, init_kwargs, inputs, call_kwargs)

    # 5. One compiled fit step.
    if run_training:
        model = _training_model(layer_cls, init_kwargs, inputs, call_kwargs)
        target = np.zeros(
            tuple(_flatten(eager_out)[0].shape), dtype="float32"
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=jit_compile
        )
        history = model.fit(
            _model_data(inputs), target, batch_size=len(target), epochs=1, verbose=0
        )
        assert np.isfinite(history.history["loss"][-1]), "non-finite fit loss"

    # 6. .keras save and safe-mode load.
    if run_saving:
        symbolic = _make_inputs(inputs)
        outs = _call(layer_cls(**init_kwargs), symbolic, call_kwargs)
        model = keras.Model(_model_inputs(symbolic), outs)
        data = _model_data(inputs)
        before = _flatten(model.predict(data, verbose=0))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            loaded = keras.models.load_model(path, safe_mode=True)
        after = _flatten(loaded.predict(data, verbose=0))
        assert len(before) == len(after)
        for b, a in zip(before, after):
            np.testing.assert_allclose(
                np.asarray(b, dtype="float64"),
                np.asarray(a, dtype="float64"),
                atol=atol,
                err_msg="outputs differ after .keras save/load",
            )

    # 7. Mixed precision.
    if run_mixed_precision:
        for policy in ("mixed_float16", "mixed_bfloat16"):
            mp_layer = layer_cls(**init_kwargs, dtype=policy)
            mp_out = _call(mp_layer, inputs, call_kwargs)
            compute = policy.split("_")[1]
            for sub in mp_layer._flatten_layers(include_self=True):
                assert sub.dtype_policy.name == policy, (
                    f"sub-layer {sub.name} has policy {sub.dtype_policy.name}, "
                    f"expected {policy}"
                )
            for w in mp_layer.weights:
                assert keras.backend.standardize_dtype(w.dtype) == "float32", (
                    f"variable {w.path} is {w.dtype}, expected float32"
                )
            for i, t in enumerate(_flatten(mp_out)):
                if not _is_float(t):
                    continue
                dtype = keras.backend.standardize_dtype(t.dtype)
                wanted = "float32" if i in float32_outputs else compute
                assert dtype == wanted, (
                    f"output {i} under {policy} is {dtype}, expected {wanted}"
                )
                assert np.all(
                    np.isfinite(ops.convert_to_numpy(ops.cast(t, "float32")))
                ), f"non-finite output under {policy}"
    return eager_out


def _check_symbolic_shapes(symbolic_shapes, eager_shapes):
    """Each symbolic output dimension equals the eager one; `None` is allowed
    only on the batch axis, the one input dimension left unknown."""
    for s_shape, e_shape in zip(symbolic_shapes, eager_shapes):
        assert len(s_shape) == len(e_shape), (
            f"symbolic shape {s_shape} has another rank than eager {e_shape}"
        )
        for axis, (s_dim, e_dim) in enumerate(zip(s_shape, e_shape)):
            if s_dim is None and axis == 0:
                continue
            assert s_dim == e_dim, (
                f"symbolic shape {s_shape} disagrees with eager {e_shape} on "
                f"axis {axis} (None is only allowed on the unknown batch axis)"
            )


# Call arguments holding the attending sequence (length T) and the attended
# one (length S) of layers that take them separately.
_LENGTH_PAIRS = (
    ("query", ("value", "key")),
    ("decoder_sequence", ("encoder_sequence",)),
)


def _check_cross_lengths(layer_cls, init_kwargs, inputs, call_kwargs):
    """Layers with separate query and key/value inputs are checked with
    T != S, where shape bugs mixing up the two lengths show.

    A call with T == S is taken as causal self-attention when it sets
    `use_causal_mask=True`. Otherwise, when the inputs are only the
    sequences, the harness derives T != S itself (the key/value sequences
    lengthened by one step) and compares symbolic and eager shapes on it;
    with other tensor inputs (masks, biases) it fails: pass T != S.
    """
    for query_name, value_names in _LENGTH_PAIRS:
        value_names = [n for n in value_names if n in inputs]
        if query_name not in inputs or not value_names:
            continue
        t = np.shape(inputs[query_name])[1]
        if any(np.shape(inputs[n])[1] != t for n in value_names):
            continue
        if call_kwargs.get("use_causal_mask"):
            continue
        others = sorted(set(inputs) - {query_name, *value_names})
        assert not others, (
            f"{layer_cls.__name__} is tested with `{query_name}` and "
            f"`{value_names[0]}` of the same length {t} (and the inputs "
            f"{others}): pass different query and key lengths (T != S)"
        )
        longer = dict(inputs)
        for name in value_names:
            x = np.asarray(inputs[name])
            longer[name] = np.concatenate([x, x[:, :1]], axis=1)  # (B, S + 1, ...)
        eager = _call(layer_cls(**init_kwargs), longer, call_kwargs)
        first = _flatten(eager)[0]
        assert tuple(first.shape)[1] == t, (
            f"with T={t} and S={t + 1}, the first output has shape "
            f"{tuple(first.shape)}, expected length T on axis 1"
        )
        symbolic = _call(layer_cls(**init_kwargs), _make_inputs(longer), call_kwargs)
        assert _structure(symbolic) == _structure(eager), (
            f"with T != S, symbolic output structure {_structure(symbolic)} != "
            f"eager {_structure(eager)}"
        )
        _check_symbolic_shapes(_shapes(symbolic), _shapes(eager))


def _flatten_shapes(expected):
    """Flatten a structure of shape tuples into a list of tuples."""
    if isinstance(expected, tuple) and all(
        isinstance(d, (int, type(None))) for d in expected
    ):
        return [expected]
    result = []
    for item in expected:
        result.extend(_flatten_shapes(item))
    return result
