"""Checkpoint averaging: the mean of the last N checkpoints' weights."""

import collections
import os

import keras
import numpy as np

from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int


def _mean_weights(weight_lists):
    """Element-wise mean of equally shaped weight lists.

    Floating-point arrays are averaged in float64 and cast back; other arrays
    (integer counters, boolean flags) cannot be averaged and take the value
    of the last list.
    """
    first = weight_lists[0]
    for index, weights in enumerate(weight_lists[1:], start=1):
        if len(weights) != len(first):
            raise ValueError(
                "Received an invalid value for argument `checkpoints`, "
                "expected checkpoints of the same model. Received: checkpoint "
                f"0 has {len(first)} weights, checkpoint {index} has "
                f"{len(weights)}"
            )
        for j, (a, b) in enumerate(zip(first, weights)):
            if np.shape(a) != np.shape(b):
                raise ValueError(
                    "Received an invalid value for argument `checkpoints`, "
                    "expected checkpoints of the same model. Received: weight "
                    f"{j} has shape {np.shape(a)} in checkpoint 0 and "
                    f"{np.shape(b)} in checkpoint {index}"
                )
    averaged = []
    for arrays in zip(*weight_lists):
        arrays = [np.asarray(a) for a in arrays]
        # `is_float_dtype`, not `np.floating`: ml_dtypes' bfloat16 is not one.
        if keras.backend.is_float_dtype(keras.backend.standardize_dtype(arrays[-1].dtype)):
            mean = np.mean(np.stack(arrays).astype("float64"), axis=0)
            averaged.append(mean.astype(arrays[-1].dtype))
        else:
            averaged.append(arrays[-1].copy())
    return averaged


def _load_weights(checkpoint, model, index):
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        if path.endswith(".weights.h5"):
            if model is None:
                raise ValueError(
                    "Received an invalid value for argument `model`, expected "
                    "a model to load `.weights.h5` checkpoints into. Received: "
                    "model=None"
                )
            model.load_weights(path)
            return model.get_weights()
        if path.endswith(".keras"):
            if model is not None:
                model.load_weights(path)
                return model.get_weights()
            return keras.models.load_model(path, compile=False).get_weights()
        raise ValueError(
            "Received an invalid value for argument `checkpoints`, expected "
            "paths ending in `.weights.h5` or `.keras`, or lists of arrays. "
            f"Received: checkpoints[{index}]={path!r}"
        )
    if isinstance(checkpoint, (list, tuple)):
        return [np.asarray(w) for w in checkpoint]
    raise ValueError(
        "Received an invalid value for argument `checkpoints`, expected "
        "paths ending in `.weights.h5` or `.keras`, or lists of arrays. "
        f"Received: checkpoints[{index}] of type {type(checkpoint).__name__}"
    )


def average_checkpoints(checkpoints, model=None):
    """Average the weights of several checkpoints of the same model.

    Each checkpoint is a `.weights.h5` file (written by `model.save_weights`;
    needs `model` as the architecture to load into), a `.keras` file
    (written by `model.save`) or a list of arrays as returned by
    `model.get_weights()`. Floating-point weights are averaged element-wise
    (in float64, cast back); non-float weights take the last checkpoint's
    value. The paper averaged the last 5 checkpoints (base model) or 20
    (big model).

    Args:
        checkpoints: non-empty sequence of paths or weight lists, all of the
            same architecture.
        model: optional `keras.Model`. Needed for `.weights.h5` files; when
            given, the averaged weights are also set into it (the files are
            loaded through it, so its previous weights are replaced).

    Returns:
        The averaged weights, a list of NumPy arrays in `get_weights()` order.

    Raises:
        ValueError: if `checkpoints` is empty, holds something that is not a
            supported path or weight list, or checkpoints disagree in weight
            count or shapes; or `.weights.h5` files come without `model`.

    Example:

    ```python
    import numpy as np
    from keras_attention.training import average_checkpoints
    a = [np.zeros((2, 2)), np.array([1.0])]
    b = [np.ones((2, 2)), np.array([3.0])]
    average_checkpoints([a, b])  # [0.5 * ones((2, 2)), array([2.0])]
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
          section 6.1.
    """
    if isinstance(checkpoints, (str, os.PathLike)) or not len(checkpoints):
        raise ValueError(
            "Received an invalid value for argument `checkpoints`, expected a "
            "non-empty sequence of checkpoints. Received: "
            f"checkpoints={checkpoints!r}"
        )
    weight_lists = [
        _load_weights(checkpoint, model, index)
        for index, checkpoint in enumerate(checkpoints)
    ]
    averaged = _mean_weights(weight_lists)
    if model is not None:
        model.set_weights(averaged)
    return averaged


