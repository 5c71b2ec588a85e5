"""Linformer attention: keys and values projected along the sequence axis."""

import math

import keras
import numpy as np
from keras import ops

from keras_attention.layers.attention import efficient_math
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.ops import scaled_dot_product_attention
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_int

_SHARING = ("none", "headwise", "key_value")
_POOLING = "pooling"


@keras.saving.register_keras_serializable(package="keras_attention")
class SequencePooling(keras.initializers.Initializer):
    """Initializer of Linformer's `(n, k)` sequence projections: pooling.

    Row `s` (a key position) is nonzero only in column `p = s * k // n`, so
    projected key/value `p` starts as the pooled keys/values of the `m_p`
    (about `n / k`) consecutive positions of segment `p` (the pooling
    projection of Wang et al. 2020, section 4, "general projections"),
    weighted `1 / sqrt(m_p)`: the columns are orthonormal (`E^T E = I`), so
    projecting independent keys keeps their scale, between the mean (which
    shrinks a lone salient key by `m_p`) and the sum (which grows the
    filler by `sqrt(m_p)`). At full rank (`k == n`) this is the identity,
    so Linformer starts as exact attention; with `k > n` the extra columns
    start at zero. Leading axes (one matrix per head) get the same matrix.

    Why not a dense random initializer: with E and F drawn independently
    (e.g. Glorot), every projected key and value is a random signed mixture
    of all n positions, and E's and F's mixtures are unrelated, so a query
    that finds a salient key through E receives a random signed mixture of
    values through F; on a task that needs one token's value the classifier
    stays at chance even at `k == n` (see `benchmarks/kernel_quality.py`).

    Example:

    ```python
    from keras_attention.layers.attention.linformer_attention import (
        SequencePooling)
    SequencePooling()((4, 2))  # [[.71, 0], [.71, 0], [0, .71], [0, .71]]
    ```
    """

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                "Received an invalid value for argument `shape`, expected at "
                "least 2 axes (sequence_length, projection_dim). Received: "
                f"shape={shape}"
            )
        n, k = shape[-2], shape[-1]
        columns = np.arange(n) * k // n  # (n,)
        matrix = (columns[:, None] == np.arange(k)[None, :]).astype("float64")
        sizes = matrix.sum(axis=0)  # (k,) positions per segment
        matrix = matrix / np.sqrt(np.maximum(sizes, 1.0))[None, :]
        matrix = np.broadcast_to(matrix, shape)
        return ops.convert_to_tensor(matrix, dtype=dtype or "float32")

    def get_config(self):
        return {}


def _get_projection_initializer(identifier):
    """`SequencePooling` for `"pooling"`, else `keras.initializers.get`."""
    if isinstance(identifier, str) and identifier == _POOLING:
        return SequencePooling()
    error = None
    try:
        initializer = keras.initializers.get(identifier)
    except (ValueError, TypeError) as caught:
        initializer, error = None, caught
    if initializer is None:
        raise ValueError(
            "Received an invalid value for argument `projection_initializer`, "
            f"expected {_POOLING!r} or a Keras initializer. Received: "
            f"projection_initializer={identifier!r}"
        ) from error
    return initializer


