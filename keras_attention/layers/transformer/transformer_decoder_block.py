"""Transformer decoder block: causal self-attention, cross-attention, FFN."""

import keras

from keras_attention.layers.transformer import block_components
from keras_attention.layers.transformer.transformer_block_base import (
    TransformerBlockBase,
)
from keras_attention.utils.validation import check_one_of


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerDecoderBlock(TransformerBlockBase):
    """Transformer decoder block (Vaswani et al. 2017, section 3.1).

    Causal multi-head self-attention, then (when the block is built with an
    encoder sequence) cross-attention over the encoder output, then a
    position-wise feed-forward network; each sub-layer has a residual
    connection, residual dropout and normalization (post-LN as in the paper,
    or pre-LN with `norm_first=True`). Built without `encoder_sequence` it is
    a GPT-style decoder-only block.

    Incremental decoding uses KV caches: `self_attention_cache` (written at
    `cache_index`) and `cross_attention_cache` (the projected encoder output,
    see `compute_cross_attention_cache`). Create empty self-attention caches
    with `get_initial_cache`.

    Shape letters: B batch, T decoder length, S encoder length, E hidden size,
    H heads, S_max cache length.

    Args:
        num_heads: number of attention heads H.
        intermediate_dim: width of the feed-forward hidden layer.
        key_dim: size of each attention head; defaults to `E // num_heads`.
        num_key_value_heads: key/value heads for grouped-query attention;
            defaults to `num_heads`.
        dropout: residual dropout rate on each sub-layer output, in [0, 1).
        attention_dropout: dropout rate on attention weights; defaults to
            `dropout` when `None` (to 0 for `"performer"`, which forms no
            attention weights; a non-zero rate is refused there).
        activation: feed-forward activation (see `FeedForward`).
        norm_first: pre-LN when `True`, the paper's post-LN when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_scheme: `None`, `"rotary"`, `"relative"` (causal T5 buckets)
            or `"alibi"`, applied in self-attention.
        attention_kernel: name of the attention kernel, `"dot_product"` by
            default.
        kernel_initializer: initializer of all projection kernels.
        bias_initializer: initializer of all projection biases.
        attention_implementation: how the `"dot_product"` kernel computes
            attention: `"auto"` (default), `"full"`, `"blockwise"` (exact,
            `O(T)` memory, for long sequences; needs an attention dropout of
            0) or `"fused"` (`keras.ops.dot_product_attention`), see
            `MultiHeadAttention`.
        attention_kernel_options: optional dict of extra constructor
            arguments of the kernel's layer, e.g. `{"window_size": 32}` for
            `"local"`, `{"block_size": 16, "pattern_seed": 3}` for
            `"big_bird"`, `{"num_random_features": 128}` for `"performer"`;
            checked at construction. Not the arguments the block sets
            (`num_heads`, `key_dim`, `dropout`, ...).
        cross_attention_kernel: the cross-attention's kernel; `None` (the
            default) takes `attention_kernel` and its options. Another
            kernel takes its layer's defaults, e.g. `"dot_product"` for an
            encoder-decoder whose decoder self-attention is efficient but
            whose cross-attention stays exact (and keeps a cross-attention
            cache for decoding).

    Call arguments:
        decoder_sequence: `(B, T, E)` tensor.
        encoder_sequence: `(B, S, E)` encoder output; required when the block
            has cross-attention.
        decoder_padding_mask: optional `(B, T)` mask (`(B, S_max)` over the
            cache positions when decoding with a cache). Defaults to the
            implicit Keras mask of `decoder_sequence`.
        decoder_attention_mask: optional `(B, T, T)` (or `(B, T, S_max)`)
            self-attention mask.
        encoder_padding_mask: optional `(B, S)` mask. Defaults to the
            implicit Keras mask of `encoder_sequence`.
        encoder_attention_mask: optional `(B, T, S)` cross-attention mask.
        self_attention_cache: optional `(key_cache, value_cache)` tuple.
        cross_attention_cache: optional `(key_cache, value_cache)` tuple of
            the projected encoder output.
        cache_index: position of the first new token in the self-attention
            cache (int or scalar tensor).
        use_causal_mask: whether self-attention is causal (default `True`).
        return_attention_scores: whether to also return a dict of attention
            weights, `{"self_attention": (B, H, T, T or S_max),
            "cross_attention": (B, H, T, S)}`, with an entry for each
            sub-layer whose kernel forms token-by-token weights (not
            `PerformerAttention` or `LinformerAttention`).
        training: whether dropout is active.

    Returns:
        `output` `(B, T, E)`; with `return_attention_scores` a tuple
        `(output, scores)`; with caches the updated caches follow:
        `(output[, scores], self_attention_cache[, cross_attention_cache])`.

    Raises:
        ValueError: on invalid arguments, or when a block with
            cross-attention is called without `encoder_sequence`.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import TransformerDecoderBlock
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    target = np.random.rand(2, 5, 16).astype("float32")
    source = np.random.rand(2, 7, 16).astype("float32")
    y = block(target, source)
    tuple(y.shape)  # (2, 5, 16)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", section 3.1.
        Radford et al., 2018, "Improving Language Understanding by Generative
        Pre-Training" (decoder-only).
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        key_dim=None,
        num_key_value_heads=None,
        dropout=0.0,
        attention_dropout=None,
        activation="relu",
        norm_first=False,
        layer_norm_epsilon=1e-5,
        normalization="layer_norm",
        position_scheme=None,
        attention_kernel="dot_product",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        attention_implementation="auto",
        attention_kernel_options=None,
        cross_attention_kernel=None,
        **kwargs,
    ):
        super().__init__(
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            key_dim=key_dim,
            num_key_value_heads=num_key_value_heads,
            dropout=dropout,
            attention_dropout=attention_dropout,
            activation=activation,
            norm_first=norm_first,
            layer_norm_epsilon=layer_norm_epsilon,
            normalization=normalization,
            position_scheme=position_scheme,
            attention_kernel=attention_kernel,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            attention_implementation=attention_implementation,
            attention_kernel_options=attention_kernel_options,
            **kwargs,
        )
        if cross_attention_kernel is not None:
            check_one_of(
                cross_attention_kernel, "cross_attention_kernel",
                tuple(block_components.ATTENTION_KERNELS),
            )
            self._check_attention_dropout(cross_attention_kernel, "cross_attention_kernel")
        self.cross_attention_kernel = cross_attention_kernel
        # Built in `build` when the block is given an encoder sequence. An
        # instance attribute, not a class one: on PyTorch a sub-layer lives
        # in the module's registry, where a class attribute would hide it.
        self.cross_attention = None

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        shape = self._check_sequence_shape(decoder_sequence_shape, "decoder_sequence")
        key_dim = self._build_self_attention(shape, bidirectional=False)
        if encoder_sequence_shape is not None:
            encoder_shape = self._check_sequence_shape(
                encoder_sequence_shape, "encoder_sequence"
            )
            self.cross_attention_layer_norm = self._norm(
                "cross_attention_layer_norm", shape
            )
            self.cross_attention = self._attention(
                key_dim, False, "cross_attention", kernel=self.cross_attention_kernel
            )
            self.cross_attention.build(shape, encoder_shape)
            self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self._build_feedforward(shape)
        self.built = True

    def _check_cache_positions(self, cache, cache_index, query_length):
        """A position bias needs the sequence's positions: without a padding
        mask over them, refuse a rolling cache (`LocalAttention`'s) unless
        it has surely not wrapped (slot `s` still holds position `s`)."""
        length = cache[0].shape[1]
        if self.self_attention._may_have_wrapped(length, cache_index, query_length):
            raise ValueError(
                "Received an invalid value for argument `decoder_padding_mask`, "
                "expected a `(batch, S_max)` mask over the sequence's positions "
                "when a position bias meets a rolling LocalAttention cache "
                f"(its {length} slots hold the last positions, not positions "
                f"0 .. {length - 1}). Received: decoder_padding_mask=None"
            )

    def get_initial_cache(self, batch_size, max_length, dtype=None, rewind=0):
        """An empty self-attention cache (see the attention layer's
        `get_initial_cache`: `(key_cache, value_cache)` for most kernels).

        Args:
            batch_size: B.
            max_length: S_max, the longest sequence the cache holds.
            dtype: cache dtype; defaults to the compute dtype.
            rewind: how far a cached call may start before the newest
                position written (re-decoding). Only `"local"`'s rolling
                cache keeps slots for it (`LocalAttention.get_initial_cache`);
                caches of every position allow any rewind already, and
                Performer's running state leaves positions it holds
                unchanged when they are run again (with the same tokens).
        """
        return self.self_attention.get_initial_cache(
            batch_size, max_length, dtype, rewind=rewind
        )

    def compute_cross_attention_cache(self, encoder_sequence):
        """Project the encoder output once for cached cross-attention.

        Args:
            encoder_sequence: `(B, S, E)` encoder output.
        """
        if self.cross_attention is None:
            raise ValueError(
                "Received an invalid call to `compute_cross_attention_cache`, "
                "expected a block built with an `encoder_sequence`. Received: "
                "a decoder-only block"
            )
        return self.cross_attention.compute_cross_attention_cache(encoder_sequence)

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        self_attention_cache=None,
        cross_attention_cache=None,
        cache_index=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
        decoder_sequence_mask=None,
        encoder_sequence_mask=None,
        mask=None,
    ):
        if self.cross_attention is not None and encoder_sequence is None:
            raise ValueError(
                "Received an invalid value for argument `encoder_sequence`, "
                "expected the encoder output for a block built with "
                "cross-attention. Received: encoder_sequence=None"
            )
        self._check_call(encoder_sequence, self_attention_cache, cache_index)
        if decoder_padding_mask is None:
            decoder_padding_mask = (
                decoder_sequence_mask if decoder_sequence_mask is not None else mask
            )
        if encoder_padding_mask is None:
            encoder_padding_mask = encoder_sequence_mask
        cached = self_attention_cache is not None
        scores = {}

        bias = None
        if self.position_bias is not None:
            keys = decoder_sequence
            if cached:
                # The bias covers the sequence's positions: those of the
                # padding mask `(B, S_max)`, else the cache's (a rolling
                # `LocalAttention` cache holds fewer, so it needs the mask).
                keys = decoder_padding_mask
                if keys is None:
                    self._check_cache_positions(
                        self_attention_cache, cache_index, decoder_sequence.shape[1]
                    )
                    keys = self_attention_cache[0]
            start = 0 if cache_index is None else cache_index
            bias = self.position_bias(decoder_sequence, keys, start_index=start)

        self_scores_wanted = (
            return_attention_scores and self.self_attention.returns_attention_scores
        )

        def self_attend(x):
            result = self.self_attention(
                x,
                x,
                query_mask=None if cached else decoder_padding_mask,
                value_mask=decoder_padding_mask,
                attention_mask=decoder_attention_mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=self_scores_wanted,
                attention_bias=bias,
                cache=self_attention_cache,
                cache_index=cache_index,
                training=training,
            )
            return self._split(result, self_scores_wanted, cached)

        x, (self_scores, new_self_cache) = self._residual(
            decoder_sequence, self_attend, self.self_attention_layer_norm,
            self.self_attention_dropout, training,
        )
        if self_scores_wanted:
            scores["self_attention"] = self_scores

        new_cross_cache = None
        if self.cross_attention is not None:
            cross_cached = cross_attention_cache is not None
            cross_scores_wanted = (
                return_attention_scores and self.cross_attention.returns_attention_scores
            )

            def cross_attend(h):
                result = self.cross_attention(
                    h,
                    encoder_sequence,
                    query_mask=None if cached else decoder_padding_mask,
                    value_mask=encoder_padding_mask,
                    attention_mask=encoder_attention_mask,
                    return_attention_scores=cross_scores_wanted,
                    cache=cross_attention_cache,
                    training=training,
                )
                return self._split(result, cross_scores_wanted, cross_cached)

            x, (cross_scores, new_cross_cache) = self._residual(
                x, cross_attend, self.cross_attention_layer_norm,
                self.cross_attention_dropout, training,
            )
            if cross_scores_wanted:
                scores["cross_attention"] = cross_scores

        x = self._feedforward_residual(x, training)
        outputs = (x,)
        if return_attention_scores:
            outputs += (scores,)
        if cached:
            outputs += (new_self_cache,)
            if cross_attention_cache is not None:
                outputs += (new_cross_cache,)
        return outputs[0] if len(outputs) == 1 else outputs

    def _check_call(self, encoder_sequence, self_attention_cache, cache_index):
        """Calls the sub-layers would misread rather than reject."""
        if self.cross_attention is None and encoder_sequence is not None:
            raise ValueError(
                "Received an invalid value for argument `encoder_sequence`, "
                "expected None for a decoder-only block (built without "
                "cross-attention, which would ignore it). Received: "
                f"encoder_sequence.shape={tuple(encoder_sequence.shape)}"
            )
        if self_attention_cache is not None and cache_index is None:
            raise ValueError(
                "Received an invalid value for argument `cache_index`, "
                "expected the position of the first new token (an int or a "
                "scalar integer tensor) with a `self_attention_cache`. "
                "Received: cache_index=None"
            )

    @staticmethod
    def _split(result, with_scores, with_cache):
        """(output, (scores or None, cache or None)) from an attention call."""
        if not isinstance(result, tuple):
            return result, (None, None)
        output, rest = result[0], list(result[1:])
        scores = rest.pop(0) if with_scores else None
        cache = rest.pop(0) if with_cache else None
        return output, (scores, cache)

    def compute_mask(self, decoder_sequence, mask=None):
        return mask

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return tuple(decoder_sequence_shape)

    def get_config(self):
        config = super().get_config()
        config["cross_attention_kernel"] = self.cross_attention_kernel
        return config

    def compute_output_spec(
        self,
        decoder_sequence,
        encoder_sequence=None,
        self_attention_cache=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        **kwargs,
    ):
        self._check_call(
            encoder_sequence, self_attention_cache, kwargs.get("cache_index")
        )
        dtype = self.compute_dtype
        output = keras.KerasTensor(decoder_sequence.shape, dtype=dtype)
        outputs = (output,)
        batch, length = decoder_sequence.shape[:2]
        if return_attention_scores:
            self_length = (
                self_attention_cache[0].shape[1]
                if self_attention_cache is not None
                else length
            )
            scores = {}
            if self.self_attention.returns_attention_scores:
                scores["self_attention"] = keras.KerasTensor(
                    (batch, self.num_heads, length, self_length), dtype=dtype
                )
            cross = self.cross_attention
            if encoder_sequence is not None and cross.returns_attention_scores:
                scores["cross_attention"] = keras.KerasTensor(
                    (batch, self.num_heads, length, encoder_sequence.shape[1]),
                    dtype=dtype,
                )
            outputs += (scores,)
        for cache in (self_attention_cache, cross_attention_cache):
            if cache is not None and self_attention_cache is not None:
                # Each entry keeps its own dtype (Performer's count is int32).
                outputs += (tuple(keras.KerasTensor(c.shape, dtype=c.dtype) for c in cache),)
        return outputs[0] if len(outputs) == 1 else outputs
