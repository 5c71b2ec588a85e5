"""Sliding-window (local) multi-head attention, computed blockwise."""

import math

import keras
from keras import ops

from keras_attention.layers.attention import efficient_math
from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.ops import merge_masks
from keras_attention.ops import scaled_dot_product_attention
from keras_attention.utils.validation import check_non_negative_int
from keras_attention.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class LocalAttention(MultiHeadAttention):
    """Multi-head attention restricted to a sliding window of keys.

    Query `i` attends key `j` only when `|i - j| <= window_size`, or
    `0 <= i - j <= window_size` with `use_causal_mask=True` (positions
    aligned at 0 when T != S). The result equals `MultiHeadAttention` with
    that banded mask (same weights, same projections), but the T x S score
    matrix is never formed: queries are cut into blocks of `window_size`
    rows and each block attends the keys of its own and its neighbouring
    blocks, so time and memory grow as `O(T * window_size)`.

    With `num_global_tokens=g` the first `g` positions are global, as
    Longformer's global attention (e.g. on a `[CLS]` token): every query
    also attends keys `0 .. g - 1`, and queries `0 .. g - 1` attend every
    key (every earlier key when causal; a causal model's global tokens
    then act as "attention sinks"). Query `i` attends key `j` when
    `|i - j| <= window_size or i < g or j < g` (and `j <= i` when causal).
    A sliding window alone cannot relate two tokens farther apart than
    the layers' reach (`layers * window_size`); through a global token any
    two can meet in two layers. The cost grows by `O((T + S) * g)`.

    Shape letters: B batch, T query length, S key length, H query heads,
    K key/value heads, D `key_dim`, Dv `value_dim`. Inputs are rank 3,
    `(B, T, features)` and `(B, S, features)`.

    Everything `MultiHeadAttention` supports applies: implicit and
    explicit masks, grouped heads, rotary embeddings, additive
    `attention_bias`, dropout, `return_attention_scores` (the weights are
    scattered into a dense `(B, H, T, S)` tensor, for inspection only) and
    a self-attention KV cache for incremental decoding (`get_initial_cache`;
    the cache holds every position, `(B, S_max, K, D)`, like
    `MultiHeadAttention`'s, but a causal step gathers only the `T + w`
    positions in its reach and the global ones, so its cost does not grow
    with `S_max`; with `return_attention_scores` the band is applied to
    `MultiHeadAttention`'s cached attention over the whole cache). A
    cross-attention cache is not supported: the window is over the
    positions of one sequence. A query with no attendable key in its window
    returns a zero context.

    Args:
        num_heads: number of query heads H.
        key_dim: size of each query/key head D.
        window_size: the window radius w; query `i` sees keys `i - w .. i + w`
            (`i - w .. i` when causal). Also the query block size.
        num_global_tokens: number g of leading global positions (default 0:
            the window only); see above.
        value_dim: size of each value head Dv. Defaults to `key_dim`.
        num_key_value_heads: number of key/value heads K; must divide
            `num_heads`. Defaults to `num_heads`.
        dropout: dropout rate on the attention weights, in `[0, 1)`.
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
        seed: optional integer seed of the attention dropout.

    Call arguments:
        query: `(B, T, features)` tensor.
        value: `(B, S, features)` tensor.
        key: optional `(B, S, features)` tensor; defaults to `value`.
        query_mask: optional `(B, T)` mask (implicit from `query`); padded
            queries return a zero context.
        value_mask: optional `(B, S)` mask of attendable keys.
        key_mask: optional `(B, S)` mask, merged with `value_mask`.
        attention_mask: optional boolean `(B, T, S)` or `(B, H, T, S)` mask,
            combined with the window.
        use_causal_mask: whether query `i` only attends keys `j <= i`.
        return_attention_scores: whether to also return the dense
            `(B, H, T, S)` attention weights.
        training: whether dropout is active.
        attention_bias: optional float tensor of shape `(B or 1, H or 1,
            T or 1, S or 1)` added to the logits.
        cache: optional self-attention cache `(key_cache, value_cache)`
            from `get_initial_cache`; the new tokens are written at
            `cache_index` (see `MultiHeadAttention`).
        cache_index: position of the first new token in the cache; required
            with a `cache`.

    Returns:
        `(B, T, output features)` tensor, or `(output, scores)` with
        `return_attention_scores=True`; the updated cache follows when a
        `cache` is given.

    Raises:
        ValueError: on invalid constructor arguments (`window_size < 1`,
            `num_global_tokens < 0`, and
            those of `MultiHeadAttention`), inputs or masks of the wrong
            shape, or a `cache` without `cache_index` (cross-attention).

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import LocalAttention
    layer = LocalAttention(num_heads=2, key_dim=8, window_size=2)
    x = np.random.rand(2, 10, 16).astype("float32")
    y = layer(x, x, use_causal_mask=True)  # (2, 10, 16)
    # Position 0 global: every query sees it, and it sees every key.
    longformer = LocalAttention(num_heads=2, key_dim=8, window_size=2,
                                num_global_tokens=1)
    z = longformer(x, x)  # (2, 10, 16)
    ```

    References:
        Beltagy et al., 2020, "Longformer: The Long-Document Transformer"
        (sliding-window and global attention).
        Xiao et al., 2023, "Efficient Streaming Language Models with
        Attention Sinks" (leading tokens every causal query attends).
        Parmar et al., 2018, "Image Transformer" (blockwise local attention).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        window_size=128,
        num_global_tokens=0,
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
        self.window_size = check_positive_int(window_size, "window_size")
        self.num_global_tokens = check_non_negative_int(
            num_global_tokens, "num_global_tokens"
        )

    def compute_cross_attention_cache(self, value, key=None):
        """Not supported: the window is over the positions of one sequence.

        Raises:
            ValueError: always.
        """
        efficient_math.reject_cache_method(
            self, "compute_cross_attention_cache",
            "a cross-attention cache (its window is over the positions of one sequence)",
        )

    def _check_call_args(self, query, value, key, attention_mask, attention_bias,
                         cache, cache_index):
        if cache is not None and cache_index is None:
            efficient_math.reject_argument(
                self, "cache_index", cache_index,
                "the position of the new tokens in a self-attention cache (a "
                "cross-attention cache has no window)",
            )
        return super()._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
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
        if cache is not None:
            return self._call_with_cache(
                query, value, key, query_mask, value_mask, key_mask,
                attention_mask, use_causal_mask, return_attention_scores,
                training, attention_bias, cache, cache_index,
            )
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        key = value if key is None else key
        query_proj = self.query_dense(query)  # (B, T, H, D)
        key_proj = self.key_dense(key)  # (B, S, K, D)
        value_proj = self.value_dense(value)  # (B, S, K, Dv)
        if self.rotary_embedding is not None:
            query_proj = self.rotary_embedding(query_proj, start_index=0)
            key_proj = self.rotary_embedding(key_proj, start_index=0)
        q_mask, k_mask = efficient_math.token_masks(
            query, key_proj, query_mask, value_mask, key_mask
        )
        explicit = compute_attention_mask(
            query, key_proj, attention_mask=attention_mask
        )  # (B, 1 or H, T, S) or None

        block, num_global = self.window_size, self.num_global_tokens
        q_len = ops.shape(query_proj)[1]
        num_blocks = (q_len + block - 1) // block
        padded = ops.pad(
            query_proj, ((0, 0), (0, num_blocks * block - q_len), (0, 0), (0, 0))
        )  # (B, N * b, H, D)
        query_positions = ops.reshape(
            ops.arange(num_blocks * block, dtype="int32"), (num_blocks, block)
        )  # (N, b)
        # Block n attends keys of blocks n - 1, n (and n + 1 unless causal).
        span = (2 if use_causal_mask else 3) * block
        key_positions = (
            (ops.arange(num_blocks, dtype="int32")[:, None] - 1) * block
            + ops.arange(span, dtype="int32")[None, :]
        )  # (N, span)
        slot_args = {}
        if num_global:
            key_positions, slot_mask, is_global = self._with_global_keys(
                key_positions
            )  # (N, g + span) each
            slot_args = {
                "slot_mask": slot_mask[None],
                "unwindowed_slots": is_global[None],
            }
        attention_args = dict(
            causal=use_causal_mask,
            query_mask=q_mask,
            key_mask=k_mask,
            attention_mask=explicit,
            bias=attention_bias,
            scale=1.0 / math.sqrt(self.key_dim),
            dropout=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
            return_weights=return_attention_scores,
        )
        result = efficient_math.block_sparse_attention(
            padded,
            key_proj,
            value_proj,
            query_positions,
            key_positions[None],  # (1, N, L)
            window_size=self.window_size,
            **slot_args,
            **attention_args,
        )
        attended, scores = result if return_attention_scores else (result, None)
        # attended (B, N * b, H, Dv), scores (B, H, N * b, S) or None
        if num_global and not use_causal_mask:
            # Global queries attend every key (causal ones only earlier keys,
            # which are all global: the blocked rows are already right).
            rows = efficient_math.leading_rows_attention(
                query_proj, key_proj, value_proj, num_global, **attention_args
            )
            row_out, row_scores = rows if return_attention_scores else (rows, None)
            attended = ops.concatenate(
                [row_out, attended[:, num_global:q_len]], axis=1
            )  # (B, T, H, Dv)
            if return_attention_scores:
                scores = ops.concatenate(
                    [ops.cast(row_scores, scores.dtype), scores[:, :, num_global:]],
                    axis=2,
                )
        if return_attention_scores:
            scores = ops.cast(scores[:, :, :q_len], self.compute_dtype)
        output = self.output_dense(attended[:, :q_len])  # (B, T, *output_shape)
        if return_attention_scores:
            return output, scores
        return output

    def _call_with_cache(self, query, value, key, query_mask, value_mask, key_mask,
                         attention_mask, use_causal_mask, return_attention_scores,
                         training, attention_bias, cache, cache_index):
        """Decoding: `MultiHeadAttention`'s cached attention with the window
        band `|i - j| <= w` (or a global position) over the cache positions
        (query `t` is at position `cache_index + t`). Causal calls of static
        length attend only the cache positions in reach
        (`_attend_cache_window`)."""
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        query_positions = ops.cast(cache_index, "int32") + ops.arange(
            ops.shape(query)[1], dtype="int32"
        )  # (T,)
        key_positions = ops.arange(ops.shape(cache[0])[1], dtype="int32")  # (S_max,)
        distance = query_positions[:, None] - key_positions[None, :]  # (T, S_max)
        band = ops.less_equal(ops.abs(distance), self.window_size)  # (T, S_max)
        if self.num_global_tokens:
            band = ops.logical_or(
                band, ops.less(key_positions, self.num_global_tokens)[None, :]
            )
            if not use_causal_mask:
                band = ops.logical_or(
                    band, ops.less(query_positions, self.num_global_tokens)[:, None]
                )
        band = band[None]  # (1, T, S_max)
        if attention_mask is not None:
            if len(attention_mask.shape) == 4:
                band = band[:, None]  # (1, 1, T, S_max)
            band = ops.logical_and(band, ops.cast(attention_mask, "bool"))
        q_len, s_max = query.shape[1], cache[0].shape[1]
        width = None if q_len is None else q_len + self.window_size
        if (
            not use_causal_mask
            or return_attention_scores
            or width is None
            or s_max is None
            or self.num_global_tokens + width >= s_max
        ):
            return super().call(
                query, value, key=key, query_mask=query_mask, value_mask=value_mask,
                key_mask=key_mask, attention_mask=band,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores, training=training,
                attention_bias=attention_bias, cache=cache, cache_index=cache_index,
            )
        return self._attend_cache_window(
            query, value, key, query_mask, value_mask, key_mask, band, training,
            attention_bias, cache, cache_index, width,
        )

    def _with_global_keys(self, positions):
        """Key positions `(..., L)` with the global ones `0 .. g - 1` put
        first: `(positions, kept, is_global)`, each `(..., g + L)`. `kept`
        drops the window slots at global positions, so no key counts twice;
        `is_global` marks the slots the window does not restrict."""
        positions = ops.convert_to_tensor(positions, dtype="int32")
        globals_ = ops.broadcast_to(
            ops.arange(self.num_global_tokens, dtype="int32"),
            tuple(ops.shape(positions)[:-1]) + (self.num_global_tokens,),
        )  # (..., g)
        first = ops.ones_like(globals_, dtype="bool")
        kept = ops.concatenate(
            [first, ops.greater_equal(positions, self.num_global_tokens)], axis=-1
        )
        is_global = ops.concatenate(
            [first, ops.zeros_like(positions, dtype="bool")], axis=-1
        )
        return ops.concatenate([globals_, positions], axis=-1), kept, is_global

    def _attend_cache_window(self, query, value, key, query_mask, value_mask,
                             key_mask, band, training, attention_bias, cache,
                             cache_index, width):
        """Causal cached attention over the `width = T + w` cache positions
        the new queries can reach (and the global ones), gathered from the
        cache: `O(T (w + g))` per call instead of `O(T S_max)`; the same
        result as the band over the whole cache."""
        key = value if key is None else key
        query_proj = self.query_dense(query)  # (B, T, H, D)
        if self.rotary_embedding is not None:
            query_proj = self.rotary_embedding(query_proj, start_index=cache_index)
        key_cache, value_cache, new_cache, filled = self._keys_and_values(
            query, value, key, cache, cache_index, cache_index
        )  # (B, S_max, K, D), (B, S_max, K, Dv), cache, (1, 1, 1, S_max)
        s_max = key_cache.shape[1]
        start = ops.clip(
            ops.cast(cache_index, "int32") - self.window_size, 0, s_max - width
        )
        positions = start + ops.arange(width, dtype="int32")  # (W,)
        slots = None
        if self.num_global_tokens:
            positions, slots, _ = self._with_global_keys(positions)  # (g + W,)
        mask = compute_attention_mask(
            query, key_cache, query_mask=query_mask, value_mask=value_mask,
            key_mask=key_mask, attention_mask=band, use_causal_mask=True,
            causal_offset=cache_index,
        )  # (B|1, 1|H, T, S_max)
        mask = ops.take(merge_masks(mask, filled), positions, axis=3)
        mask = merge_masks(mask, slots)  # (B|1, 1|H, T, g + W)
        bias = attention_bias
        if bias is not None and bias.shape[3] != 1:
            bias = ops.take(bias, positions, axis=3)  # (B|1, H|1, T|1, g + W)
        attended = scaled_dot_product_attention(
            query_proj,
            ops.take(key_cache, positions, axis=1),  # (B, g + W, K, D)
            ops.take(value_cache, positions, axis=1),  # (B, g + W, K, Dv)
            mask=mask,
            bias=bias,
            scale=1.0 / math.sqrt(self.key_dim),
            dropout=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
        )  # (B, T, H, Dv)
        return self.output_dense(attended), new_cache

    def get_config(self):
        config = super().get_config()
        config["window_size"] = self.window_size
        config["num_global_tokens"] = self.num_global_tokens
        return config
