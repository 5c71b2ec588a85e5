"""Attention pooling: a learned query summarises a sequence into one vector."""

import keras
from keras import ops

from keras_attention.layers.attention.single_head_attention_base import (
    AttentionWeightsBase,
)
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rank


@keras.saving.register_keras_serializable(package="keras_attention")
class AttentionPooling(AttentionWeightsBase):
    """Pools a `(B, T, D)` sequence into a `(B, D)` vector with a learned query.

    The attention layer of Yang et al. (2016), split into heads. Each step
    is projected, `u_t = tanh(W x_t + b)`, and split into H heads of size
    `D / H`; a learned context vector per head, `c_h`, scores each step,
    `a_{h,t} = softmax_t(u_{t,h} . c_h)` (in float32), and head `h` of the
    output averages head `h` of the inputs: `y_h = sum_t a_{h,t} x_{t,h}`.
    The heads are concatenated back to size D. With `num_heads=1` this is
    exactly the paper's word-level attention. Masked steps get zero weight
    and a fully masked sequence pools to zeros.

    Shape letters: B batch, T sequence length, D feature size, H heads.
    Scores are returned in the compute dtype, before dropout. The output has
    no time axis, so no mask is propagated.

    Args:
        num_heads: number of heads H; must divide D.
        dropout: dropout rate on the attention weights, in `[0, 1)`.
        seed: optional integer seed of the dropout.
        use_bias: whether the projection `W` has a bias `b`.
        kernel_initializer: initializer of `W` and of the context vectors.
        bias_initializer: initializer of `b`.

    Call arguments:
        inputs: `(B, T, D)` tensor.
        mask: optional `(B, T)` boolean mask, `True` for real steps; read
            from the inputs' implicit Keras mask when not given.
        return_attention_scores: whether to also return the `(B, H, T)`
            weights.
        training: whether dropout is active.

    Returns:
        The `(B, D)` pooled vector, or `(pooled, scores)` when
        `return_attention_scores=True`.

    Raises:
        ValueError: if `num_heads` is not a positive integer or does not
            divide D, `dropout` is outside `[0, 1)`, `seed` is not an
            integer, the inputs are not rank 3, or the mask is not `(B, T)`.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    layer = ka.layers.AttentionPooling(num_heads=2)
    x = np.random.rand(2, 5, 8).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    pooled, scores = layer(x, mask=mask, return_attention_scores=True)
    tuple(pooled.shape), tuple(scores.shape)  # (2, 8), (2, 2, 5)
    ```

    References:
        Yang et al., 2016, "Hierarchical Attention Networks for Document
        Classification", section 2.2.
    """

    def __init__(
        self,
        num_heads=1,
        dropout=0.0,
        seed=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        check_rank(input_shape, "inputs", 3)
        dim = input_shape[-1]
        if dim is None or dim % self.num_heads != 0:
            raise ValueError(
                "Received an invalid value for argument `num_heads`, expected "
                f"a divisor of the input feature size {dim}. Received: "
                f"num_heads={self.num_heads}"
            )
        self.projection = keras.layers.Dense(
            dim,
            activation="tanh",
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="projection",
        )
        self.projection.build(input_shape)
        self.context = self.add_weight(
            name="context",
            shape=(self.num_heads, dim // self.num_heads),
            initializer=clone_initializer(self.kernel_initializer),
        )
        self.built = True

    def call(self, inputs, mask=None, return_attention_scores=False, training=None):
        heads = self.num_heads
        shape = ops.shape(inputs)
        split = (shape[0], shape[1], heads, inputs.shape[-1] // heads)
        hidden = ops.reshape(self.projection(inputs), split)  # (B, T, H, D/H)
        logits = ops.einsum("bthd,hd->bht", hidden, self.context)  # (B, H, T)
        if mask is not None:
            mask_shape = tuple(mask.shape)
            if len(mask_shape) != 2 or (
                None not in (mask_shape[1], inputs.shape[1])
                and mask_shape[1] != inputs.shape[1]
            ):
                raise ValueError(
                    "Received an invalid value for argument `mask`, expected "
                    "a boolean tensor of shape (batch, sequence_length) "
                    f"matching the inputs. Received: mask.shape={mask_shape}, "
                    f"inputs.shape={tuple(inputs.shape)}"
                )
            mask = ops.cast(mask, "bool")[:, None, :]  # (B, 1, T)
        weights = self._attention_weights(logits, mask)  # (B, H, T)
        values = ops.reshape(ops.cast(inputs, self.compute_dtype), split)
        # values: (B, T, H, D/H)
        pooled = ops.einsum(
            "bht,bthd->bhd", self._dropout_weights(weights, training), values
        )  # (B, H, D/H)
        pooled = ops.reshape(pooled, (shape[0], inputs.shape[-1]))  # (B, D)
        if return_attention_scores:
            return pooled, weights
        return pooled

    def compute_mask(self, inputs, previous_mask=None):
        # The time axis is pooled away: nothing to propagate.
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_output_spec(
        self, inputs, mask=None, return_attention_scores=False, training=None
    ):
        pooled = keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype=self.compute_dtype
        )
        if not return_attention_scores:
            return pooled
        scores = keras.KerasTensor(
            (inputs.shape[0], self.num_heads, inputs.shape[1]),
            dtype=self.compute_dtype,
        )  # (B, H, T)
        return pooled, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
