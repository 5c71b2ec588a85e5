"""Wrong bits per sequence: the cost reported for the NTM/DNC bit tasks."""

import keras
from keras import ops

from keras_attention.utils import validation


@keras.saving.register_keras_serializable(package="keras_attention")
class BitErrorsPerSequence(keras.metrics.Metric):
    """Mean number of wrong output bits per sequence on the bit tasks.

    Predicted bits are `y_pred > threshold` (after a sigmoid when
    `from_logits`), target bits `y_true > 0.5`. For every sequence the wrong
    bits are counted over the steps where `sample_weight > 0` (the output
    phase of the algorithmic tasks; every step when no weight is given), and
    the metric is the mean of these counts over all sequences seen since the
    last reset:

        errors = (1 / B) sum_b sum_t sum_c [w_bt > 0] [bit_btc != target_btc]

    Collier and Beel (2018) call a model converged on copy when this is
    below 0.1 on 640 evaluation sequences. Pass it in `weighted_metrics` of
    `compile` so Keras hands it the tasks' per-step sample weights (plain
    `metrics` receive no `sample_weight`).

    Args:
        threshold: float in `(0, 1)`, the probability above which a bit is 1.
        from_logits: bool, whether `y_pred` holds logits.
        name: name of the metric (the key in `logs` and `History`).
        dtype: dtype of the result.

    Call arguments:
        y_true: target bits `(B, T, C)` (or `(B, C)`).
        y_pred: probabilities or logits of the same shape.
        sample_weight: optional `(B, T)` (or `(B,)`) weights; only whether a
            step's weight is positive matters.

    Returns:
        `result()` gives a scalar, wrong bits per sequence.

    Raises:
        ValueError: if `threshold` is not in `(0, 1)`.

    Example:

    ```python
    import numpy as np
    from keras_attention.training import BitErrorsPerSequence

    metric = BitErrorsPerSequence()
    y_true = np.array([[[1, 0], [1, 1]], [[0, 0], [1, 0]]], "float32")
    y_pred = np.array([[[0.9, 0.8], [0.7, 0.6]], [[0.1, 0.2], [0.3, 0.4]]],
                      "float32")
    weight = np.array([[1, 1], [0, 1]], "float32")  # step 0 of seq 1 ignored
    metric.update_state(y_true, y_pred, sample_weight=weight)
    float(metric.result())  # (1 + 1) / 2 sequences = 1.0
    ```

    References:
        - Graves, Wayne and Danihelka, 2014. [Neural Turing Machines](
          https://arxiv.org/abs/1410.5401).
        - Collier and Beel, 2018. [Implementing Neural Turing Machines](
          https://arxiv.org/abs/1807.08518).
    """

    def __init__(
        self,
        threshold=0.5,
        from_logits=False,
        name="bit_errors_per_sequence",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0 < threshold < 1
        ):
            raise ValueError(
                "Received an invalid value for argument `threshold`, expected "
                f"a float in (0, 1). Received: threshold={threshold!r}"
            )
        self.threshold = float(threshold)
        self.from_logits = validation.check_bool(from_logits, "from_logits")
        self.errors = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="errors"
        )
        self.sequences = self.add_variable(
            shape=(), initializer="zeros", dtype="float32", name="sequences"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred)
        wrong = ops.cast(
            ops.not_equal(y_pred > self.threshold, y_true > 0.5), "float32"
        )  # (B, ..., C)
        if sample_weight is not None:
            weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
            valid = ops.cast(weight > 0, "float32")
            while len(valid.shape) < len(wrong.shape):
                valid = ops.expand_dims(valid, -1)  # (B, ..., 1)
            wrong = wrong * valid
        self.errors.assign_add(ops.sum(wrong))
        self.sequences.assign_add(ops.cast(ops.shape(wrong)[0], "float32"))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.errors, self.sequences), self.dtype)

    def get_config(self):
        return {
            "threshold": self.threshold,
            "from_logits": self.from_logits,
            "name": self.name,
            "dtype": self.dtype,
        }
