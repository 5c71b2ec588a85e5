"""Performer attention: softmax attention approximated by FAVOR+ features."""

import keras
from keras import ops

from keras_attention.layers.attention import efficient_math
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class PerformerAttention(MultiHeadAttention):
    """Multi-head attention in linear time with FAVOR+ random features.

    The softmax kernel `exp(q . k / sqrt(D))` is estimated with positive
    orthogonal random features, `phi(x) = exp(W x - |x|^2 / 2) / sqrt(M)`
    on `x` scaled by `D^-1/4` (M rows of `W`, in orthogonal blocks), so
    `Attention(Q, K, V) ~ phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1)` costs
    `O((T + S) M D)` and never forms the T x S score matrix. Causal
    attention uses prefix sums (chunked, exact within a chunk). The
    projections are those of `MultiHeadAttention` (same weights, same call).

    Numerics: the features are computed in float32 with constants
    subtracted in the exponent that cancel in the ratio: for the keys the
    largest exponent of the sequence, for each query row the one that makes
    the largest term of its denominator `phi(q) . sum_j phi(k_j)` equal to
    `1 / sqrt(M)` (`efficient_math.positive_random_features`). So long
    queries and keys, which training produces as attention sharpens, do not
    drive the denominators towards zero, where their reciprocals' gradients
    overflow (with a per-row maximum alone, a classifier's training reached
    denominators near 1e-20 and NaN after 600 steps).

    Features are fixed, stored as the non-trainable weight
    `random_projection` (drawn at build from `seed`, saved with the model,
    identical after reload). With `redraw_features=True` every training call
    draws a fresh `W` (the paper's feature redrawing); inference uses the
    stored one. The approximation error shrinks as `num_random_features`
    grows.

    Shape letters: B batch, T query length, S key length, H query heads,
    K key/value heads, D `key_dim`, Dv `value_dim`, M random features.

    Padding: masked keys contribute nothing; padded queries and queries with
    no attendable key return a zero context. Not available, because the
    T x S matrix is never formed: an explicit `attention_mask`,
    `attention_bias`, `return_attention_scores`, attention `dropout`, a
    cross-attention cache. Each raises a `ValueError` naming the argument.

    Decoding: the cache (`get_initial_cache`) is a running state, not a
    list of positions: `phi(K)^T [V, 1]` of the keys so far (float32
    `(B, K, M, Dv + 1)`), their common stabilizer and a per-row count. Each
    call attends the state and its own new tokens and adds the new keys,
    so cached steps give the estimate of a full causal pass at `O(M Dv)`
    per generated token and head, whatever the context length, in memory
    that does not grow with it. `value_mask` / `key_mask` cover every
    position of the sequence (as for `MultiHeadAttention`'s cache); keys
    at positions the state already holds are not added again.

    Args:
        num_heads: number of query heads H.
        key_dim: size of each query/key head D.
        num_random_features: number M of random features.
        redraw_features: whether each training call draws new random
            features.
        value_dim: size of each value head Dv. Defaults to `key_dim`.
        num_key_value_heads: number of key/value heads K; must divide
            `num_heads`. Defaults to `num_heads`.
        dropout: must be 0: there are no attention weights to drop (kept
            for the `MultiHeadAttention` constructor interface).
        use_bias: whether the four projections have biases.
        output_shape: size (int) or shape (tuple) of the output features.
            Defaults to the query's last dimension.
        rotary_embedding: `None`, or a weightless position layer (such as
            `RotaryEmbedding`) applied to projected queries and keys, or its
            serialized config.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: regularizer of the projection kernels.
        bias_regularizer: regularizer of the projection biases.
        seed: optional integer seed of the random features.

    Call arguments:
        query: `(B, T, features)` tensor.
        value: `(B, S, features)` tensor.
        key: optional `(B, S, features)` tensor; defaults to `value`.
        query_mask: optional `(B, T)` mask (implicit from `query`).
        value_mask: optional `(B, S)` mask of attendable keys.
        key_mask: optional `(B, S)` mask, merged with `value_mask`.
        attention_mask: must be `None`.
        use_causal_mask: whether query `i` only attends keys `j <= i`.
        return_attention_scores: must be `False`.
        training: whether to redraw features (with `redraw_features`).
        attention_bias: must be `None`.
        cache: optional running state `(summary, stabilizer, count)` from
            `get_initial_cache`.
        cache_index: position of the first new token in the cache; required
            with a `cache`.

    Returns:
        `(B, T, output features)` tensor; `(output, cache)` when a `cache`
        is given.

    Raises:
        ValueError: on invalid constructor arguments (`num_random_features <
            1`, `dropout > 0`, and those of `MultiHeadAttention`), inputs or
            masks of the wrong shape, or any of the unsupported call
            arguments above.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import PerformerAttention
    layer = PerformerAttention(num_heads=2, key_dim=8, num_random_features=32)
    x = np.random.rand(2, 10, 16).astype("float32")
    y = layer(x, x, use_causal_mask=True)  # (2, 10, 16)
    ```

    References:
        Choromanski et al., 2021, "Rethinking Attention with Performers"
        (FAVOR+), sections 2.2-2.4 and 4.
    """

    # No (T, S) attention weights exist to drop or return: the Transformer
    # blocks default this kernel's attention dropout to 0 (see
    # `TransformerEncoderBlock`'s `attention_dropout`), and
    # `return_attention_scores=True` is refused (plots skip this kernel).
    forms_attention_weights = False
    returns_attention_scores = False

    def __init__(
        self,
        num_heads,
        key_dim,
        num_random_features=256,
        redraw_features=False,
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
        **kwargs,
    ):
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            num_key_value_heads=num_key_value_heads,
            dropout=dropout,
            use_bias=use_bias,
            output_shape=output_shape,
            rotary_embedding=rotary_embedding,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            seed=seed,
            **kwargs,
        )
        if self.dropout != 0:
            raise ValueError(
                "Received an invalid value for argument `dropout`, expected 0 "
                "(PerformerAttention forms no attention weights to drop). "
                f"Received: dropout={dropout!r}"
            )
        self.num_random_features = check_positive_int(
            num_random_features, "num_random_features"
        )
        self.redraw_features = check_bool(redraw_features, "redraw_features")
        self.feature_seed_generator = keras.random.SeedGenerator(seed)

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        def draw(shape, dtype=None):
            return efficient_math.orthogonal_random_features(
                shape[0], shape[1], seed=self.feature_seed_generator
            )  # (M, D)

        self.random_projection = self.add_weight(
            name="random_projection",
            shape=(self.num_random_features, self.key_dim),
            initializer=draw,
            trainable=False,
        )

    def compute_cross_attention_cache(self, value, key=None):
        """Not supported: `PerformerAttention` caches self-attention only.

        Raises:
            ValueError: always.
        """
        efficient_math.reject_cache_method(
            self, "compute_cross_attention_cache",
            "a cross-attention cache",
        )

    def _check_call_args(self, query, value, key, attention_mask, attention_bias,
                         cache, cache_index):
        if cache is not None and cache_index is None:
            efficient_math.reject_argument(
                self, "cache_index", cache_index,
                "the position of the new tokens in a self-attention cache (no "
                "cross-attention cache)",
            )
        reason = "None (the T x S matrix is never formed)"
        if attention_mask is not None:
            efficient_math.reject_argument(
                self, "attention_mask", attention_mask,
                reason,
            )
        if attention_bias is not None:
            efficient_math.reject_argument(
                self, "attention_bias", attention_bias,
                reason,
            )
        return super()._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )

    def _check_scores(self, return_attention_scores):
        if return_attention_scores:
            efficient_math.reject_argument(
                self, "return_attention_scores", return_attention_scores,
                "False (the T x S matrix is never formed)",
            )

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
        self._check_scores(return_attention_scores)
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        key = value if key is None else key
        if cache is not None:
            return self._call_with_cache(
                query, value, key, query_mask, value_mask, key_mask,
                use_causal_mask, cache, cache_index,
            )
        query_proj, key_proj, value_proj = self._project_inputs(
            query, value, key
        )  # (B, T, H, D), (B, S, K, D), (B, S, K, Dv)
        q_mask, k_mask = efficient_math.token_masks(
            query, key_proj, query_mask, value_mask, key_mask
        )
        if training and self.redraw_features:
            projection = efficient_math.orthogonal_random_features(
                self.num_random_features, self.key_dim, seed=self.feature_seed_generator
            )  # (M, D)
        else:
            projection = self.random_projection  # (M, D)
        attended = efficient_math.favor_attention(
            query_proj,
            key_proj,
            value_proj,
            projection,
            causal=use_causal_mask,
            query_mask=q_mask,
            key_mask=k_mask,
        )  # (B, T, H, Dv) float32
        attended = ops.cast(attended, self.compute_dtype)
        return self.output_dense(attended)  # (B, T, *output_shape)

    def get_initial_cache(self, batch_size, max_length, dtype=None, rewind=0):
        """An empty running state for incremental (causal) decoding.

        FAVOR+ needs no per-position cache: the keys and values seen so far
        enter a fixed-size summary, so the state does not grow with
        `max_length` and each decoded token costs the same.

        Args:
            batch_size: B (int or scalar tensor).
            max_length: S_max, the longest sequence decoded (checked as
                for `MultiHeadAttention`; the state does not depend on it).
            dtype: ignored: the state is float32, as the features are
                computed (kept for the `MultiHeadAttention` interface).
            rewind: checked as for `MultiHeadAttention` (a non-negative
                int); the state keeps no positions to rewind to: re-running
                positions below a row's count leaves it unchanged, so they
                must hold the same tokens (as the generators' do).

        Returns:
            Tuple `(summary, stabilizer, count)`: float32
            `(B, K, M, Dv + 1)` zeros (`phi(K)^T [V, 1]` of the keys so
            far), float32 `(B, K)` (their common stabilizer, see
            `efficient_math.favor_running_attention`) and int32 `(B,)`
            (the position after the last key accumulated, per row).

        Example:

        ```python
        from keras_attention.layers import PerformerAttention
        layer = PerformerAttention(num_heads=2, key_dim=4, num_random_features=8)
        summary, stabilizer, count = layer.get_initial_cache(3, max_length=10)
        tuple(summary.shape)  # (3, 2, 8, 5)
        ```
        """
        self._check_cache_size(batch_size, max_length, rewind)
        summary = ops.zeros(
            (batch_size, self._kv_heads, self.num_random_features,
             self._value_dim + 1),
            dtype="float32",
        )  # (B, K, M, Dv + 1)
        stabilizer = ops.full(
            (batch_size, self._kv_heads), efficient_math.NO_STABILIZER,
            dtype="float32",
        )  # (B, K)
        return summary, stabilizer, ops.zeros((batch_size,), dtype="int32")

    def _check_cache(self, query, cache, cache_index):
        if cache is None:
            return super()._check_cache(query, cache, cache_index)
        if not isinstance(cache, (tuple, list)) or len(cache) != 3:
            raise ValueError(
                "Received an invalid value for argument `cache`, expected the "
                "tuple (summary, stabilizer, count) of `get_initial_cache`. "
                f"Received: cache of type {type(cache).__name__}"
                + (f" with {len(cache)} entries"
                   if isinstance(cache, (tuple, list)) else "")
            )
        batch = tuple(query.shape)[0]
        expected = {
            "summary": (batch, self._kv_heads, self.num_random_features,
                        self._value_dim + 1),
            "stabilizer": (batch, self._kv_heads),
            "count": (batch,),
        }
        for (name, want), tensor in zip(expected.items(), cache):
            got = tuple(tensor.shape)
            if len(got) != len(want) or any(
                g is not None and w is not None and g != w for g, w in zip(got, want)
            ):
                raise ValueError(
                    "Received an invalid value for argument `cache`, expected "
                    f"`{name}` of shape {want} (see `get_initial_cache`). "
                    f"Received: {name}.shape={got}"
                )
        if isinstance(cache_index, int) and cache_index < 0:
            raise ValueError(
                "Received an invalid value for argument `cache_index`, expected "
                f"a position >= 0. Received: cache_index={cache_index}"
            )
        return None  # no key length: the state has no positions

    def _call_with_cache(self, query, value, key, query_mask, value_mask, key_mask,
                         use_causal_mask, cache, cache_index):
        """Decoding over the running state (`get_initial_cache`): the new
        tokens at positions `cache_index ..` attend the state and each
        other; the keys at positions at or after the row's `count` (and not
        masked) enter the state. Positions below `count` are already in it
        and are not added again: re-running them (as the generators do for
        the prompts of longer rows) leaves the state unchanged, and their
        queries attend the whole state."""
        query_proj, key_proj, value_proj = self._project_inputs(
            query, value, key, start_index=cache_index
        )  # (B, T, H, D), (B, T, K, D), (B, T, K, Dv)
        summary, stabilizer, count = cache
        index = ops.cast(cache_index, "int32")
        positions = index + ops.arange(ops.shape(query)[1], dtype="int32")  # (T,)
        fresh = ops.greater_equal(positions[None, :], count[:, None])  # (B, T)
        for name, mask in (("value_mask", value_mask), ("key_mask", key_mask)):
            if mask is not None:
                fresh = ops.logical_and(
                    fresh, self._new_tokens_mask(mask, name, cache_index, query)
                )
        attended, (summary, stabilizer) = efficient_math.favor_running_attention(
            query_proj, key_proj, value_proj, self.random_projection,
            (summary, stabilizer), fresh, causal=use_causal_mask,
        )  # (B, T, H, Dv) float32
        if query_mask is not None:
            attended = attended * ops.cast(query_mask, "float32")[:, :, None, None]
        count = ops.maximum(
            count, ops.max(ops.where(fresh, positions[None, :] + 1, 0), axis=1)
        )  # (B,)
        attended = ops.cast(attended, self.compute_dtype)
        return self.output_dense(attended), (summary, stabilizer, count)

    @staticmethod
    def _new_tokens_mask(mask, name, cache_index, query):
        """The `(B, T)` entries at the new tokens' positions of a `(B, S)`
        mask over the whole sequence (`S >= cache_index + T`)."""
        mask = ops.cast(mask, "bool")
        length = query.shape[1]
        short = (len(mask.shape) == 2 and mask.shape[1] is not None
                 and length is not None and isinstance(cache_index, int)
                 and mask.shape[1] < cache_index + length)
        if len(mask.shape) != 2 or short:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected a "
                "(batch, sequence_length) mask over every position, at least "
                "cache_index + query_length long. Received: "
                f"{name}.shape={tuple(mask.shape)}, cache_index={cache_index!r}"
            )
        batch, length = ops.shape(query)[0], ops.shape(query)[1]
        return ops.slice(
            mask, (0, ops.cast(cache_index, "int32")), (batch, length)
        )  # (B, T)

    def compute_output_spec(self, query, value, key=None, return_attention_scores=False,
                            **kwargs):
        self._check_scores(return_attention_scores)
        spec = super().compute_output_spec(query, value, key=key, **kwargs)
        if kwargs.get("cache") is None:
            return spec
        output, (summary, stabilizer, count) = spec
        # The running state keeps its dtypes under mixed precision.
        return output, (
            keras.KerasTensor(summary.shape, dtype="float32"),
            keras.KerasTensor(stabilizer.shape, dtype="float32"),
            keras.KerasTensor(count.shape, dtype="int32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_random_features": self.num_random_features,
                "redraw_features": self.redraw_features,
            }
        )
        return config
