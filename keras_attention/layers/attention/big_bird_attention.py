"""BigBird block-sparse attention: sliding window + global + random blocks."""

import functools
import math

import keras
import numpy as np
from keras import ops

from keras_attention.layers.attention import efficient_math
from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.utils.validation import check_non_negative_int
from keras_attention.utils.validation import check_positive_int

_WINDOW_BLOCKS = 3  # blocks i - 1, i, i + 1, as in the paper.


@functools.lru_cache(maxsize=64)
def _block_pattern(seed, num_heads, num_query_blocks, num_key_blocks,
                   num_global_blocks, num_random_blocks, causal):
    """Key blocks of every non-global query block, per head (NumPy).

    Returns `(blocks, valid)`, int and bool arrays of shape
    `(H, num_query_blocks - global query blocks, J)` with
    `J = global key blocks + 3 + num_random_blocks`; unused slots are
    `valid == False`.
    """
    rng = np.random.default_rng(seed)
    g_q = min(num_global_blocks, num_query_blocks)
    g_k = min(num_global_blocks, num_key_blocks)
    slots = g_k + _WINDOW_BLOCKS + num_random_blocks
    rows = num_query_blocks - g_q
    blocks = np.zeros((num_heads, rows, slots), dtype="int32")
    valid = np.zeros((num_heads, rows, slots), dtype=bool)
    for h in range(num_heads):
        for row, i in enumerate(range(g_q, num_query_blocks)):
            chosen = list(range(g_k))
            chosen += [j for j in (i - 1, i, i + 1) if g_k <= j < num_key_blocks]
            candidates = [
                j
                for j in range(g_k, num_key_blocks)
                if j not in chosen and (not causal or j < i)
            ]
            count = min(num_random_blocks, len(candidates))
            chosen += sorted(rng.choice(candidates, size=count, replace=False))
            blocks[h, row, : len(chosen)] = chosen
            valid[h, row, : len(chosen)] = True
    blocks.setflags(write=False)
    valid.setflags(write=False)
    return blocks, valid


@functools.lru_cache(maxsize=64)
def _block_table(seed, num_heads, num_blocks, num_global_blocks, num_random_blocks,
                 causal):
    """`(H, N, N)` bool table of `_block_pattern(..., N, N, ...)`: query
    block `i` attends key block `j` in head `h`."""
    blocks, valid = _block_pattern(
        seed, num_heads, num_blocks, num_blocks, num_global_blocks,
        num_random_blocks, causal,
    )
    global_rows = min(num_global_blocks, num_blocks)
    table = np.zeros((num_heads, num_blocks, num_blocks), dtype=bool)
    table[:, :global_rows] = True  # global query blocks attend every key
    heads, rows, slots = np.nonzero(valid)
    table[heads, global_rows + rows, blocks[heads, rows, slots]] = True
    table.setflags(write=False)
    return table


