"""Token-level metrics that ignore padding."""

import keras
from keras import ops

from keras_attention.training.losses import _broadcast_weights
from keras_attention.training.losses import _check_pad_id
from keras_attention.training.losses import _token_labels
from keras_attention.training.losses import token_mask


@keras.saving.register_keras_serializable(package="keras_attention")
class MaskedAccuracy(keras.metrics.Metric):
    """Token accuracy of `argmax(y_pred)` over non-padding labels.

    Accumulates, over all batches seen since the last reset,

        accuracy = sum_i w_i m_i [argmax_k y_pred_ik == y_i] / sum_i w_i m_i

    with `m_i = (y_i != pad_id)` and `w_i` the optional `sample_weight` (per
    sample `(B,)` or per token `(B, T)`). Padding never counts, so the value
    does not depend on how much padding a batch has (unlike plain
    `"accuracy"` on padded sequences). With no non-padding token seen the
    result is 0.

    Args:
        pad_id: int or `None`, the label of padding tokens; `None` counts
            every token.
        name: name of the metric (the key in `logs` and `History`).
        dtype: dtype of the result.

    Call arguments:
        y_true: integer labels, `(B, T)` or `(B, T, 1)`.
        y_pred: scores (logits or probabilities), `(B, T, V)`.
        sample_weight: optional `(B,)`, `(B, T)` or `(B, T, 1)` weights.

    Returns:
        `result()` gives a scalar in [0, 1].

    Raises:
        ValueError: if `pad_id` is not an integer or `None`.

    Example:

    ```python
    import numpy as np
    from keras_attention.training import MaskedAccuracy
    metric = MaskedAccuracy(pad_id=0)
    y_true = np.array([[1, 2, 0]])
    y_pred = np.eye(3, dtype="float32")[None, [1, 0, 0]]  # argmax 1, 0, 0
    metric.update_state(y_true, y_pred)
    float(metric.result())  # 0.5: one of the two real tokens is right
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(self, pad_id=0, name="masked_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.pad_id = _check_pad_id(pad_id)
        self.correct = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="correct"
        )
        self.total = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="total"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        labels = _token_labels(y_true, y_pred)  # (B, T)
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")  # (B, T)
        weights = token_mask(labels, self.pad_id)  # (B, T)
        if sample_weight is not None:
            weights = weights * _broadcast_weights(sample_weight, labels)
        hits = ops.cast(ops.equal(predicted, labels), "float32")
        self.correct.assign_add(ops.sum(hits * weights))
        self.total.assign_add(ops.sum(weights))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.correct, self.total), self.dtype)

    def get_config(self):
        config = super().get_config()
        config["pad_id"] = self.pad_id
        return config
