import os

import keras
import numpy as np
import pytest

from keras_attention.training import CheckpointAveraging
from keras_attention.training import average_checkpoints


def _model():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3),
            keras.layers.BatchNormalization(),  # non-trainable moving stats
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _data(n=12):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(n, 4)).astype("float32"),
        rng.normal(size=(n, 1)).astype("float32"),
    )


class _Recorder(keras.callbacks.Callback):
    """Independent record of the weights at each epoch / batch end."""

    def __init__(self):
        super().__init__()
        self.epochs, self.batches = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.model.get_weights())


def _assert_weights_close(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)


def _np_mean(weight_lists):
    return [np.mean(np.stack(ws), axis=0) for ws in zip(*weight_lists)]


def test_averages_the_last_n_epochs_at_train_end():
    model, (x, y) = _model(), _data()
    recorder = _Recorder()
    averaging = CheckpointAveraging(num_checkpoints=3)
    model.fit(x, y, batch_size=4, epochs=5, verbose=0, callbacks=[recorder, averaging])
    assert len(averaging.checkpoints) == 3
    expected = _np_mean(recorder.epochs[-3:])
    _assert_weights_close(model.get_weights(), expected)
    # The average really differs from the last checkpoint.
    assert not np.allclose(model.get_weights()[0], recorder.epochs[-1][0])


def test_every_k_steps_across_epochs():
    model, (x, y) = _model(), _data()
    recorder = _Recorder()
    averaging = CheckpointAveraging(num_checkpoints=2, save_freq=2)
    # 3 batches per epoch, 3 epochs = 9 batches: checkpoints after 2,4,6,8.
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[recorder, averaging])
    assert len(recorder.batches) == 9
    _assert_weights_close(
        model.get_weights(), _np_mean([recorder.batches[5], recorder.batches[7]])
    )


def test_on_demand_average_and_fewer_checkpoints_than_n():
    model, (x, y) = _model(), _data()
    recorder = _Recorder()
    averaging = CheckpointAveraging(num_checkpoints=5, average_on_train_end=False)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[recorder, averaging])
    _assert_weights_close(model.get_weights(), recorder.epochs[-1])
    expected = _np_mean(recorder.epochs)  # only 2 checkpoints so far
    _assert_weights_close(averaging.averaged_weights(), expected)
    _assert_weights_close(model.get_weights(), recorder.epochs[-1])
    _assert_weights_close(averaging.apply_average(), expected)
    _assert_weights_close(model.get_weights(), expected)


def test_checkpoints_persist_across_fit_calls_until_reset():
    model, (x, y) = _model(), _data()
    recorder = _Recorder()
    averaging = CheckpointAveraging(num_checkpoints=3, average_on_train_end=False)
    callbacks = [recorder, averaging]
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
    _assert_weights_close(averaging.averaged_weights(), _np_mean(recorder.epochs[-3:]))
    averaging.reset()
    assert averaging.checkpoints == []
    assert averaging.apply_average() is None


def test_directory_checkpoints_keep_only_the_last_n_files(tmp_path):
    model, (x, y) = _model(), _data()
    recorder = _Recorder()
    directory = os.path.join(tmp_path, "ckpts")
    averaging = CheckpointAveraging(num_checkpoints=2, directory=directory)
    model.fit(x, y, batch_size=4, epochs=4, verbose=0, callbacks=[recorder, averaging])
    assert sorted(os.listdir(directory)) == [
        "checkpoint-3.weights.h5",
        "checkpoint-4.weights.h5",
    ]
    _assert_weights_close(model.get_weights(), _np_mean(recorder.epochs[-2:]))


def _saved_checkpoints(tmp_path, fmt):
    model, (x, y) = _model(), _data()
    paths, weights = [], []
    for i in range(3):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        path = os.path.join(tmp_path, f"c{i}{fmt}")
        if fmt == ".keras":
            model.save(path)
        else:
            model.save_weights(path)
        paths.append(path)
        weights.append(model.get_weights())
    return paths, weights


