"""Multi-head attention with grouped heads, position-bias and rotary hooks, KV cache."""

import inspect
import math
import numbers
import string

import keras
from keras import ops

from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.layers.attention.token_projection import TokenProjection
from keras_attention.ops import blockwise_attention
from keras_attention.ops import mask_fill_value
from keras_attention.ops import merge_masks
from keras_attention.ops import scaled_dot_product_attention
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_last_dim
from keras_attention.utils.validation import check_non_negative_int
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rank
from keras_attention.utils.validation import check_rate
from keras_attention.utils.validation import check_same_batch


ATTENTION_IMPLEMENTATIONS = ("auto", "full", "blockwise", "fused")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _shape(x):
    return tuple(x.shape)


def _check_scalar_int_tensor(value, name, python_kind):
    """`value` (not a Python int) must be a scalar integer tensor."""
    expected = f"{python_kind} or a scalar integer tensor"
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{expected}. Received: {name}={value!r} of type "
            f"{type(value).__name__}"
        )
    dtype = keras.backend.standardize_dtype(value.dtype)
    if len(_shape(value)) != 0 or not dtype.startswith(("int", "uint")):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{expected}. Received: {name}.shape={_shape(value)}, "
            f"{name}.dtype={dtype}"
        )


def _known_mismatch(got, expected):
    """True when two static sizes are both known and differ."""
    return got is not None and expected is not None and got != expected