class CheckpointAveraging(keras.callbacks.Callback):
    """Keep the last N checkpoints during `fit` and average them.

    A checkpoint (all of `model.get_weights()`, not the optimizer state) is
    taken at the end of every epoch (`save_freq="epoch"`) or every
    `save_freq` training batches (counted across epochs and `fit` calls).
    Only the last `num_checkpoints` are kept: in memory by default, or as
    `.weights.h5` files in `directory` (older files are deleted). At the end
    of training (`average_on_train_end=True`) or whenever
    `apply_average()` is called, the model's weights are set to the
    element-wise mean of the kept checkpoints, as the paper did with the
    last 5 checkpoints. With fewer checkpoints than `num_checkpoints` so far,
    the mean is over those taken; with none, nothing changes.

    Checkpoints persist across `fit` calls; `reset()` forgets them. In
    memory, N checkpoints cost N copies of the weights.

    Args:
        num_checkpoints: int >= 1, how many recent checkpoints to average.
        save_freq: `"epoch"` or a positive int, checkpoint every epoch or
            every `save_freq` batches.
        average_on_train_end: bool, set the model to the average when `fit`
            ends.
        directory: optional directory for `.weights.h5` checkpoint files
            (`checkpoint-<n>.weights.h5`); `None` keeps them in memory.

    Raises:
        ValueError: if `num_checkpoints` or an integer `save_freq` is not a
            positive integer, or `save_freq` is another string than
            `"epoch"`.
        TypeError: if `average_on_train_end` is not a bool.

    Example:

    ```python
    import numpy as np, keras
    from keras_attention.training import CheckpointAveraging
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    averaging = CheckpointAveraging(num_checkpoints=2)
    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=3, verbose=0,
              callbacks=[averaging])  # weights = mean of epochs 2 and 3
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
          section 6.1.
    """

    def __init__(
        self,
        num_checkpoints=5,
        save_freq="epoch",
        average_on_train_end=True,
        directory=None,
    ):
        super().__init__()
        self.num_checkpoints = check_positive_int(num_checkpoints, "num_checkpoints")
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(
                    "Received an invalid value for argument `save_freq`, "
                    "expected 'epoch' or a positive integer. Received: "
                    f"save_freq={save_freq!r}"
                )
            save_freq = check_positive_int(save_freq, "save_freq")
        self.save_freq = save_freq
        self.average_on_train_end = check_bool(
            average_on_train_end, "average_on_train_end"
        )
        self.directory = None if directory is None else os.fspath(directory)
        self._checkpoints = collections.deque()
        self._batches_seen = 0
        self._saved = 0

    @property
    def checkpoints(self):
        """The kept checkpoints, oldest first (weight lists or file paths)."""
        return list(self._checkpoints)

    def reset(self):
        """Forget every kept checkpoint (files in `directory` are deleted)."""
        while self._checkpoints:
            self._discard(self._checkpoints.popleft())

    def _discard(self, checkpoint):
        if isinstance(checkpoint, str) and os.path.exists(checkpoint):
            os.remove(checkpoint)

    def save_checkpoint(self):
        """Take a checkpoint of the model's current weights now."""
        self._saved += 1
        if self.directory is None:
            checkpoint = [np.array(w, copy=True) for w in self.model.get_weights()]
        else:
            os.makedirs(self.directory, exist_ok=True)
            checkpoint = os.path.join(
                self.directory, f"checkpoint-{self._saved}.weights.h5"
            )
            self.model.save_weights(checkpoint, overwrite=True)
        self._checkpoints.append(checkpoint)
        while len(self._checkpoints) > self.num_checkpoints:
            self._discard(self._checkpoints.popleft())

    def averaged_weights(self):
        """The mean of the kept checkpoints, or `None` if there are none."""
        if not self._checkpoints:
            return None
        if self.directory is None:
            return _mean_weights(list(self._checkpoints))
        current = self.model.get_weights()
        try:
            return average_checkpoints(list(self._checkpoints), model=self.model)
        finally:
            self.model.set_weights(current)

    def apply_average(self):
        """Set the model's weights to the average; returns it (or `None`)."""
        averaged = self.averaged_weights()
        if averaged is not None:
            self.model.set_weights(averaged)
        return averaged

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self.save_checkpoint()

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self.save_checkpoint()

    def on_train_end(self, logs=None):
        if self.average_on_train_end:
            self.apply_average()
