"""Token-level losses that ignore padding."""

import numbers

import keras
from keras import ops

from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_rate


def _check_pad_id(pad_id):
    if pad_id is not None and (
        not isinstance(pad_id, numbers.Integral) or isinstance(pad_id, bool)
    ):
        raise ValueError(
            "Received an invalid value for argument `pad_id`, expected an "
            f"integer or None. Received: pad_id={pad_id!r}"
        )
    return None if pad_id is None else int(pad_id)


def _token_labels(y_true, y_pred):
    """Integer labels of shape `y_pred.shape[:-1]`."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)  # (B, T)
    return ops.cast(y_true, "int32")


def _broadcast_weights(sample_weight, labels):
    """Per-sample `(B,)` or per-token `(B, T)` / `(B, T, 1)` weights."""
    sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
    rank, target_rank = len(sample_weight.shape), len(labels.shape)
    if rank == target_rank + 1:
        sample_weight = ops.squeeze(sample_weight, axis=-1)  # (B, T)
    while len(sample_weight.shape) < target_rank:
        sample_weight = ops.expand_dims(sample_weight, axis=-1)  # (B, 1)
    return ops.broadcast_to(sample_weight, ops.shape(labels))


def token_mask(labels, pad_id):
    """Float32 mask, 1 where `labels != pad_id` (all ones when `pad_id=None`)."""
    if pad_id is None:
        return ops.ones(ops.shape(labels), "float32")
    return ops.cast(ops.not_equal(labels, pad_id), "float32")


@keras.saving.register_keras_serializable(package="keras_attention")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing, ignoring padding.

    For integer labels `y` (shape `(B, T)` or `(B, T, 1)`) and predictions
    over `V` classes (shape `(B, T, V)`), each token's loss is the
    cross-entropy against the smoothed target distribution

        q = (1 - label_smoothing) * one_hot(y) + label_smoothing / V

    which is exactly Keras's `categorical_crossentropy(one_hot(y), y_pred,
    label_smoothing=label_smoothing)` (the smoothing mass is spread over all
    `V` classes, the true one included), i.e.
    `(1 - ls) * NLL(y) + ls * mean_k(-log p_k)`. It is computed from the
    log-softmax without building the one-hot matrix, always in float32, so
    float16 / bfloat16 logits from mixed-precision models are stable.

    Tokens whose label equals `pad_id` get weight 0. With the default
    reduction, the result is the weighted mean over the remaining tokens:

        loss = sum_i w_i m_i l_i / sum_i w_i m_i

    with `m_i = (y_i != pad_id)`, `w_i` the `sample_weight` (per sample
    `(B,)` or per token `(B, T)`, default 1) and, when the predictions carry
    a Keras mask (e.g. from `Embedding(mask_zero=True)`), that mask too. An
    all-padding batch gives 0, not NaN. `pad_id` may be any integer
    (e.g. -100); padded labels are never looked up.

    Args:
        from_logits: bool, whether `y_pred` are logits (the default) or
            probabilities.
        label_smoothing: float in [0, 1), the smoothing mass (0.1 in the
            paper).
        pad_id: int or `None`, the label of padding tokens; `None` masks
            nothing.
        reduction: `"mean_with_sample_weight"` (default, the weighted mean
            over non-padding tokens), `"sum"` (the weighted sum) or `"none"`
            / `None` (per-token losses, zero on padding).
        name: optional name of the loss.
        dtype: dtype (or dtype policy, its compute dtype) of the returned
            loss (default `keras.config.floatx()`); the loss itself is
            computed in float32 whatever it is.

    Call arguments:
        y_true: integer labels, `(B, T)` or `(B, T, 1)`.
        y_pred: logits or probabilities, `(B, T, V)`.
        sample_weight: optional `(B,)`, `(B, T)` or `(B, T, 1)` weights.

    Returns:
        A scalar loss (or `(B, T)` per-token losses with `reduction="none"`).

    Raises:
        ValueError: if `label_smoothing` is outside [0, 1), `pad_id` is not an
            integer or `None`, or `reduction` is not supported.
        TypeError: if `from_logits` is not a bool.

    Example:

    ```python
    import numpy as np
    from keras_attention.training import MaskedSparseCategoricalCrossentropy
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, pad_id=0)
    y_true = np.array([[5, 2, 0, 0]])
    y_pred = np.zeros((1, 4, 8), "float32")   # uniform: loss = log(8)
    float(loss(y_true, y_pred))  # ~2.0794
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
          section 5.4.
        - Szegedy et al., "Rethinking the Inception Architecture for Computer
          Vision", CVPR 2016, section 7 (label smoothing).
    """

    def __init__(
        self,
        from_logits=True,
        label_smoothing=0.0,
        pad_id=0,
        reduction="mean_with_sample_weight",
        name="masked_sparse_categorical_crossentropy",
        dtype=None,
    ):
        if reduction is None:
            reduction = "none"
        check_one_of(reduction, "reduction", ("mean_with_sample_weight", "sum", "none"))
        # The base class converts labels and predictions to its dtype before
        # `call`: float32 always, as token ids above 256 (bfloat16) or 2048
        # (float16) would round to other classes. `dtype` is the result's.
        super().__init__(name=name, reduction=reduction, dtype="float32")
        self._result_dtype_policy = keras.dtype_policies.get(
            dtype or keras.config.floatx()
        )
        self._dtype_argument = dtype
        self.from_logits = check_bool(from_logits, "from_logits")
        self.label_smoothing = check_rate(label_smoothing, "label_smoothing")
        self.pad_id = _check_pad_id(pad_id)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred_tensor = ops.convert_to_tensor(y_pred)
        labels = _token_labels(y_true, y_pred_tensor)
        weights = token_mask(labels, self.pad_id)  # (B, T)
        if sample_weight is not None:
            weights = weights * _broadcast_weights(sample_weight, labels)
        # The base class merges a Keras mask of `y_pred`, applies `weights`,
        # reduces (sum of weighted losses over sum of weights) and scales for
        # tf.distribute.
        loss = super().__call__(labels, y_pred, sample_weight=weights)
        return ops.cast(loss, self._result_dtype_policy.compute_dtype)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")  # (B, T)
        y_pred = ops.cast(y_pred, "float32")  # (B, T, V)
        if self.from_logits:
            log_probs = ops.log_softmax(y_pred, axis=-1)
        else:
            probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
            eps = keras.config.epsilon()
            log_probs = ops.log(ops.clip(probs, eps, 1.0 - eps))
        if self.pad_id is not None:
            # Padded labels may lie outside the vocabulary (e.g. -100).
            labels = ops.where(ops.equal(labels, self.pad_id), 0, labels)
        nll = -ops.squeeze(
            ops.take_along_axis(log_probs, labels[..., None], axis=-1), axis=-1
        )  # (B, T)
        if self.label_smoothing:
            smooth = -ops.mean(log_probs, axis=-1)  # (B, T)
            ls = self.label_smoothing
            nll = (1.0 - ls) * nll + ls * smooth
        return nll

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing,
                "pad_id": self.pad_id,
                "dtype": keras.dtype_policies.serialize(self._dtype_argument)
                if isinstance(self._dtype_argument, keras.DTypePolicy)
                else self._dtype_argument,
            }
        )
        return config