@keras.saving.register_keras_serializable(package="keras_attention")
class BigBirdAttention(MultiHeadAttention):
    """BigBird multi-head attention: window, global and random key blocks.

    Queries and keys are cut into blocks of `block_size` positions. The
    first `num_global_blocks` query blocks attend every key, and every query
    attends the first `num_global_blocks` key blocks; each other query block
    `i` also attends the key blocks `i - 1, i, i + 1` (sliding window) and
    `num_random_blocks` key blocks drawn at random per head. The random
    pattern is a deterministic function of `pattern_seed` and the lengths,
    so a reloaded layer attends exactly the same blocks. Memory and time grow
    as `O(T * (global + 3 + random) * block_size)` beyond the global rows.

    The output equals `MultiHeadAttention` (same weights) with the
    equivalent sparse mask `M[h, t, s]`, true when `t` or `s` lies in a
    global block, `|block(t) - block(s)| <= 1`, or `block(s)` is one of
    `block(t)`'s random blocks for head `h` (see `block_pattern`), combined
    with the usual padding, causal and explicit masks. With
    `use_causal_mask=True` random blocks are drawn from earlier blocks only.
    Short inputs get fewer random blocks when not enough blocks remain.

    Decoding: a self-attention KV cache (`get_initial_cache`, as
    `MultiHeadAttention`'s); each step attends the filled cache positions
    through the block pattern of `sequence_length` (or of the cache length
    without it) written out as a per-head mask (`block_table`), so cached
    steps give the full causal pass over the cache length (`O(S_max)` per
    token, as exact attention's cache).

    Lengths: the pattern is built for static lengths, so by default inputs
    need a static length (axis 1). With `sequence_length=L`, queries and
    keys of any length up to `L`, static or not (a serving graph that takes
    raw strings), are padded to `L` (masked) and attend with the pattern of
    `L`, so a sequence gets the same blocks at every length of its batch,
    in training and in serving; the cost is that of length `L`.

    Shape letters: B batch, T query length, S key length, H query heads,
    K key/value heads, D `key_dim`, Dv `value_dim`, L `sequence_length`.

    Args:
        num_heads: number of query heads H.
        key_dim: size of each query/key head D.
        block_size: the block length b.
        num_global_blocks: number g of leading blocks that are global (their
            queries attend all keys, all queries attend their keys); 0 for
            none.
        num_random_blocks: number r of random key blocks per query block and
            head.
        pattern_seed: integer seed of the random block pattern.
        sequence_length: `None` (the pattern of each call's static lengths),
            or the length L the pattern is built for: inputs of any length
            up to L are padded to it.
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
            combined with the sparse pattern.
        use_causal_mask: whether query `i` only attends keys `j <= i`.
        return_attention_scores: whether to also return the dense
            `(B, H, T, S)` attention weights (zeros outside the pattern).
        training: whether dropout is active.
        attention_bias: optional float tensor of shape `(B or 1, H or 1,
            T or 1, S or 1)` added to the logits.
        cache: optional self-attention cache `(key_cache, value_cache)` from
            `get_initial_cache` (static length, at most `sequence_length`).
        cache_index: position of the first new token in the cache; required
            with a `cache`.

    Returns:
        `(B, T, output features)` tensor, or `(output, scores)` with
        `return_attention_scores=True`; the updated cache follows when a
        `cache` is given.

    Raises:
        ValueError: on invalid constructor arguments (`block_size < 1`,
            negative block counts, a non-integer `pattern_seed`, a
            `sequence_length < 1`, and those of `MultiHeadAttention`),
            inputs with unknown lengths (without `sequence_length`) or
            longer than `sequence_length`, masks of the wrong shape, a
            `cache` without `cache_index`, of unknown length or longer than
            `sequence_length`, or a cross-attention cache.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import BigBirdAttention
    layer = BigBirdAttention(num_heads=2, key_dim=8, block_size=4,
                             num_global_blocks=1, num_random_blocks=1)
    x = np.random.rand(2, 24, 16).astype("float32")
    y = layer(x, x)  # (2, 24, 16)
    blocks, valid = layer.block_pattern(24, 24)  # (2, 5, 5) each
    ```

    References:
        Zaheer et al., 2020, "Big Bird: Transformers for Longer Sequences",
        section 2 and appendix D (blockified attention).
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        block_size=64,
        num_global_blocks=2,
        num_random_blocks=3,
        pattern_seed=0,
        sequence_length=None,
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
        self.block_size = check_positive_int(block_size, "block_size")
        self.num_global_blocks = check_non_negative_int(
            num_global_blocks, "num_global_blocks"
        )
        self.num_random_blocks = check_non_negative_int(
            num_random_blocks, "num_random_blocks"
        )
        self.pattern_seed = check_non_negative_int(pattern_seed, "pattern_seed")
        self.sequence_length = check_positive_int(
            sequence_length, "sequence_length", allow_none=True
        )

    def block_pattern(self, query_length, key_length, use_causal_mask=False):
        """The key blocks each non-global query block attends, per head.

        Args:
            query_length: T.
            key_length: S.
            use_causal_mask: whether the pattern is for causal attention
                (random blocks drawn from earlier blocks only).

        Returns:
            `(blocks, valid)`: read-only NumPy arrays of shape
            `(H, ceil(T / b) - g_q, J)`, where `g_q = min(g, ceil(T / b))`
            and `J = min(g, ceil(S / b)) + 3 + r`. Row `i` lists the key
            blocks of query block `g_q + i`: global blocks, window blocks,
            then random blocks; `valid` is `False` on unused slots.
        """
        query_length = check_positive_int(query_length, "query_length")
        key_length = check_positive_int(key_length, "key_length")
        num_q = -(-query_length // self.block_size)
        num_k = -(-key_length // self.block_size)
        return _block_pattern(
            self.pattern_seed,
            self.num_heads,
            num_q,
            num_k,
            self.num_global_blocks,
            self.num_random_blocks,
            bool(use_causal_mask),
        )

    def block_table(self, length, use_causal_mask=False):
        """Which key blocks each query block attends, per head, for inputs
        of `length` (queries and keys): the block pattern as a table.

        Returns:
            read-only bool NumPy array `(H, N, N)`, `N = ceil(length / b)`:
            `[h, i, j]` is true when query block `i` attends key block `j`
            in head `h` (global rows and columns, the window, the random
            blocks; causality is applied position by position on top).
        """
        length = check_positive_int(length, "length")
        return _block_table(
            self.pattern_seed, self.num_heads, -(-length // self.block_size),
            self.num_global_blocks, self.num_random_blocks, bool(use_causal_mask),
        )

    def compute_cross_attention_cache(self, value, key=None):
        """Not supported: `BigBirdAttention` caches self-attention only.

        Raises:
            ValueError: always.
        """
        efficient_math.reject_cache_method(
            self, "compute_cross_attention_cache", "a cross-attention cache",
        )

    def _check_call_args(self, query, value, key, attention_mask, attention_bias,
                         cache, cache_index):
        if cache is not None and cache_index is None:
            efficient_math.reject_argument(
                self, "cache_index", cache_index,
                "the position of the new tokens in a self-attention cache (no "
                "cross-attention cache)",
            )
        if cache is not None:
            # Cached queries and keys are checked against the cache length.
            cache_length = cache[0].shape[1]
            if cache_length is None:
                raise ValueError(
                    "Received an invalid value for argument `cache`, expected a "
                    "static length (axis 1): BigBirdAttention builds its block "
                    "pattern for it. Received: "
                    f"cache[0].shape={tuple(cache[0].shape)}"
                )
            if self.sequence_length is not None and cache_length > self.sequence_length:
                raise ValueError(
                    "Received an invalid value for argument `cache`, expected at "
                    f"most sequence_length={self.sequence_length} positions "
                    f"(axis 1). Received: cache[0].shape={tuple(cache[0].shape)}"
                )
            return super()._check_call_args(
                query, value, key, attention_mask, attention_bias, cache, cache_index
            )
        for name, tensor in (("query", query), ("value", value), ("key", key)):
            if tensor is None or len(tensor.shape) < 2:
                continue
            length = tensor.shape[1]
            if self.sequence_length is None and length is None:
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected "
                    "a static length (axis 1): BigBirdAttention builds its "
                    "block pattern for it (or pass `sequence_length`, the "
                    "length to pad to). Received: "
                    f"{name}.shape={tuple(tensor.shape)}"
                )
            if self.sequence_length is not None and length is not None and (
                length > self.sequence_length
            ):
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected "
                    f"at most sequence_length={self.sequence_length} positions "
                    f"(axis 1). Received: {name}.shape={tuple(tensor.shape)}"
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
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        if cache is not None:
            return self._call_with_cache(
                query, value, key, query_mask, value_mask, key_mask,
                attention_mask, use_causal_mask, return_attention_scores,
                training, attention_bias, cache, cache_index,
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
        if self.sequence_length is None:
            attended, weights = self._attend(
                query_proj, key_proj, value_proj, q_mask, k_mask, explicit,
                attention_bias, use_causal_mask, return_attention_scores, training,
            )  # (B, T, H, Dv), (B, H, T, S) or None
        else:
            attended, weights = self._attend_padded(
                query_proj, key_proj, value_proj, q_mask, k_mask, explicit,
                attention_bias, use_causal_mask, return_attention_scores, training,
            )
        output = self.output_dense(attended)  # (B, T, *output_shape)
        if not return_attention_scores:
            return output
        return output, weights

    def _attend_padded(self, query_proj, key_proj, value_proj, q_mask, k_mask,
                       explicit, attention_bias, use_causal_mask, with_scores,
                       training):
        """`_attend` on queries and keys padded (and masked) to
        `sequence_length`, so the pattern is that of `sequence_length`;
        the results are cut back to the input lengths."""
        length = self.sequence_length
        q_len, k_len = ops.shape(query_proj)[1], ops.shape(key_proj)[1]

        def pad(x, axes, value=0):
            widths = [(0, 0)] * len(x.shape)
            static = list(x.shape)
            for axis in axes:
                if x.shape[axis] == 1:  # broadcast axis of a bias or mask
                    continue
                widths[axis] = (0, length - ops.shape(x)[axis])
                static[axis] = length
            x = ops.pad(x, widths, constant_values=value)
            # Make the padded length static (only the batch axis is unknown).
            return ops.reshape(x, [-1 if d is None else d for d in static])

        def token_mask(mask, like):
            if mask is None:  # every position of an unmasked input is real
                mask = ops.ones(ops.shape(like)[:2], dtype="bool")  # (B, T|S)
            return pad(ops.cast(mask, "bool"), [1], False)  # (B, L)

        q_mask = token_mask(q_mask, query_proj)
        k_mask = token_mask(k_mask, key_proj)
        if explicit is not None:
            explicit = pad(ops.cast(explicit, "bool"), [2, 3], False)
        if attention_bias is not None:
            attention_bias = pad(attention_bias, [2, 3])
        attended, weights = self._attend(
            pad(query_proj, [1]), pad(key_proj, [1]), pad(value_proj, [1]),
            q_mask, k_mask, explicit, attention_bias, use_causal_mask, with_scores,
            training,
        )  # (B, L, H, Dv), (B, H, L, L) or None
        attended = attended[:, :q_len]  # (B, T, H, Dv)
        if weights is not None:
            weights = weights[:, :, :q_len, :k_len]  # (B, H, T, S)
        return attended, weights

    def _attend(self, query_proj, key_proj, value_proj, q_mask, k_mask, explicit,
                attention_bias, use_causal_mask, return_attention_scores, training):
        """Block-sparse attention of static-length projections:
        `(B, T, H, Dv)` contexts and `(B, H, T, S)` weights (or `None`)."""
        q_len, k_len = query_proj.shape[1], key_proj.shape[1]
        block = self.block_size
        num_q = -(-q_len // block)
        global_q = min(self.num_global_blocks, num_q)
        global_rows = min(global_q * block, q_len)
        scale = 1.0 / math.sqrt(self.key_dim)
        dropout_args = dict(
            dropout=self.dropout, seed=self.seed_generator, training=bool(training)
        )
        outputs, scores = [], []

        if global_rows > 0:
            # Global query blocks attend every key: dense rows.
            result = efficient_math.leading_rows_attention(
                query_proj,
                key_proj,
                value_proj,
                global_rows,
                causal=use_causal_mask,
                query_mask=q_mask,
                key_mask=k_mask,
                attention_mask=explicit,
                bias=attention_bias,
                scale=scale,
                return_weights=return_attention_scores,
                **dropout_args,
            )
            self._collect(result, return_attention_scores, outputs, scores)

        if num_q > global_q:
            blocks, valid = self.block_pattern(q_len, k_len, use_causal_mask)
            num_rows = num_q - global_q
            key_positions = (
                blocks[..., None] * block + np.arange(block)
            ).reshape(self.num_heads, num_rows, -1)  # (H, Nr, J * b)
            slot_mask = np.repeat(valid, block, axis=-1)  # (H, Nr, J * b)
            query_positions = (
                (global_q + np.arange(num_rows))[:, None] * block + np.arange(block)
            )  # (Nr, b)
            rest = query_proj[:, global_q * block :]  # (B, T - g * b, H, D)
            rest = ops.pad(
                rest, ((0, 0), (0, num_rows * block - (q_len - global_q * block)),
                       (0, 0), (0, 0))
            )  # (B, Nr * b, H, D)
            result = efficient_math.block_sparse_attention(
                rest,
                key_proj,
                value_proj,
                ops.convert_to_tensor(query_positions, "int32"),
                ops.convert_to_tensor(key_positions, "int32"),
                slot_mask=ops.convert_to_tensor(slot_mask),
                causal=use_causal_mask,
                query_mask=q_mask,
                key_mask=k_mask,
                attention_mask=explicit,
                bias=attention_bias,
                scale=scale,
                return_weights=return_attention_scores,
                **dropout_args,
            )
            self._collect(result, return_attention_scores, outputs, scores)

        attended = ops.concatenate(outputs, axis=1)[:, :q_len]  # (B, T, H, Dv)
        if not return_attention_scores:
            return attended, None
        weights = ops.concatenate(
            [ops.cast(s, self.compute_dtype) for s in scores], axis=2
        )[:, :, :q_len]  # (B, H, T, S)
        return attended, weights

    def _call_with_cache(self, query, value, key, query_mask, value_mask, key_mask,
                         attention_mask, use_causal_mask, return_attention_scores,
                         training, attention_bias, cache, cache_index):
        """Decoding: `MultiHeadAttention`'s cached attention with the block
        pattern written out as a per-head mask over the cache positions
        (query `t` is at position `cache_index + t`). The pattern is that of
        `sequence_length`, or of the cache length: what a full pass over
        the whole buffer uses, so cached steps give the full pass."""
        cache_length = cache[0].shape[1]
        table = self.block_table(self.sequence_length or cache_length, use_causal_mask)
        query_blocks = (
            ops.cast(cache_index, "int32")
            + ops.arange(ops.shape(query)[1], dtype="int32")
        ) // self.block_size  # (T,)
        key_blocks = ops.arange(cache_length, dtype="int32") // self.block_size  # (S_max,)
        rows = ops.take(ops.convert_to_tensor(table), query_blocks, axis=1)  # (H, T, N)
        pattern = ops.take(rows, key_blocks, axis=2)[None]  # (1, H, T, S_max)
        if attention_mask is not None:
            explicit = ops.cast(attention_mask, "bool")
            if len(explicit.shape) == 3:
                explicit = explicit[:, None]  # (B, 1, T, S_max)
            pattern = ops.logical_and(pattern, explicit)
        return super().call(
            query, value, key=key, query_mask=query_mask, value_mask=value_mask,
            key_mask=key_mask, attention_mask=pattern, use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores, training=training,
            attention_bias=attention_bias, cache=cache, cache_index=cache_index,
        )

    @staticmethod
    def _collect(result, with_scores, outputs, scores):
        if with_scores:
            outputs.append(result[0])
            scores.append(result[1])
        else:
            outputs.append(result)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "block_size": self.block_size,
                "num_global_blocks": self.num_global_blocks,
                "num_random_blocks": self.num_random_blocks,
                "pattern_seed": self.pattern_seed,
                "sequence_length": self.sequence_length,
            }
        )
        return config
