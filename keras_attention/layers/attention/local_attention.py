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
    a self-attention KV cache for incremental decoding. The cache
    (`get_initial_cache`) is a rolling buffer, as Mistral's: the `g`
    global positions and a ring of the last `w + 1` (plus `rewind`), the
    newest overwriting the oldest, so decoding costs `O(g + w)` time and
    memory per token however long the sequence, and may run past
    `max_length` (attention sinks plus a sliding window, as in streaming
    decoding). With a cache, `value_mask`, `key_mask`, `attention_mask`
    and `attention_bias` cover the sequence's positions (any length that
    reaches the new tokens), not the cache slots; `return_attention_scores`
    gives scores over the slots, so only while they hold positions
    `0 .. C - 1` in order. A cross-attention cache is not supported: the
    window is over the positions of one sequence. A query with no
    attendable key in its window returns a zero context.

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
            from `get_initial_cache` (a rolling buffer, see above); the new
            tokens are written at `cache_index`.
        cache_index: position of the first new token in the sequence;
            required with a `cache`.

    Returns:
        `(B, T, output features)` tensor, or `(output, scores)` with
        `return_attention_scores=True`; the updated cache follows when a
        `cache` is given.

    Raises:
        ValueError: on invalid constructor arguments (`window_size < 1`,
            `num_global_tokens < 0`, and
            those of `MultiHeadAttention`), inputs or masks of the wrong
            shape, a `cache` without `cache_index` (cross-attention), masks
            or bias that do not reach the new tokens' positions, or
            `return_attention_scores` once the cache may have wrapped.

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
    # Streaming decoding: 1 + 2 + 1 cache slots, however many tokens follow.
    cache = longformer.get_initial_cache(batch_size=2, max_length=10)
    for i in range(10):
        out, cache = longformer(x[:, i:i + 1], x[:, i:i + 1], cache=cache,
                                cache_index=i, use_causal_mask=True)
    tuple(cache[0].shape)  # (2, 4, 2, 8)
    ```

    References:
        Beltagy et al., 2020, "Longformer: The Long-Document Transformer"
        (sliding-window and global attention).
        Xiao et al., 2023, "Efficient Streaming Language Models with
        Attention Sinks" (leading tokens every causal query attends; a
        cache of the sinks and a rolling window).
        Jiang et al., 2023, "Mistral 7B" (sliding-window attention with a
        rolling buffer cache).
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

    def get_initial_cache(self, batch_size, max_length, dtype=None, rewind=0):
        """An all-zero rolling self-attention KV cache of `g + w + 1 +
        rewind` positions.

        A causal query sees itself, the `w` positions before it and the `g`
        global ones, so the cache keeps only those: slots `0 .. g - 1` hold
        the global positions, and the other `R = w + 1 + rewind` slots are
        a ring in which position `p >= g` goes to slot `g + (p - g) mod R`
        (the newest positions overwrite the oldest; a decoded token is
        written in place, then attends the ring). Memory is
        `O(g + w + rewind)` per sequence whatever `max_length`, and decoding
        may go past `max_length` (as long as the masks and bias passed
        cover the positions). When `max_length <= g + w + 1 + rewind` the
        cache is `max_length` long and holds every position in order, as
        `MultiHeadAttention`'s.

        A call writes its tokens at `cache_index` and forgets what the
        cache held at those and later positions. It may start up to
        `rewind` positions before the newest position written, i.e.
        re-decode them (`CausalLMGenerator` prefills a padded prompt of
        width P, then decodes again from the shortest prompt's last
        position, at most P - 1 back, so it asks for `rewind=P - 1`:
        `Generator.empty_caches`); starting farther back would need
        positions the ring has overwritten.

        Args:
            batch_size: B (int or scalar tensor).
            max_length: S_max, the longest sequence to decode; the cache
                holds `min(max_length, g + w + 1 + rewind)` positions.
            dtype: dtype of the cache; defaults to the compute dtype.
            rewind: non-negative int, how far back a call may start (0:
                strictly sequential decoding).

        Returns:
            Tuple `(key_cache, value_cache)` of shapes `(B, C, K, D)` and
            `(B, C, K, Dv)`, `C = min(max_length, g + w + 1 + rewind)`.

        Raises:
            ValueError: if `batch_size` or `max_length` is not a positive
                int, or `rewind` not a non-negative int.

        Example:

        ```python
        from keras_attention.layers import LocalAttention
        layer = LocalAttention(num_heads=2, key_dim=4, window_size=3,
                               num_global_tokens=1)
        k, v = layer.get_initial_cache(batch_size=2, max_length=1000)
        tuple(k.shape)  # (2, 5, 2, 4)
        ```
        """
        self._check_cache_size(batch_size, max_length, rewind)
        capacity = self.num_global_tokens + self.window_size + 1 + rewind
        if isinstance(max_length, int):
            length = min(max_length, capacity)
        else:
            length = ops.minimum(ops.cast(max_length, "int32"), capacity)
        return super().get_initial_cache(batch_size, length, dtype)

    def _rolls(self, cache_length):
        """Whether a cache of `cache_length` positions is a ring (it holds
        at least the `g + w` positions a query can reach besides the new
        ones; shorter caches hold every position in order and bound the
        decoded length)."""
        return cache_length is None or (
            cache_length >= self.num_global_tokens + self.window_size
        )

    def _may_have_wrapped(self, cache_length, cache_index, query_length):
        """Whether a call at `cache_index` of `query_length` tokens may find
        slot `s` not holding position `s`: a ring, unless a Python int
        `cache_index + query_length` is known to fit in it."""
        fits = (
            isinstance(cache_index, int)
            and query_length is not None
            and cache_length is not None
            and cache_index + query_length <= cache_length
        )
        return self._rolls(cache_length) and not fits

    def _check_cache(self, query, cache, cache_index):
        if cache is None or cache_index is None:
            return super()._check_cache(query, cache, cache_index)
        length = super()._check_cache(query, cache, None)  # shapes only
        if not (self._rolls(length) and isinstance(cache_index, int)):
            # Bounded caches: 0 <= cache_index <= length - T; tensors: scalars.
            return super()._check_cache(query, cache, cache_index)
        if cache_index < 0:
            raise ValueError(
                "Received an invalid value for argument `cache_index`, "
                f"expected 0 <= cache_index. Received: cache_index={cache_index}"
            )
        return length

    def _check_call_args(self, query, value, key, attention_mask, attention_bias,
                         cache, cache_index):
        if cache is not None and cache_index is None:
            efficient_math.reject_argument(
                self, "cache_index", cache_index,
                "the position of the new tokens in a self-attention cache (a "
                "cross-attention cache has no window)",
            )
        if cache is None:
            return super()._check_call_args(
                query, value, key, attention_mask, attention_bias, cache, cache_index
            )
        # With a cache, masks and bias cover the sequence's positions (any
        # length L >= cache_index + T), not the cache slots.
        length = super()._check_call_args(
            query, value, key, attention_mask, None, cache, cache_index
        )
        if attention_bias is not None:
            self._check_attention_bias(attention_bias, query, None)
        return length

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
        query_proj, key_proj, value_proj = self._project_inputs(
            query, value, key
        )  # (B, T, H, D), (B, S, K, D), (B, S, K, Dv)
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
        """Decoding over the rolling cache (`get_initial_cache`): the new
        tokens (query `t` at position `cache_index + t`) attend the cached
        slots and themselves, with the window band `|i - j| <= w` (or a
        global position) over their positions; the new keys and values
        overwrite the oldest slots. One decoded token is written first and
        attends the `g + w + 1` slots in its reach (`O(g + w)`); a chunk of
        T attends all C slots and itself, then is written (`O(T (C + T))`).
        Masks and bias cover the sequence's positions and are read at the
        positions the slots hold."""
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        q_len = query.shape[1]
        needed = (
            cache_index + q_len
            if isinstance(cache_index, int) and q_len is not None
            else None
        )
        index = ops.cast(cache_index, "int32")
        if return_attention_scores:
            return self._scores_over_cache(
                query, value, key, query_mask, value_mask, key_mask,
                attention_mask, use_causal_mask, training, attention_bias,
                cache, cache_index,
            )
        query_proj, key_proj, value_proj = self._project_inputs(
            query, value, key, start_index=cache_index
        )  # (B, T, H, D), (B, T, K, D), (B, T, K, Dv)
        key_cache = ops.cast(cache[0], self.compute_dtype)  # (B, C, K, D)
        value_cache = ops.cast(cache[1], self.compute_dtype)  # (B, C, K, Dv)
        new = index + ops.arange(ops.shape(query)[1], dtype="int32")  # (T,)
        new_cache = (
            self._write_slots(key_cache, key_proj, index),  # (B, C, K, D)
            self._write_slots(value_cache, value_proj, index),  # (B, C, K, Dv)
        )
        length = key_cache.shape[1]
        if q_len == 1 and length is not None and (
            length - min(self.num_global_tokens, length) > self.window_size
        ):
            # One decoded token, a ring of more than w slots: once written,
            # it and the w positions before it are all in the ring; it
            # attends those slots and the global ones only (`O(g + w)`,
            # whatever `rewind` added to the ring).
            slots, positions, held = self._slots_in_reach(length, index)
            keys = ops.take(new_cache[0], slots, axis=1)  # (B, g + w + 1, K, D)
            values = ops.take(new_cache[1], slots, axis=1)  # (B, g + w + 1, K, Dv)
        else:
            # A chunk: the slots as they were, then the new tokens (those
            # the chunk overwrites are still attended by its earlier rows).
            stored, filled = self._slot_positions(ops.shape(key_cache)[1], index)
            positions = ops.concatenate([stored, new], axis=0)  # (C + T,)
            held = ops.concatenate([filled, ops.ones_like(new, dtype="bool")], axis=0)
            keys = ops.concatenate([key_cache, key_proj], axis=1)  # (B, C + T, K, D)
            values = ops.concatenate([value_cache, value_proj], axis=1)
        band = self._band(new, positions, use_causal_mask)  # (T, keys)
        read = dict(positions=positions, needed=needed)
        mask = compute_attention_mask(
            query, keys, query_mask=query_mask,
            value_mask=_at_positions(value_mask, "value_mask", **read),
            key_mask=_at_positions(key_mask, "key_mask", **read),
            attention_mask=_at_positions(attention_mask, "attention_mask", **read),
        )
        mask = merge_masks(mask, ops.logical_and(band, held[None, :]))
        attended = scaled_dot_product_attention(
            query_proj, keys, values, mask=mask,
            bias=_at_positions(attention_bias, "attention_bias", **read),
            scale=1.0 / math.sqrt(self.key_dim),
            dropout=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
        )  # (B, T, H, Dv)
        return self.output_dense(attended), new_cache

    def _band(self, query_positions, key_positions, causal):
        """`(T, S)` boolean structure: the window `|i - j| <= w`, global
        keys (and global queries when not causal), `j <= i` when causal."""
        distance = query_positions[:, None] - key_positions[None, :]  # (T, S)
        band = ops.less_equal(ops.abs(distance), self.window_size)
        if self.num_global_tokens:
            band = ops.logical_or(
                band, ops.less(key_positions, self.num_global_tokens)[None, :]
            )
            if not causal:
                band = ops.logical_or(
                    band, ops.less(query_positions, self.num_global_tokens)[:, None]
                )
        if causal:
            band = ops.logical_and(band, ops.greater_equal(distance, 0))
        return band

    def _slot_positions(self, cache_length, written):
        """`(positions (C,), filled (C,))`: the position each cache slot holds
        once positions `0 .. written - 1` are in, and whether it holds one.
        Slots `0 .. g - 1` hold the global positions; slot `g + r` the
        newest position `p >= g` with `(p - g) mod (C - g) == r`. After a
        rewind (positions up to `written - 1 + rewind` were written before)
        the slots of the newer positions read as positions more than `w`
        before `written`, outside every new query's window."""
        num_global = ops.minimum(self.num_global_tokens, cache_length)
        ring = ops.maximum(cache_length - num_global, 1)
        slots = ops.arange(cache_length, dtype="int32")  # (C,)
        offset = slots - num_global  # index in the ring (negative: global)
        newest = written - 1 - num_global  # ring index of the newest position
        laps = ops.floor_divide(ops.maximum(newest - offset, 0), ring)
        is_global = ops.less(slots, num_global)
        positions = ops.where(is_global, slots, num_global + offset + ring * laps)
        filled = ops.where(
            is_global, ops.less(slots, written), ops.less_equal(offset, newest)
        )
        return positions, filled

    def _slots_in_reach(self, cache_length, index):
        """`(slots, positions, held)`, each `(g + w + 1,)`: the cache slots
        of the global positions and of `index - w .. index` once `index` is
        written (a ring of `cache_length - g > w` slots), their positions,
        and whether each is a position to attend (window positions below
        `g` are the global slots' already)."""
        num_global = min(self.num_global_tokens, cache_length)
        ring = cache_length - num_global
        steps = ops.arange(self.window_size + 1, dtype="int32")  # (w + 1,)
        window = index - self.window_size + steps  # (w + 1,) positions
        # Ring index of the first one (one scalar modulo), then the others
        # by a wrap-around step, not a modulo per element (which XLA would
        # recompute for every element of the gather it fuses into).
        in_ring = ops.mod(index - self.window_size - num_global, ring) + steps
        slots = num_global + ops.where(in_ring >= ring, in_ring - ring, in_ring)
        held = ops.greater_equal(window, num_global)
        if not num_global:
            return slots, window, held
        first = ops.arange(num_global, dtype="int32")  # (g,)
        return (
            ops.concatenate([first, slots], axis=0),
            ops.concatenate([first, window], axis=0),
            ops.concatenate([ops.less_equal(first, index), held], axis=0),
        )

    def _write_slots(self, cache, new, index):
        """`cache (B, C, ...)` with the slots of positions `index ..
        index + T - 1` (the newest C of them) taken from `new (B, T, ...)`."""
        if new.shape[1] == 1:
            # One decoded token: one slot, written in place.
            length = cache.shape[1]
            if length is None:
                length = ops.shape(cache)[1]
                num_global = ops.minimum(self.num_global_tokens, length)
            else:
                num_global = min(self.num_global_tokens, length)
            slot = num_global + ops.mod(
                index - num_global, ops.maximum(length - num_global, 1)
            )
            if not isinstance(num_global, int) or num_global:
                slot = ops.where(index < num_global, index, slot)
            starts = (0, slot) + (0,) * (len(cache.shape) - 2)
            return ops.slice_update(cache, starts, ops.cast(new, cache.dtype))
        count = ops.shape(new)[1]
        positions, filled = self._slot_positions(ops.shape(cache)[1], index + count)
        from_new = ops.logical_and(filled, ops.greater_equal(positions, index))
        rows = ops.take(new, ops.clip(positions - index, 0, count - 1), axis=1)
        from_new = ops.reshape(from_new, (1, -1) + (1,) * (len(cache.shape) - 2))
        return ops.where(from_new, rows, cache)  # (B, C, ...)

    def _scores_over_cache(self, query, value, key, query_mask, value_mask,
                           key_mask, attention_mask, use_causal_mask, training,
                           attention_bias, cache, cache_index):
        """`return_attention_scores=True` with a cache: the scores are over
        the cache slots, so only while slot `s` holds position `s` (the
        cache has not wrapped): `MultiHeadAttention`'s cached attention with
        the window band over the slots."""
        cache_length = cache[0].shape[1]
        if self._may_have_wrapped(cache_length, cache_index, query.shape[1]):
            efficient_math.reject_argument(
                self, "return_attention_scores", True,
                "False with a rolling cache once it may have wrapped "
                "(scores are over the cache slots, which hold the positions "
                "in order only while cache_index + query_length <= cache length "
                f"= {cache_length}, with a Python int cache_index; got "
                f"cache_index={cache_index!r}; call without a cache, or with a "
                "cache as long as the sequence, to inspect the weights)",
            )
        slots = ops.arange(ops.shape(cache[0])[1], dtype="int32")  # (C,)
        query_positions = ops.cast(cache_index, "int32") + ops.arange(
            ops.shape(query)[1], dtype="int32"
        )  # (T,)
        band = self._band(query_positions, slots, use_causal_mask)[None]
        read = dict(positions=slots, needed=None)
        explicit = _at_positions(attention_mask, "attention_mask", **read)
        if explicit is not None:
            if len(explicit.shape) == 4:
                band = band[:, None]  # (1, 1, T, C)
            band = ops.logical_and(band, ops.cast(explicit, "bool"))
        return super().call(
            query, value, key=key, query_mask=query_mask,
            value_mask=_at_positions(value_mask, "value_mask", **read),
            key_mask=_at_positions(key_mask, "key_mask", **read),
            attention_mask=band, use_causal_mask=use_causal_mask,
            return_attention_scores=True, training=training,
            attention_bias=_at_positions(attention_bias, "attention_bias", **read),
            cache=cache, cache_index=cache_index,
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

    def get_config(self):
        config = super().get_config()
        config["window_size"] = self.window_size
        config["num_global_tokens"] = self.num_global_tokens
        return config


def _at_positions(tensor, name, positions, needed):
    """A mask or bias over the sequence's positions (last axis, any length
    L), read at `positions` (indices clipped into `0 .. L - 1`; slots that
    hold no position are masked anyway). A last axis of 1 broadcasts.

    Raises:
        ValueError: when L is static and shorter than `needed` (the
            positions the call reaches, when known).
    """
    if tensor is None:
        return None
    tensor = ops.convert_to_tensor(tensor)
    length = tensor.shape[-1]
    if length == 1:
        return tensor
    if length is not None and needed is not None and length < needed:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected its "
            f"last axis to cover the sequence's positions 0 .. {needed - 1} "
            "(cache_index + query_length of them; with a cache, masks and "
            "bias are over positions, not cache slots). Received: "
            f"{name}.shape={tuple(tensor.shape)}"
        )
    limit = ops.shape(tensor)[-1]
    return ops.take(tensor, ops.clip(positions, 0, limit - 1), axis=-1)
