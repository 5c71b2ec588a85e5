"""Transformer encoder block: self-attention and feed-forward sub-layers."""

import keras

from keras_attention.layers.transformer.transformer_block_base import (
    TransformerBlockBase,
)


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerEncoderBlock(TransformerBlockBase):
    """Transformer encoder block (Vaswani et al. 2017, section 3.1).

    Two sub-layers, each wrapped in a residual connection with normalization:
    multi-head self-attention, then a position-wise feed-forward network.
    Post-LN (the paper's, `norm_first=False`) computes
    `x = Norm(x + Dropout(Sublayer(x)))`; pre-LN (`norm_first=True`)
    computes `x = x + Dropout(Sublayer(Norm(x)))`. `dropout` is the paper's
    residual dropout on each sub-layer output; `attention_dropout` drops
    attention weights inside the attention layer.

    The positional scheme is passed into attention: `"rotary"` rotates
    queries and keys (RoPE), `"relative"` adds a learned T5 relative-position
    bias, `"alibi"` adds ALiBi's linear distance penalty; `None` leaves
    positions to the embeddings. `attention_kernel` picks the attention layer
    by name from `block_components.ATTENTION_KERNELS`, so efficient kernels
    plug in without a new block.

    Shape letters: B batch, T sequence length, E hidden size (the input's last
    axis), H heads.

    Padding: an implicit Keras mask on `inputs` (e.g. from
    `TokenAndPositionEmbedding(mask_zero=True)`) or an explicit
    `padding_mask` masks padded keys; the block propagates the mask.

    Args:
        num_heads: number of attention heads H.
        intermediate_dim: width of the feed-forward hidden layer.
        key_dim: size of each attention head; defaults to `E // num_heads`
            (then E must be divisible by `num_heads`).
        num_key_value_heads: key/value heads for grouped-query attention;
            defaults to `num_heads`.
        dropout: residual dropout rate on each sub-layer output, in [0, 1).
        attention_dropout: dropout rate on the attention weights; defaults to
            `dropout` when `None` (to 0 for `"performer"`, which forms no
            attention weights; a non-zero rate is refused there).
        activation: feed-forward activation, any Keras activation or a gated
            variant (`"swiglu"`, `"geglu"`, ...), see `FeedForward`.
        norm_first: pre-LN when `True`, the paper's post-LN when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_scheme: `None`, `"rotary"`, `"relative"` or `"alibi"`.
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

    Call arguments:
        inputs: `(B, T, E)` tensor.
        padding_mask: optional `(B, T)` boolean mask, `True` for real tokens.
            Defaults to the implicit Keras mask of `inputs`.
        attention_mask: optional `(B, T, T)` boolean mask.
        use_causal_mask: whether to apply a causal mask (for decoder-only
            stacks built from encoder blocks).
        return_attention_scores: whether to also return the `(B, H, T, T)`
            attention weights.
        training: whether dropout is active.

    Returns:
        `(B, T, E)` tensor, or `(output, scores)` with
        `return_attention_scores=True`.

    Raises:
        ValueError: on invalid arguments (non-positive sizes, rates outside
            [0, 1), unknown `normalization`, `position_scheme`,
            `attention_kernel` or `attention_implementation`, an
            `attention_implementation` the kernel does not take, or
            `"blockwise"` / `"fused"` with a non-zero attention dropout), or
            a hidden size not divisible by
            `num_heads` when `key_dim` is not given.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import TransformerEncoderBlock
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32,
                                    position_scheme="rotary")
    x = np.random.rand(2, 6, 16).astype("float32")
    y = block(x, padding_mask=np.array([[1] * 6, [1] * 4 + [0] * 2], bool))
    tuple(y.shape)  # (2, 6, 16)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", section 3.1.
        Xiong et al., 2020, "On Layer Normalization in the Transformer
        Architecture" (pre-LN).
    """

    def build(self, input_shape):
        shape = self._check_sequence_shape(input_shape, "inputs")
        self._build_self_attention(shape, bidirectional=True)
        self._build_feedforward(shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        mask=None,
    ):
        if padding_mask is None:
            padding_mask = mask
        bias = None
        if self.position_bias is not None:
            bias = self.position_bias(inputs, inputs)  # (1, H, T, T)

        def attend(x):
            result = self.self_attention(
                x,
                x,
                query_mask=padding_mask,
                value_mask=padding_mask,
                attention_mask=attention_mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                attention_bias=bias,
                training=training,
            )
            return result if return_attention_scores else (result, None)

        x, scores = self._residual(
            inputs, attend, self.self_attention_layer_norm,
            self.self_attention_dropout, training,
        )
        x = self._feedforward_residual(x, training)
        if return_attention_scores:
            return x, scores
        return x

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False, **kwargs):
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        batch, length = inputs.shape[0], inputs.shape[1]
        scores = keras.KerasTensor(
            (batch, self.num_heads, length, length), dtype=self.compute_dtype
        )
        return output, scores