def test_average_checkpoints_of_weights_h5_files(tmp_path):
    paths, weights = _saved_checkpoints(tmp_path, ".weights.h5")
    target = _model()
    averaged = average_checkpoints(paths, model=target)
    _assert_weights_close(averaged, _np_mean(weights))
    _assert_weights_close(target.get_weights(), _np_mean(weights))


def test_average_checkpoints_of_keras_files_with_and_without_model(tmp_path):
    paths, weights = _saved_checkpoints(tmp_path, ".keras")
    _assert_weights_close(average_checkpoints(paths), _np_mean(weights))
    target = _model()
    average_checkpoints(paths, model=target)
    _assert_weights_close(target.get_weights(), _np_mean(weights))


def test_average_checkpoints_of_weight_lists_keeps_non_float_from_last():
    a = [np.array([[1.0, 2.0]], "float32"), np.array([1, 2], "int64")]
    b = [np.array([[3.0, 6.0]], "float32"), np.array([5, 7], "int64")]
    averaged = average_checkpoints([a, b])
    np.testing.assert_array_equal(averaged[0], [[2.0, 4.0]])
    assert averaged[0].dtype == np.float32
    np.testing.assert_array_equal(averaged[1], [5, 7])
    assert averaged[1].dtype == np.int64


def test_average_checkpoints_bad_input(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"argument `checkpoints`, expected a non-empty sequence of "
        r"checkpoints\. Received: checkpoints=\[\]",
    ):
        average_checkpoints([])
    with pytest.raises(ValueError, match=r"expected a non-empty sequence"):
        average_checkpoints("model.keras")
    with pytest.raises(
        ValueError,
        match=r"argument `model`, expected a model to load `\.weights\.h5` "
        r"checkpoints into\. Received: model=None",
    ):
        average_checkpoints(["a.weights.h5"])
    with pytest.raises(
        ValueError,
        match=r"paths ending in `\.weights\.h5` or `\.keras`, or lists of "
        r"arrays\. Received: checkpoints\[0\]='model\.h5'",
    ):
        average_checkpoints(["model.h5"])
    with pytest.raises(
        ValueError, match=r"Received: checkpoints\[1\] of type int"
    ):
        average_checkpoints([[np.zeros(2)], 3])
    with pytest.raises(
        ValueError,
        match=r"expected checkpoints of the same model\. Received: checkpoint "
        r"0 has 1 weights, checkpoint 1 has 2",
    ):
        average_checkpoints([[np.zeros(2)], [np.zeros(2), np.zeros(2)]])
    with pytest.raises(
        ValueError,
        match=r"Received: weight 0 has shape \(2,\) in checkpoint 0 and "
        r"\(3,\) in checkpoint 1",
    ):
        average_checkpoints([[np.zeros(2)], [np.zeros(3)]])


@pytest.mark.parametrize("value", [0, -1, 2.0])
def test_invalid_num_checkpoints(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `num_checkpoints`, expected a positive integer\. "
        rf"Received: num_checkpoints={value!r}",
    ):
        CheckpointAveraging(num_checkpoints=value)


def test_invalid_save_freq():
    with pytest.raises(
        ValueError,
        match=r"argument `save_freq`, expected 'epoch' or a positive integer\. "
        r"Received: save_freq='batch'",
    ):
        CheckpointAveraging(save_freq="batch")
    with pytest.raises(
        ValueError,
        match=r"argument `save_freq`, expected a positive integer\. "
        r"Received: save_freq=0",
    ):
        CheckpointAveraging(save_freq=0)


def test_invalid_average_on_train_end_type():
    with pytest.raises(
        TypeError, match=r"argument `average_on_train_end`, expected a bool"
    ):
        CheckpointAveraging(average_on_train_end="yes")


def test_bfloat16_weights_are_averaged():
    # ml_dtypes' bfloat16 is not an `np.floating` subtype: such weights were
    # taken from the last checkpoint instead of averaged.
    weights = [[np.full((4,), value, "float32").astype("bfloat16")] for value in (0.0, 2.0)]
    averaged = average_checkpoints(weights)
    assert str(averaged[0].dtype) == "bfloat16"
    np.testing.assert_array_equal(averaged[0].astype("float32"), np.ones(4, "float32"))
