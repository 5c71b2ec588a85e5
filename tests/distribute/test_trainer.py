"""DistributedTrainer on one device: same numbers as Keras, resume, errors.

The multi-replica and multi-worker runs are in test_mirrored.py and
test_multi_worker.py (subprocesses); here the default strategy checks the
loop's arithmetic against Keras `fit`/`evaluate` and NumPy.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_attention as ka
from keras_attention import distribute
from keras_attention.distribute import DistributedTrainer
from keras_attention.distribute import loss_sum_and_weight


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ----------------------------------------------------------------------
# loss_sum_and_weight


def test_masked_loss_sum_and_token_count_against_numpy():
    rng = np.random.default_rng(0)
    labels = np.array([[3, 1, 2, 0, 0], [4, 4, 0, 0, 0]])
    logits = rng.normal(size=(2, 5, 6)).astype("float32")
    weights = np.array([1.0, 0.5], "float32")
    loss = ka.training.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1, pad_id=0)
    total, weight = loss_sum_and_weight(loss, labels, logits, weights)
    log_probs = _log_softmax(logits.astype("float64"))
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    per_token = 0.9 * nll + 0.1 * -log_probs.mean(-1)
    token_weights = (labels != 0) * weights[:, None]
    np.testing.assert_allclose(float(total), (per_token * token_weights).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(weight), token_weights.sum(), rtol=1e-6)
    # total / weight is the loss itself.
    np.testing.assert_allclose(
        float(total) / float(weight), float(loss(labels, logits, weights)), rtol=1e-5
    )


def test_mean_loss_divides_by_element_count_even_with_sample_weights():
    y_true = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]], "float32")
    y_pred = np.zeros((3, 2), "float32")
    weights = np.array([1.0, 2.0, 0.0], "float32")
    loss = keras.losses.MeanSquaredError()
    total, weight = loss_sum_and_weight(loss, y_true, y_pred, weights)
    per_example = (y_true**2).mean(-1)
    np.testing.assert_allclose(float(total), (per_example * weights).sum(), rtol=1e-6)
    assert float(weight) == 3.0  # "sum_over_batch_size": the number of examples
    np.testing.assert_allclose(
        float(total) / float(weight), float(loss(y_true, y_pred, weights)), rtol=1e-6
    )


def test_sum_reduction_and_non_reducing_loss():
    loss = keras.losses.MeanAbsoluteError(reduction="sum")
    total, weight = loss_sum_and_weight(loss, np.ones((2, 3)), np.zeros((2, 3)))
    assert float(total) == 2.0 and weight is None
    with pytest.raises(ValueError, match=r"expected a loss that reduces to a scalar.*"
                       r"Received: loss.reduction=None"):
        loss_sum_and_weight(keras.losses.MeanAbsoluteError(reduction=None),
                            np.ones((2, 3)), np.zeros((2, 3)))


# ----------------------------------------------------------------------
# Same numbers as Keras fit / evaluate


def _translator():
    return ka.models.transformer_translator(
        vocabulary_size=20, sequence_length=8, num_layers=1, hidden_dim=8,
        num_heads=2, intermediate_dim=16, dropout=0.0,
    )


def _translator_data():
    rng = np.random.default_rng(3)
    n, length = 8, 6
    source = rng.integers(1, 20, (n, length)).astype("int32")
    target = rng.integers(1, 20, (n, length)).astype("int32")
    for i in range(n):
        target[i, 1 + i % 5:] = 0  # uneven padding
        source[i, 2 + i % 4:] = 0
    labels = np.zeros_like(target)
    labels[:, :-1] = target[:, 1:]
    return {"source_ids": source, "target_ids": target}, labels


def _compile_kwargs():
    return {
        "optimizer": keras.optimizers.SGD(
            ka.training.TransformerSchedule(8, warmup_steps=3), momentum=0.9
        ),
        "loss": ka.training.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        "metrics": [ka.training.MaskedAccuracy()],
    }


def test_trainer_matches_keras_fit_on_one_device():
    strategy = distribute.get_strategy("default")
    keras.utils.set_random_seed(1)
    reference = distribute.build_and_compile(strategy, _translator, _compile_kwargs)
    initial = reference.get_weights()
    x, y = _translator_data()
    history = reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)

    model = distribute.build_and_compile(strategy, _translator, _compile_kwargs)
    model.set_weights(initial)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4, drop_remainder=True)
    trainer = DistributedTrainer(model, metrics=[ka.training.MaskedAccuracy()])
    ours = trainer.fit(data, epochs=2, verbose=0)

    np.testing.assert_allclose(ours.history["loss"], history.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        ours.history["masked_accuracy"], history.history["masked_accuracy"], rtol=1e-6
    )
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert trainer.global_step == 4 and trainer.epoch == 2
    # The schedule followed optimizer.iterations.
    np.testing.assert_allclose(
        float(model.optimizer.learning_rate),
        float(ka.training.TransformerSchedule(8, warmup_steps=3)(4)),
    )
    expected = reference.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    got = trainer.evaluate(data)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["masked_accuracy"], expected["masked_accuracy"], rtol=1e-6)


# ----------------------------------------------------------------------
# Checkpoints and resume in one process


def _regression(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    hidden = keras.layers.Dropout(0.25)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, name="value")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def _regression_data(epoch=0):
    rng = np.random.default_rng(epoch)
    x = rng.normal(size=(24, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4, drop_remainder=True)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_global_step):
        super().__init__()
        self.at = at_global_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            raise KeyboardInterrupt("simulated crash")


def test_resume_mid_epoch_equals_uninterrupted(tmp_path):
    initial = _regression().get_weights()
    reference = _regression()
    reference.set_weights(initial)
    DistributedTrainer(reference).fit(_regression_data, epochs=3, verbose=0)

    crashed = _regression()
    crashed.set_weights(initial)
    trainer = DistributedTrainer(crashed, checkpoint_dir=str(tmp_path), save_every_steps=4)
    with pytest.raises(KeyboardInterrupt):
        # 6 steps per epoch: killed at global step 10 (epoch 1, step 4), after
        # the checkpoint of step 8 (epoch 1, step 2).
        trainer.fit(_regression_data, epochs=3, callbacks=[_Interrupt(10)], verbose=0)

    resumed = _regression(seed=99)  # other initial weights: all come from the checkpoint
    fresh_trainer = DistributedTrainer(resumed, checkpoint_dir=str(tmp_path), save_every_steps=4)
    assert fresh_trainer.restore().endswith("ckpt-8")
    assert (fresh_trainer.epoch, fresh_trainer.step_in_epoch, fresh_trainer.global_step) == (1, 2, 8)
    steps = []

    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    history = fresh_trainer.fit(_regression_data, epochs=3, callbacks=[Steps()], verbose=0)
    assert steps == [2, 3, 4, 5] + list(range(6))  # rest of epoch 1, then epoch 2
    assert len(history.history["loss"]) == 2
    assert fresh_trainer.global_step == 18
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Finished: running again trains nothing.
    again = DistributedTrainer(resumed, checkpoint_dir=str(tmp_path))
    assert again.fit(_regression_data, epochs=3, verbose=0).history == {}
    assert again.global_step == 18
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.index")) == [
        "ckpt-12.index", "ckpt-16.index", "ckpt-18.index"
    ]


def test_validation_logs_and_saving(tmp_path):
    model = _regression()
    trainer = DistributedTrainer(model, metrics=[keras.metrics.MeanAbsoluteError()])
    history = trainer.fit(_regression_data(), epochs=2, validation_data=_regression_data(5),
                          verbose=0)
    assert set(history.history) == {"loss", "mean_absolute_error", "val_loss",
                                    "val_mean_absolute_error"}
    path = trainer.save_model(str(tmp_path / "model.keras"))
    reloaded = keras.saving.load_model(path)
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    exported = trainer.export(str(tmp_path / "export"), version=2)
    assert exported == str(tmp_path / "export" / "2")
    served = tf.saved_model.load(exported).signatures["serving_default"]
    (output,) = served(features=tf.constant(x)).values()
    np.testing.assert_allclose(output.numpy(), model.predict(x, verbose=0), rtol=1e-5)


# ----------------------------------------------------------------------
# Bad input


def test_dataset_without_static_batch_size():
    trainer = DistributedTrainer(_regression())
    data = _regression_data().unbatch().batch(5)
    with pytest.raises(ValueError, match=r"expected a dataset batched by the global batch "
                       r"size with a static batch dimension"):
        trainer.fit(data, verbose=0)


def test_infinite_dataset_needs_steps():
    trainer = DistributedTrainer(_regression())
    with pytest.raises(ValueError, match=r"argument `steps_per_epoch`, expected a positive "
                       r"integer for an infinite dataset"):
        trainer.fit(_regression_data().repeat(), verbose=0)
    history = trainer.fit(_regression_data().repeat(), steps_per_epoch=2, epochs=2, verbose=0)
    assert trainer.global_step == 4 and len(history.history["loss"]) == 2


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"argument `model`, expected a built keras.Model"):
        DistributedTrainer(keras.Sequential([keras.layers.Dense(2)]))
    uncompiled = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"argument `optimizer`, expected a Keras optimizer"):
        DistributedTrainer(uncompiled, loss="mse")
    with pytest.raises(ValueError, match=r"argument `loss`, expected a keras.losses.Loss"):
        DistributedTrainer(uncompiled, optimizer=keras.optimizers.SGD())
    with pytest.raises(ValueError, match=r"argument `save_every_steps`, expected a positive"):
        DistributedTrainer(_regression(), save_every_steps=0)
    with pytest.raises(ValueError, match=r"argument `metrics`, expected a list"):
        DistributedTrainer(_regression(), metrics=[3])


def test_optimizer_from_another_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    optimizer = keras.optimizers.SGD()  # created outside the scope
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"expected an optimizer created under "
                       r"`strategy.scope\(\)` \(it was created under _DefaultDistributionStrategy, "
                       r"training runs under MirroredStrategy\)"):
        DistributedTrainer(model, optimizer=optimizer, loss="mse", strategy=strategy)