@keras.saving.register_keras_serializable(package="keras_attention")
class LinformerAttention(MultiHeadAttention):
    """Multi-head attention with low-rank projections along the sequence.

    Linformer (Wang et al. 2020, eq. 7) projects the S projected keys and
    values of each head down to `projection_dim` k rows with learned
    `(sequence_length, k)` matrices E and F along the sequence axis:
    `head_i = softmax(Q_i (E^T K_i)^T / sqrt(D)) (F^T V_i)`, so time and
    memory grow as `O(T * k)` instead of `O(T * S)`. (This is the paper's
    projection; it is not a projection of the feature axis.)

    E and F are built for at most `sequence_length` keys; a shorter key
    sequence uses their first S rows. Masked (padded) keys and values are
    zeroed before the projection, so they contribute nothing; padded
    queries return a zero context. `projection_sharing` selects the paper's
    parameter sharing (section 4): `"none"` (one E and F per key/value
    head), `"headwise"` (one E and F for all heads) or `"key_value"` (one
    matrix, E = F, for all heads).

    Shape letters: B batch, T query length, S key length, H query heads,
    K key/value heads, D `key_dim`, Dv `value_dim`, k `projection_dim`.

    Not defined by the paper, and rejected with a `ValueError` naming the
    argument: `use_causal_mask=True` (a projection mixes all positions), an
    explicit `attention_mask` and `attention_bias` (they address the S
    original keys), `return_attention_scores` (the weights are over the k
    projected keys), and a KV cache.

    E and F start as pooling over segments (`SequencePooling`, the paper's
    pooling projection, with orthonormal columns): projected key `p` is
    the sum of the keys of the `p`-th run of `m_p` (about `S_max / k`)
    positions divided by `sqrt(m_p)`, which is the identity (exact
    attention) at `k == sequence_length`. Pass `projection_initializer`
    (for example `"glorot_uniform"`) for random projections; independent
    random E and F mix every position with random signs and learn far worse
    (chance on the pair-matching task of `benchmarks/kernel_quality.py`,
    even at full rank).

    Args:
        num_heads: number of query heads H.
        key_dim: size of each query/key head D.
        sequence_length: maximum key length the projections cover.
            Defaults to the key length seen at build (which must be static).
        projection_dim: number k of projected keys/values.
        projection_sharing: `"none"`, `"headwise"` or `"key_value"`.
        value_dim: size of each value head Dv. Defaults to `key_dim`.
        num_key_value_heads: number of key/value heads K; must divide
            `num_heads`. Defaults to `num_heads`.
        dropout: dropout rate on the `(B, H, T, k)` attention weights, in
            `[0, 1)`.
        use_bias: whether the four projections have biases.
        output_shape: size (int) or shape (tuple) of the output features.
            Defaults to the query's last dimension.
        rotary_embedding: `None`, or a weightless position layer (such as
            `RotaryEmbedding`) applied to projected queries and keys, or its
            serialized config.
        kernel_initializer: initializer of the four projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: regularizer of the projection kernels.
        bias_regularizer: regularizer of the projection biases.
        seed: optional integer seed of the attention dropout.
        projection_initializer: initializer of the sequence projections E
            and F: `"pooling"` (`SequencePooling`, segment pooling; the
            default) or any Keras initializer.
        trainable_projections: whether E and F are learned (the paper's
            linear projection). `False` keeps them at their initial value,
            e.g. a fixed pooling projection (the paper's section 4
            "general projections"); they are then non-trainable weights.
            Measured in `benchmarks/kernel_quality.py` at k = S/4: fixed
            pooling matches exact attention on a task that does not depend
            on where its tokens are (marker matching, where learned E and F
            stay at chance), and learned E and F do better on real text.

    Call arguments:
        query: `(B, T, features)` tensor.
        value: `(B, S, features)` tensor, `S <= sequence_length`.
        key: optional `(B, S, features)` tensor; defaults to `value`.
        query_mask: optional `(B, T)` mask (implicit from `query`).
        value_mask: optional `(B, S)` mask of attendable keys.
        key_mask: optional `(B, S)` mask, merged with `value_mask`.
        attention_mask: must be `None`.
        use_causal_mask: must be `False`.
        return_attention_scores: must be `False`.
        training: whether dropout is active.
        attention_bias: must be `None`.
        cache: must be `None` (no KV cache).
        cache_index: must be `None`.

    Returns:
        `(B, T, output features)` tensor.

    Raises:
        ValueError: on invalid constructor arguments (`sequence_length` or
            `projection_dim` < 1, unknown `projection_sharing` or
            `projection_initializer`, a non-bool `trainable_projections`,
            and those of
            `MultiHeadAttention`), an unknown key length at build without
            `sequence_length`, keys longer than `sequence_length`, or any of
            the unsupported call arguments above.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import LinformerAttention
    layer = LinformerAttention(num_heads=2, key_dim=8, sequence_length=32,
                               projection_dim=8)
    x = np.random.rand(2, 32, 16).astype("float32")
    y = layer(x, x)  # (2, 32, 16)
    ```

    References:
        Wang et al., 2020, "Linformer: Self-Attention with Linear
        Complexity", sections 3-4.
    """

    # Its weights are over the k projected rows, not token by token:
    # `return_attention_scores=True` is refused (plots skip this kernel).
    returns_attention_scores = False

    def __init__(
        self,
        num_heads,
        key_dim,
        sequence_length=None,
        projection_dim=128,
        projection_sharing="headwise",
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
        projection_initializer=_POOLING,
        trainable_projections=True,
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
        self.sequence_length = check_positive_int(
            sequence_length, "sequence_length", allow_none=True
        )
        self.projection_dim = check_positive_int(projection_dim, "projection_dim")
        self.projection_sharing = check_one_of(
            projection_sharing, "projection_sharing", _SHARING
        )
        self.projection_initializer = _get_projection_initializer(
            projection_initializer
        )
        if not isinstance(trainable_projections, bool):
            raise ValueError(
                "Received an invalid value for argument `trainable_projections`, "
                "expected a bool. Received: "
                f"trainable_projections={trainable_projections!r}"
            )
        self.trainable_projections = trainable_projections

    def build(self, query_shape, value_shape, key_shape=None):
        key_length = tuple(value_shape)[1] if len(tuple(value_shape)) > 1 else None
        length = self.sequence_length
        if length is None:
            if key_length is None:
                raise ValueError(
                    "Received an invalid value for argument `value`, expected a "
                    "static key length (axis 1) to size the sequence "
                    "projections, or pass `sequence_length`. Received: "
                    f"value.shape={tuple(value_shape)}"
                )
            length = key_length
        self._check_key_length(key_length, length, value_shape)
        super().build(query_shape, value_shape, key_shape)
        self._max_length = length
        shape = (length, self.projection_dim)
        if self.projection_sharing == "none":
            shape = (self._kv_heads,) + shape
        self.key_projection = self.add_weight(
            name="key_projection",
            shape=shape,
            initializer=clone_initializer(self.projection_initializer),
            trainable=self.trainable_projections,
        )
        self.value_projection = None
        if self.projection_sharing != "key_value":
            self.value_projection = self.add_weight(
                name="value_projection",
                shape=shape,
                initializer=clone_initializer(self.projection_initializer),
                trainable=self.trainable_projections,
            )

    @staticmethod
    def _check_key_length(key_length, max_length, value_shape):
        if key_length is not None and key_length > max_length:
            raise ValueError(
                "Received an invalid value for argument `value`, expected at "
                f"most sequence_length={max_length} keys (axis 1). Received: "
                f"value.shape={tuple(value_shape)}"
            )

    def get_initial_cache(self, batch_size, max_length, dtype=None, rewind=0):
        """Not supported: `LinformerAttention` keeps no KV cache.

        Raises:
            ValueError: always.
        """
        efficient_math.reject_cache_method(self, "get_initial_cache")

    def compute_cross_attention_cache(self, value, key=None):
        """Not supported: `LinformerAttention` keeps no KV cache.

        Raises:
            ValueError: always.
        """
        efficient_math.reject_cache_method(self, "compute_cross_attention_cache")

    def _check_call_args(self, query, value, key, attention_mask, attention_bias,
                         cache, cache_index):
        efficient_math.check_no_cache(self, cache, cache_index)
        reason = "None (it addresses keys that are projected away)"
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
        if self.built:
            self._check_key_length(value.shape[1], self._max_length, value.shape)
        return super()._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )

    def _check_modes(self, use_causal_mask, return_attention_scores):
        if use_causal_mask:
            efficient_math.reject_argument(
                self, "use_causal_mask", use_causal_mask,
                "False (the paper defines no causal Linformer)",
            )
        if return_attention_scores:
            efficient_math.reject_argument(
                self, "return_attention_scores", return_attention_scores,
                "False (the weights are over projected keys)",
            )

    def _project(self, x, matrix):
        """`(B, S, K, d)` along S with `(S_max, k)` or `(K, S_max, k)`."""
        length = ops.shape(x)[1]
        matrix = ops.cast(matrix, x.dtype)
        if self.projection_sharing == "none":
            matrix = matrix[:, :length]  # (K, S, k)
            return ops.einsum("bskd,ksp->bpkd", x, matrix)  # (B, k, K, d)
        matrix = matrix[:length]  # (S, k)
        return ops.einsum("bskd,sp->bpkd", x, matrix)  # (B, k, K, d)

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
        self._check_modes(use_causal_mask, return_attention_scores)
        self._check_call_args(
            query, value, key, attention_mask, attention_bias, cache, cache_index
        )
        query_proj, key_proj, value_proj = self._project_inputs(
            query, value, key
        )  # (B, T, H, D), (B, S, K, D), (B, S, K, Dv)
        q_mask, k_mask = efficient_math.token_masks(
            query, key_proj, query_mask, value_mask, key_mask
        )
        if k_mask is not None:
            keep = ops.cast(k_mask, key_proj.dtype)[:, :, None, None]  # (B, S, 1, 1)
            key_proj = key_proj * keep
            value_proj = value_proj * keep
        value_matrix = (
            self.key_projection
            if self.value_projection is None
            else self.value_projection
        )
        key_low = self._project(key_proj, self.key_projection)  # (B, k, K, D)
        value_low = self._project(value_proj, value_matrix)  # (B, k, K, Dv)
        mask = None if q_mask is None else q_mask[:, None, :, None]  # (B, 1, T, 1)
        attended = scaled_dot_product_attention(
            query_proj,
            key_low,
            value_low,
            mask=mask,
            scale=1.0 / math.sqrt(self.key_dim),
            dropout=self.dropout,
            seed=self.seed_generator,
            training=bool(training),
        )  # (B, T, H, Dv)
        return self.output_dense(attended)  # (B, T, *output_shape)

    def compute_output_spec(self, query, value, key=None, use_causal_mask=False,
                            return_attention_scores=False, **kwargs):
        self._check_modes(use_causal_mask, return_attention_scores)
        return super().compute_output_spec(query, value, key=key, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "projection_dim": self.projection_dim,
                "projection_sharing": self.projection_sharing,
                "projection_initializer": keras.initializers.serialize(
                    self.projection_initializer
                ),
                "trainable_projections": self.trainable_projections,
            }
        )
        return config