def _takes_implementation(cls):
    """Whether `cls.__init__` names `attention_implementation`.

    Subclasses with their own attention maths (efficient kernels) do not
    list it, and then it is not part of their config.
    """
    return "attention_implementation" in inspect.signature(cls.__init__).parameters


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, with grouped/multi-query heads and a KV cache.

    Projects `query`, `key` and `value` into heads, attends with scaled dot
    products and projects the concatenated heads back:
    `MultiHead(Q, K, V) = Concat(head_1, ..., head_H) W_O` with
    `head_i = softmax(Q W_Q_i (K W_K_i)^T / sqrt(key_dim) + bias) V W_V_i`.
    Called like `keras.layers.MultiHeadAttention`, and with
    `num_key_value_heads == num_heads` it holds the same weights in the same
    order (query, key, value, attention_output; kernels `(features, heads,
    head_size)`), so `set_weights(keras_mha.get_weights())` reproduces a
    Keras layer.

    Shape letters: B batch, T query length, S key length, H query heads,
    K key/value heads, D `key_dim`, Dv `value_dim`, S_max cache length.
    Inputs are rank 3, `(B, T, features)` and `(B, S, features)`.

    Beyond the Keras layer:

    - `num_key_value_heads=K` with `num_heads % K == 0` shares each key/value
      head among `num_heads / K` query heads (grouped-query attention;
      `K=1` is multi-query attention). Keys and values are never repeated in
      memory.
    - `attention_bias` adds a float `(B or 1, H or 1, T, S)` tensor to the
      logits, e.g. the output of `RelativePositionBias` or `ALiBiBias`.
    - `rotary_embedding` rotates the projected queries and keys (RoPE); when
      decoding, the new tokens' positions start at `cache_index`. It is meant
      for self-attention: in cross-attention queries and keys both count
      from 0.
    - A KV cache for incremental decoding (see `cache` below and
      `get_initial_cache` / `compute_cross_attention_cache`).
    - The softmax runs in float32; a query row with no attendable key
      returns a zero context (so the layer outputs the output-projection
      bias there), where `keras.layers.MultiHeadAttention` spreads uniform
      weights over all keys. Mask fill values are float16-safe.
    - `attention_implementation` picks how the attention itself is computed
      (same result up to float rounding): `"full"` forms the `(B, H, T, S)`
      weights (`keras_attention.ops.scaled_dot_product_attention`);
      `"blockwise"` is exact attention in `O(T + S)` memory with an online
      softmax and a recomputing backward pass
      (`keras_attention.ops.blockwise_attention`), for long sequences;
      `"fused"` calls the backend's `keras.ops.dot_product_attention` (cuDNN
      / flash kernels on JAX and PyTorch GPUs); `"auto"` (default) uses
      `"fused"` on JAX and PyTorch (when `value_dim` equals `key_dim`,
      which their kernels need) and `"full"` on TensorFlow.
      `"blockwise"` and `"fused"` apply no attention dropout (they require
      `dropout=0`); a call with `return_attention_scores=True`, and an
      `"auto"` call with active dropout, take the `"full"` path.

    Args:
        num_heads: number of query heads H.
        key_dim: size of each query/key head D.
        value_dim: size of each value head Dv. Defaults to `key_dim`.
        num_key_value_heads: number of key/value heads K; must divide
            `num_heads`. Defaults to `num_heads` (standard multi-head
            attention); `1` gives multi-query attention.
        dropout: dropout rate on the attention weights, in `[0, 1)`; active
            in training only.
        use_bias: whether the four projections have biases.
        output_shape: size (int) or shape (tuple) of the output features,
            besides batch and sequence axes. Defaults to the query's last
            dimension.
        rotary_embedding: `None`, or a weightless position layer called as
            `layer(x, start_index=...)` on `(B, T, heads, D)` tensors (such as
            `RotaryEmbedding`), or its serialized config. It is re-created
            from its config so that it runs under this layer's dtype policy.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: regularizer of the projection kernels.
        bias_regularizer: regularizer of the projection biases.
        seed: optional integer seed of the attention dropout.
        attention_implementation: `"auto"`, `"full"`, `"blockwise"` or
            `"fused"`, see above.

    Call arguments:
        query: `(B, T, features)` tensor.
        value: `(B, S, features)` tensor. With a cross-attention cache
            (`cache` given, `cache_index=None`) it is only used for its
            shape and mask.
        key: optional `(B, S, features)` tensor; defaults to `value`.
        query_mask: optional `(B, T)` mask, filled in by Keras from the
            query's implicit mask. Padded query rows attend nothing.
        value_mask: optional `(B, S)` mask of attendable keys (implicit from
            `value`). With a self-attention cache it must cover the cache,
            `(B, S_max)`.
        key_mask: optional `(B, S)` mask, merged with `value_mask`.
        attention_mask: optional boolean `(B, T, S)` or `(B, H, T, S)` mask,
            `True` where the query may attend the key. With a cache, S is
            `S_max`.
        use_causal_mask: whether query `i` may only attend keys `j <= i`
            (`j <= i + cache_index` when decoding).
        return_attention_scores: whether to also return the `(B, H, T, S)`
            attention weights (before dropout).
        training: whether dropout is active.
        attention_bias: optional float tensor of shape `(B or 1, H or 1,
            T or 1, S or 1)` added to the logits. With a cache, S is
            `S_max` and T the new tokens.
        cache: optional tuple `(key_cache, value_cache)` of projected keys
            `(B, S_max, K, D)` and values `(B, S_max, K, Dv)`. With
            `cache_index`, the keys/values of the T new tokens are written
            at `cache_index` and the queries attend cache positions
            `j < cache_index + T`. Without `cache_index`, the cache holds
            precomputed cross-attention keys/values and is used as is.
        cache_index: int or scalar int tensor, the position of the first new
            token in the cache (self-attention decoding).

    Returns:
        `output` of shape `(B, T, output features)`; `(output, scores)` when
        `return_attention_scores=True`; `(output, cache)` or
        `(output, scores, cache)` when a `cache` is given, where `cache` is
        the updated `(key_cache, value_cache)` tuple.

    Raises:
        ValueError: on invalid constructor arguments (`num_heads=0`,
            `key_dim <= 0`, `dropout` outside `[0, 1)`, `num_key_value_heads`
            not dividing `num_heads`, an unknown `attention_implementation`
            or `"blockwise"` / `"fused"` with `dropout > 0`, ...), inputs
            that are not rank 3, masks
            or biases whose shapes do not fit `(B, H, T, S)`, and a `cache`
            or `cache_index` that does not fit the layer or the inputs.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_attention.layers import MultiHeadAttention
    mha = MultiHeadAttention(num_heads=4, key_dim=8, num_key_value_heads=2)
    x = np.random.rand(2, 5, 16).astype("float32")
    y = mha(x, x, use_causal_mask=True)  # (2, 5, 16)
    # Incremental decoding: one token at a time through a KV cache.
    cache = mha.get_initial_cache(batch_size=2, max_length=5)
    for i in range(5):
        step, cache = mha(x[:, i:i + 1], x[:, i:i + 1], use_causal_mask=True,
                          cache=cache, cache_index=i)
    last, full = keras.ops.convert_to_numpy(step), keras.ops.convert_to_numpy(y)
    np.testing.assert_allclose(last[:, 0], full[:, 4], atol=1e-5)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", section 3.2.2.
        Shazeer, 2019, "Fast Transformer Decoding: One Write-Head is All You
        Need" (multi-query attention).
        Ainslie et al., 2023, "GQA: Training Generalized Multi-Query
        Transformer Models from Multi-Head Checkpoints".
        Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position
        Embedding".
    """

    # Whether `return_attention_scores=True` gives `(B, H, T, S)` weights;
    # kernels that form none (Performer, Linformer) set it to False.
    returns_attention_scores = True

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        rotary_embedding=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        seed=None,
        attention_implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.key_dim = check_positive_int(key_dim, "key_dim")
        self.value_dim = check_positive_int(value_dim, "value_dim", allow_none=True)
        self.num_key_value_heads = check_positive_int(
            num_key_value_heads, "num_key_value_heads", allow_none=True
        )
        if (
            self.num_key_value_heads is not None
            and self.num_heads % self.num_key_value_heads != 0
        ):
            raise ValueError(
                "Received an invalid value for argument `num_key_value_heads`, "
                f"expected a divisor of `num_heads`={self.num_heads}. "
                f"Received: num_key_value_heads={num_key_value_heads!r}"
            )
        self.dropout = check_rate(dropout, "dropout")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.output_shape = self._check_output_shape(output_shape)
        if seed is not None and not _is_int(seed):
            raise ValueError(
                "Received an invalid value for argument `seed`, expected an "
                f"integer or None. Received: seed={seed!r}"
            )
        self.seed = seed
        self.attention_implementation = check_one_of(
            attention_implementation,
            "attention_implementation",
            ATTENTION_IMPLEMENTATIONS,
        )
        if attention_implementation in ("blockwise", "fused") and self.dropout > 0:
            raise ValueError(
                "Received incompatible arguments `attention_implementation` and "
                f"`dropout`: the {attention_implementation!r} implementation "
                "applies no attention dropout, expected dropout=0. Received: "
                f"attention_implementation={attention_implementation!r}, "
                f"dropout={self.dropout}"
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.rotary_embedding = self._own_rotary_embedding(rotary_embedding)
        if self.rotary_embedding is not None and self.key_dim % 2:
            raise ValueError(
                "Received an invalid value for argument `key_dim`, expected an "
                "even head size with a `rotary_embedding`, which rotates "
                f"query and key features in pairs. Received: key_dim={self.key_dim}"
            )

        self._kv_heads = self.num_key_value_heads or self.num_heads
        self._value_dim = self.value_dim or self.key_dim
        if (
            attention_implementation == "fused"
            and self._value_dim != self.key_dim
            and keras.backend.backend() != "tensorflow"
        ):
            raise ValueError(
                "Received incompatible arguments `attention_implementation` and "
                "`value_dim`: the 'fused' implementation "
                "(keras.ops.dot_product_attention) needs value heads as large "
                f"as key heads on the {keras.backend.backend()} backend, "
                f"expected value_dim={self.key_dim} or None. Received: "
                f"value_dim={self.value_dim}, key_dim={self.key_dim}"
            )
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    # ------------------------------------------------------------------ #
    # Constructor helpers
    # ------------------------------------------------------------------ #
    @staticmethod
    def _check_output_shape(output_shape):
        if output_shape is None:
            return None
        if _is_int(output_shape) and output_shape >= 1:
            return int(output_shape)
        if (
            isinstance(output_shape, (tuple, list))
            and len(output_shape) > 0
            and all(_is_int(d) and d >= 1 for d in output_shape)
        ):
            return tuple(int(d) for d in output_shape)
        raise ValueError(
            "Received an invalid value for argument `output_shape`, expected "
            "None, a positive integer or a non-empty tuple of positive "
            f"integers. Received: output_shape={output_shape!r}"
        )

    def _own_rotary_embedding(self, rotary_embedding):
        """A private copy of the rotary layer under this layer's dtype policy."""
        if rotary_embedding is None:
            return None
        if isinstance(rotary_embedding, dict):
            rotary_embedding = keras.layers.deserialize(rotary_embedding)
        if not isinstance(rotary_embedding, keras.layers.Layer):
            raise ValueError(
                "Received an invalid value for argument `rotary_embedding`, "
                "expected None, a Keras layer or its serialized config. "
                f"Received: rotary_embedding={rotary_embedding!r}"
            )
        if rotary_embedding.weights:
            raise ValueError(
                "Received an invalid value for argument `rotary_embedding`, "
                "expected a layer without weights (it is re-created from its "
                "config). Received: rotary_embedding="
                f"{rotary_embedding.name} with {len(rotary_embedding.weights)} "
                "weights"
            )
        config = rotary_embedding.get_config()
        config["dtype"] = self.dtype_policy
        return rotary_embedding.__class__.from_config(config)

    def _sublayer_kwargs(self):
        # Fresh initializer instances per projection (a seeded initializer
        # instance shared by several kernels would repeat its values).
        return dict(
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.dtype_policy,
        )

    def _projection(self, equation, output_shape, bias_axes, name):
        layer = TokenProjection(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            name=name,
            **self._sublayer_kwargs(),
        )
        # A per-token map: the token mask passes through (the masks are
        # applied by this layer; this only avoids a "mask dropped" warning).
        layer.supports_masking = True
        return layer

    def _output_dims(self, query_shape):
        if self.output_shape is None:
            return (query_shape[-1],)
        if isinstance(self.output_shape, int):
            return (self.output_shape,)
        return self.output_shape

    # ------------------------------------------------------------------ #
    # Build
    # ------------------------------------------------------------------ #
    def build(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        for name, shape in (
            ("query", query_shape),
            ("value", value_shape),
            ("key", key_shape),
        ):
            check_rank(shape, name, 3)
            if shape[-1] is None:
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, "
                    "expected a known last (feature) dimension. Received: "
                    f"{name}.shape={shape}"
                )
        if _known_mismatch(key_shape[1], value_shape[1]):
            raise ValueError(
                "Received incompatible arguments `key` and `value`, expected "
                "the same length (axis 1). Received: "
                f"key.shape={key_shape}, value.shape={value_shape}"
            )
        self._input_dims = {
            "query": query_shape[-1],
            "value": value_shape[-1],
            "key": key_shape[-1],
        }
        heads, kv_heads = self.num_heads, self._kv_heads
        # (B, T, F) x (F, H, D) -> (B, T, H, D), as keras.layers.MultiHeadAttention.
        self.query_dense = self._projection(
            "btf,fnh->btnh", (None, heads, self.key_dim), "nh", "query"
        )
        self.query_dense.build(query_shape)
        self.key_dense = self._projection(
            "bsf,fnh->bsnh", (None, kv_heads, self.key_dim), "nh", "key"
        )
        self.key_dense.build(key_shape)
        self.value_dense = self._projection(
            "bsf,fnh->bsnh", (None, kv_heads, self._value_dim), "nh", "value"
        )
        self.value_dense.build(value_shape)
        out_dims = self._output_dims(query_shape)
        out_letters = string.ascii_lowercase[-len(out_dims) :]  # "z", "yz", ...
        self.output_dense = self._projection(
            f"btnh,nh{out_letters}->bt{out_letters}",
            (None, *out_dims),
            out_letters,
            "attention_output",
        )
        self.output_dense.build(
            (query_shape[0], query_shape[1], heads, self._value_dim)
        )
        if self.rotary_embedding is not None and not self.rotary_embedding.built:
            self.rotary_embedding.build(
                (query_shape[0], query_shape[1], heads, self.key_dim)
            )

    def _project_inputs(self, query, value, key=None, start_index=0):
        """`(query_proj (B, T, H, D), key_proj (B, S, K, D), value_proj
        (B, S, K, Dv))`, rotated from position `start_index` when the layer
        has a rotary embedding; `key` defaults to `value`. For the
        subclasses' own attention maths (efficient kernels)."""
        key = value if key is None else key
        query_proj = self.query_dense(query)  # (B, T, H, D)
        key_proj = self.key_dense(key)  # (B, S, K, D)
        value_proj = self.value_dense(value)  # (B, S, K, Dv)
        if self.rotary_embedding is not None:
            query_proj = self.rotary_embedding(query_proj, start_index=start_index)
            key_proj = self.rotary_embedding(key_proj, start_index=start_index)
        return query_proj, key_proj, value_proj

    # ------------------------------------------------------------------ #
    # Cache helpers
    # ------------------------------------------------------------------ #
    def get_initial_cache(self, batch_size, max_length, dtype=None, rewind=0):
        """An all-zero self-attention KV cache.

        Args:
            batch_size: B (int or scalar tensor).
            max_length: S_max, the number of positions the cache can hold.
            dtype: dtype of the cache; defaults to the compute dtype.
            rewind: non-negative int, how far before the newest position
                written a later call may start (re-decoding, as the
                generators do after prefilling a padded prompt). A cache of
                every position allows any rewind, so here it is only
                checked; `LocalAttention`'s rolling cache keeps `rewind`
                more slots for it.

        Returns:
            Tuple `(key_cache, value_cache)` of shapes `(B, S_max, K, D)` and
            `(B, S_max, K, Dv)`.

        Example:

        ```python
        from keras_attention.layers import MultiHeadAttention
        mha = MultiHeadAttention(num_heads=4, key_dim=8, num_key_value_heads=1)
        k, v = mha.get_initial_cache(batch_size=2, max_length=10)
        tuple(k.shape)  # (2, 10, 1, 8)
        ```
        """
        self._check_cache_size(batch_size, max_length, rewind)
        dtype = dtype or self.compute_dtype
        key_cache = ops.zeros(
            (batch_size, max_length, self._kv_heads, self.key_dim), dtype=dtype
        )  # (B, S_max, K, D)
        value_cache = ops.zeros(
            (batch_size, max_length, self._kv_heads, self._value_dim), dtype=dtype
        )  # (B, S_max, K, Dv)
        return key_cache, value_cache

    @staticmethod
    def _check_cache_size(batch_size, max_length, rewind=0):
        """`get_initial_cache`'s sizes: positive ints (tensors pass), and a
        non-negative int `rewind`."""
        for name, size in (("batch_size", batch_size), ("max_length", max_length)):
            if _is_int(size):
                check_positive_int(size, name)
            else:
                _check_scalar_int_tensor(size, name, "a positive int")
        check_non_negative_int(rewind, "rewind")

    def _may_have_wrapped(self, cache_length, cache_index, query_length):
        """Whether a cached call may find slot `s` of the cache not holding
        position `s`: never for this cache of every position in order
        (`LocalAttention`'s rolling cache overrides it)."""
        return False

    def compute_cross_attention_cache(self, value, key=None):
        """Project an encoder output once, for cached cross-attention.

        Pass the result as `cache` (with `cache_index=None`) at every
        decoding step instead of re-projecting the encoder output.

        Args:
            value: `(B, S, features)` encoder output.
            key: optional `(B, S, features)` tensor; defaults to `value`.

        Returns:
            Tuple `(key_cache, value_cache)` of shapes `(B, S, K, D)` and
            `(B, S, K, Dv)` (keys rotated when `rotary_embedding` is set).

        Raises:
            ValueError: if the layer is not built yet.

        Example:

        ```python
        import keras
        import numpy as np
        from keras_attention.layers import MultiHeadAttention
        mha = MultiHeadAttention(num_heads=2, key_dim=4)
        q = np.random.rand(1, 3, 8).astype("float32")
        enc = np.random.rand(1, 6, 8).astype("float32")
        full = mha(q, enc)
        cache = mha.compute_cross_attention_cache(enc)
        out, _ = mha(q, enc, cache=cache)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out),
                                   keras.ops.convert_to_numpy(full), atol=1e-5)
        ```
        """
        if not self.built:
            raise ValueError(
                f"Layer {self.name} must be built (called once) before "
                "`compute_cross_attention_cache`. Received: an unbuilt layer"
            )
        key = value if key is None else key
        key_proj = self.key_dense(key)  # (B, S, K, D)
        value_proj = self.value_dense(value)  # (B, S, K, Dv)
        if self.rotary_embedding is not None:
            key_proj = self.rotary_embedding(key_proj, start_index=0)
        return key_proj, value_proj

    # ------------------------------------------------------------------ #
    # Argument checks shared by call() and compute_output_spec()
    # ------------------------------------------------------------------ #
    def _check_cache(self, query, cache, cache_index):
        if cache is None:
            if cache_index is not None:
                raise ValueError(
                    "Received an invalid value for argument `cache_index`, "
                    "expected None when no `cache` is given. Received: "
                    f"cache_index={cache_index!r}"
                )
            return None
        if not isinstance(cache, (tuple, list)) or len(cache) != 2:
            raise ValueError(
                "Received an invalid value for argument `cache`, expected a "
                "tuple (key_cache, value_cache). Received: "
                f"cache of type {type(cache).__name__}"
            )
        key_cache, value_cache = cache
        expected = {
            "key_cache": (self._kv_heads, self.key_dim),
            "value_cache": (self._kv_heads, self._value_dim),
        }
        for name, tensor in (("key_cache", key_cache), ("value_cache", value_cache)):
            shape = _shape(tensor)
            heads, dim = expected[name]
            if (
                len(shape) != 4
                or _known_mismatch(shape[2], heads)
                or _known_mismatch(shape[3], dim)
            ):
                raise ValueError(
                    "Received an invalid value for argument `cache`, expected "
                    f"`{name}` of shape (batch, max_length, {heads}, {dim}). "
                    f"Received: {name}.shape={shape}"
                )
        k_shape, v_shape = _shape(key_cache), _shape(value_cache)
        if _known_mismatch(k_shape[0], v_shape[0]) or _known_mismatch(
            k_shape[1], v_shape[1]
        ):
            raise ValueError(
                "Received an invalid value for argument `cache`, expected "
                "`key_cache` and `value_cache` with the same batch size and "
                f"length. Received: key_cache.shape={k_shape}, "
                f"value_cache.shape={v_shape}"
            )
        q_shape = _shape(query)
        if _known_mismatch(q_shape[0], k_shape[0]):
            raise ValueError(
                "Received an invalid value for argument `cache`, expected "
                f"batch size {q_shape[0]} (the query's). Received: "
                f"key_cache.shape={k_shape}"
            )
        if cache_index is not None and _is_int(cache_index):
            t, s_max = q_shape[1], k_shape[1]
            if cache_index < 0 or (
                t is not None and s_max is not None and cache_index + t > s_max
            ):
                raise ValueError(
                    "Received an invalid value for argument `cache_index`, "
                    "expected 0 <= cache_index <= max_length - query_length = "
                    f"{s_max} - {t}. Received: cache_index={cache_index}"
                )
        elif cache_index is not None:
            _check_scalar_int_tensor(cache_index, "cache_index", "an int")
        return k_shape[1]

    def _check_attention_bias(self, bias, query, key_length):
        shape = _shape(bias)
        expected = (_shape(query)[0], self.num_heads, _shape(query)[1], key_length)
        names = ("batch", "num_heads", "query_length", "key_length")
        if len(shape) != 4 or any(
            got not in (None, 1) and _known_mismatch(got, want)
            for got, want in zip(shape, expected)
        ):
            wanted = ", ".join(f"{n}={w} or 1" for n, w in zip(names, expected))
            raise ValueError(
                "Received an invalid value for argument `attention_bias`, "
                f"expected a float tensor of shape ({wanted}). Received: "
                f"attention_bias.shape={shape}"
            )

    def _check_attention_mask_heads(self, attention_mask):
        shape = _shape(attention_mask)
        if len(shape) == 4 and shape[1] not in (None, 1, self.num_heads):
            raise ValueError(
                "Received an invalid value for argument `attention_mask`, "
                f"expected num_heads={self.num_heads} or 1 on axis 1. "
                f"Received: attention_mask.shape={shape}"
            )

    def _check_call_args(self, query, value, key, attention_mask, attention_bias,
                         cache, cache_index):
        for name, tensor in (("query", query), ("value", value), ("key", key)):
            if tensor is not None:
                check_rank(_shape(tensor), name, 3)
        if self.built:
            # Inputs must fit the projections built for them.
            check_last_dim(_shape(query), "query", self._input_dims["query"])
            if cache is None or cache_index is not None:
                check_last_dim(_shape(value), "value", self._input_dims["value"])
                if key is not None:
                    check_last_dim(_shape(key), "key", self._input_dims["key"])
        check_same_batch(
            query=_shape(query),
            value=_shape(value),
            key=None if key is None else _shape(key),
        )
        if key is not None and _known_mismatch(_shape(key)[1], _shape(value)[1]):
            raise ValueError(
                "Received incompatible arguments `key` and `value`, expected "
                "the same length (axis 1). Received: "
                f"key.shape={_shape(key)}, value.shape={_shape(value)}"
            )
        cache_length = self._check_cache(query, cache, cache_index)
        key_length = cache_length if cache is not None else _shape(value)[1]
        if (
            cache is not None
            and cache_index is None
            and _known_mismatch(_shape(value)[1], cache_length)
        ):
            raise ValueError(
                "Received an invalid value for argument `cache`, expected a "
                "cross-attention cache as long as `value` "
                f"({_shape(value)[1]}). Received: cache length {cache_length}"
            )
        if attention_mask is not None:
            self._check_attention_mask_heads(attention_mask)
        if attention_bias is not None:
            self._check_attention_bias(attention_bias, query, key_length)
        return key_length

    # ------------------------------------------------------------------ #
    # Call
    # ------------------------------------------------------------------ #
    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        attention_bias=None,
        cache=None,
        cache_index=None,
    ):
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        key = value if key is None else key
        start = 0 if cache_index is None else cache_index

        query_proj = self.query_dense(query)  # (B, T, H, D)
        if self.rotary_embedding is not None:
            query_proj = self.rotary_embedding(query_proj, start_index=start)

        key_proj, value_proj, new_cache, valid_keys = self._keys_and_values(
            query, value, key, cache, cache_index, start
        )

        masks = dict(
            query_mask=query_mask,
            value_mask=value_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
        )
        implementation = self._implementation(return_attention_scores, training)
        if implementation == "blockwise":
            attended = self._blockwise_attention(
                query, query_proj, key_proj, value_proj, masks, valid_keys,
                attention_bias, use_causal_mask, start,
            )
        else:
            # The fused kernel's own causal mask (top-left aligned) serves
            # when nothing else masks; otherwise the causal mask is merged
            # so that fully masked rows are known (and zeroed).
            native_causal = (
                implementation == "fused"
                and use_causal_mask
                # Keras' PyTorch kernel hands a bias to torch as its mask,
                # which torch's own causal flag does not combine with.
                and not (attention_bias is not None and keras.backend.backend() == "torch")
                and _is_int(start)
                and start == 0
                and valid_keys is None
                and all(m is None for m in masks.values())
            )
            mask = compute_attention_mask(
                query,
                key_proj,
                use_causal_mask=use_causal_mask and not native_causal,
                causal_offset=start,
                **masks,
            )
            mask = merge_masks(mask, valid_keys)
            if implementation == "fused":
                attended = self._fused_attention(
                    query_proj, key_proj, value_proj, mask, attention_bias,
                    native_causal,
                )
            else:
                attended = scaled_dot_product_attention(
                    query_proj,
                    key_proj,
                    value_proj,
                    mask=mask,
                    bias=attention_bias,
                    scale=1.0 / math.sqrt(self.key_dim),
                    dropout=self.dropout,
                    seed=self.seed_generator,
                    training=bool(training),
                    return_weights=return_attention_scores,
                )
        scores = None
        if return_attention_scores:
            attended, scores = attended  # (B, T, H, Dv), (B, H, T, S)
        output = self.output_dense(attended)  # (B, T, *output_shape)

        results = (output,)
        if return_attention_scores:
            results += (scores,)
        if cache is not None:
            results += (new_cache,)
        return results[0] if len(results) == 1 else results

    def _keys_and_values(self, query, value, key, cache, cache_index, start):
        """Projected keys and values, through the cache when one is given.

        Returns:
            `(key_proj (B, S, K, D), value_proj (B, S, K, Dv), new_cache,
            valid_keys)`: with a self-attention cache the new tokens'
            keys/values are written at `cache_index`, S is S_max and
            `valid_keys` is the boolean `(1, 1, 1, S_max)` mask of the filled
            positions; with a cross-attention cache (`cache_index=None`) the
            cache is the keys/values. `new_cache` and `valid_keys` are `None`
            without a cache.
        """
        if cache is not None and cache_index is None:
            # Cross-attention: the cache holds the projected keys/values.
            key_proj = ops.cast(cache[0], self.compute_dtype)  # (B, S, K, D)
            value_proj = ops.cast(cache[1], self.compute_dtype)  # (B, S, K, Dv)
            return key_proj, value_proj, (key_proj, value_proj), None
        key_proj = self.key_dense(key)  # (B, T or S, K, D)
        value_proj = self.value_dense(value)  # (B, T or S, K, Dv)
        if self.rotary_embedding is not None:
            key_proj = self.rotary_embedding(key_proj, start_index=start)
        if cache is None:
            return key_proj, value_proj, None, None
        index = ops.cast(cache_index, "int32")
        starts = (0, index, 0, 0)
        key_proj = ops.slice_update(
            ops.cast(cache[0], self.compute_dtype), starts, key_proj
        )  # (B, S_max, K, D)
        value_proj = ops.slice_update(
            ops.cast(cache[1], self.compute_dtype), starts, value_proj
        )  # (B, S_max, K, Dv)
        filled = index + ops.shape(query)[1]
        positions = ops.arange(ops.shape(key_proj)[1], dtype="int32")
        valid_keys = ops.reshape(
            ops.less(positions, filled), (1, 1, 1, -1)
        )  # (1, 1, 1, S_max)
        return key_proj, value_proj, (key_proj, value_proj), valid_keys

    # ------------------------------------------------------------------ #
    # Attention implementations
    # ------------------------------------------------------------------ #
    def _implementation(self, return_attention_scores, training):
        """The path of one call: "full", "blockwise" or "fused"."""
        if return_attention_scores:
            return "full"  # the weights are the full matrix
        choice = self.attention_implementation
        if choice != "auto":
            return choice
        if (
            keras.backend.backend() in ("jax", "torch")
            and not (training and self.dropout > 0)
            and self._value_dim == self.key_dim  # the backend kernels need it
        ):
            return "fused"
        return "full"

    def _blockwise_attention(self, query, query_proj, key_proj, value_proj,
                             masks, valid_keys, attention_bias,
                             use_causal_mask, start):
        # Each mask is built by the shared helper but kept separate: the
        # blockwise kernel ANDs them block by block, so `(B, 1, T, 1)` and
        # `(B, 1, 1, S)` token masks never broadcast to `(B, 1, T, S)`, and
        # the causal mask is generated per block.
        parts = [
            compute_attention_mask(query, key_proj, **{name: value})
            for name, value in masks.items()
            if value is not None
        ]
        return blockwise_attention(
            query_proj,
            key_proj,
            value_proj,
            mask=[m for m in parts + [valid_keys] if m is not None],
            bias=attention_bias,
            causal=bool(use_causal_mask),
            causal_offset=start,
            scale=1.0 / math.sqrt(self.key_dim),
        )  # (B, T, H, Dv)

    def _fused_attention(self, query_proj, key_proj, value_proj, mask, bias,
                         is_causal):
        """`keras.ops.dot_product_attention`, with zero rows where no key is
        attendable (the backend kernels give such rows uniform weights)."""
        if mask is not None:
            while len(mask.shape) < 4:
                mask = ops.expand_dims(mask, 0)  # (B|1, H|1, T|1, S)
        grouped = self._kv_heads < self.num_heads
        if grouped and (
            # Keras' TensorFlow kernel repeats grouped heads only for K > 1;
            (keras.backend.backend() == "tensorflow" and self._kv_heads == 1)
            # its fallback kernel (used when Dv != D, e.g. by JAX) reshapes
            # grouped heads with D in place of Dv.
            or self._value_dim != self.key_dim
        ):
            groups = self.num_heads // self._kv_heads
            key_proj = ops.repeat(key_proj, groups, axis=2)  # (B, S, H, D)
            value_proj = ops.repeat(value_proj, groups, axis=2)  # (B, S, H, Dv)
        kernel_mask = mask
        if bias is not None:
            bias = ops.cast(bias, query_proj.dtype)
            if mask is not None and keras.backend.backend() == "torch":
                # Keras' PyTorch kernel takes a mask or a bias, not both.
                fill = ops.cast(mask_fill_value(query_proj.dtype), bias.dtype)
                bias = ops.where(mask, bias, fill)
                kernel_mask = None
        attended = ops.dot_product_attention(
            query_proj,
            key_proj,
            value_proj,
            bias=bias,
            mask=kernel_mask,
            scale=1.0 / math.sqrt(self.key_dim),
            is_causal=is_causal,
        )  # (B, T, H, Dv)
        if mask is None:
            return attended
        any_key = ops.any(mask, axis=-1)  # (B|1, H|1, T|1)
        any_key = ops.transpose(any_key, (0, 2, 1))[..., None]  # (B|1, T|1, H|1, 1)
        return attended * ops.cast(any_key, attended.dtype)

    def compute_mask(self, query, previous_mask=None):
        """The output keeps the query's padding mask."""
        return previous_mask

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        return query_shape[:-1] + tuple(self._output_dims(query_shape))

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        attention_bias=None,
        cache=None,
        cache_index=None,
    ):
        key_length = self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        dtype = self.compute_dtype
        output = keras.KerasTensor(
            self.compute_output_shape(query.shape, value.shape), dtype=dtype
        )
        results = (output,)
        if return_attention_scores:
            batch, q_len = _shape(query)[:2]
            results += (
                keras.KerasTensor(
                    (batch, self.num_heads, q_len, key_length), dtype=dtype
                ),
            )
        if cache is not None:
            results += (
                tuple(keras.KerasTensor(_shape(c), dtype=dtype) for c in cache),
            )
        return results[0] if len(results) == 1 else results

    # ------------------------------------------------------------------ #
    # Serialization
    # ------------------------------------------------------------------ #
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "num_key_value_heads": self.num_key_value_heads,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self.output_shape,
                "rotary_embedding": (
                    None
                    if self.rotary_embedding is None
                    else keras.layers.serialize(self.rotary_embedding)
                ),
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(
                    self.bias_regularizer
                ),
                "seed": self.seed,
            }
        )
        if _takes_implementation(type(self)):
            config["attention_implementation"] = self.attention_implementation
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        rotary = config.get("rotary_embedding")
        if isinstance(rotary, dict):
            config["rotary_embedding"] = keras.layers.deserialize(rotary)
        return super().from_config(config)
