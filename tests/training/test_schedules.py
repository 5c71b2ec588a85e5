import os

import keras
import numpy as np
import pytest

from keras_attention.training import TransformerSchedule


def _paper_lr(step_num, d, warmup, scale=1.0):
    # Vaswani et al. 2017, eq. 3, with the paper's 1-based step_num.
    step_num = np.asarray(step_num, dtype="float64")
    return scale * d**-0.5 * np.minimum(step_num**-0.5, step_num * warmup**-1.5)


@pytest.mark.parametrize(
    "d, warmup, scale", [(512, 4000, 1.0), (128, 10, 2.0), (1024, 1, 0.5)]
)
def test_matches_formula_with_one_based_step_num(d, warmup, scale):
    schedule = TransformerSchedule(d, warmup_steps=warmup, scale=scale)
    steps = np.array([0, 1, 2, warmup - 1, warmup, 3 * warmup, 100_000])
    got = np.array([float(schedule(s)) for s in steps])
    np.testing.assert_allclose(got, _paper_lr(steps + 1, d, warmup, scale), rtol=1e-6)


def test_peak_at_warmup_and_shape_of_the_curve():
    d, warmup = 64, 50
    schedule = TransformerSchedule(d, warmup_steps=warmup)
    steps = np.arange(0, 400)
    lr = np.array([float(schedule(s)) for s in steps])
    # Peak at the warmup_steps-th update (0-based step warmup - 1).
    assert int(np.argmax(lr)) == warmup - 1
    np.testing.assert_allclose(lr.max(), (d * warmup) ** -0.5, rtol=1e-6)
    # Linear warm-up: lr(step) = (step + 1) * lr(0).
    np.testing.assert_allclose(lr[:warmup] / lr[0], steps[:warmup] + 1, rtol=1e-5)
    # Inverse square-root decay afterwards.
    after = steps[warmup:]
    np.testing.assert_allclose(
        lr[warmup:] * np.sqrt(after + 1), d**-0.5, rtol=1e-5
    )
    # Step 0 is neither zero nor infinite.
    assert 0 < lr[0] < np.inf


def test_accepts_tensor_steps_of_any_dtype():
    schedule = TransformerSchedule(16, warmup_steps=4)
    expected = _paper_lr(8, 16, 4)
    for step in (
        keras.ops.convert_to_tensor(7, "int64"),
        keras.ops.convert_to_tensor(7.0, "float32"),
        keras.Variable(7, dtype="int64", trainable=False),
    ):
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6)


def test_config_round_trip_and_keras_serialization():
    schedule = TransformerSchedule(256, warmup_steps=100, scale=0.7)
    config = schedule.get_config()
    assert config == {"hidden_dim": 256, "warmup_steps": 100, "scale": 0.7}
    assert TransformerSchedule.from_config(config).get_config() == config
    revived = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(revived, TransformerSchedule)
    assert float(revived(123)) == pytest.approx(float(schedule(123)))


def _sgd_probe_model(schedule):
    # y = w * x with x = 1 and loss = mean(y): dL/dw = 1, so each SGD update
    # subtracts exactly the learning rate of that update from w.
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule),
        loss=lambda y_true, y_pred: keras.ops.mean(y_pred),
        jit_compile=True,
    )
    return model


def test_drives_a_jit_compiled_fit_with_the_paper_step_numbers():
    d, warmup, num_steps = 32, 3, 7
    model = _sgd_probe_model(TransformerSchedule(d, warmup_steps=warmup))
    x = np.ones((num_steps, 1), "float32")
    model.fit(x, x, batch_size=1, epochs=1, verbose=0, shuffle=False)
    w = float(model.get_weights()[0][0, 0])
    # Updates 1..num_steps use step_num 1..num_steps.
    expected = -np.sum(_paper_lr(np.arange(1, num_steps + 1), d, warmup))
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    assert int(model.optimizer.iterations) == num_steps
    np.testing.assert_allclose(
        float(model.optimizer.learning_rate),
        _paper_lr(num_steps + 1, d, warmup),
        rtol=1e-6,
    )


def test_keras_save_load_of_a_compiled_model_and_continued_training(tmp_path):
    d, warmup = 16, 4
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.Adam(
            TransformerSchedule(d, warmup_steps=warmup), beta_2=0.98, epsilon=1e-9
        ),
        loss="mse",
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    lr_config = loaded.optimizer.get_config()["learning_rate"]
    assert lr_config["registered_name"] == "keras_attention>TransformerSchedule"
    assert lr_config["config"] == {
        "hidden_dim": d,
        "warmup_steps": warmup,
        "scale": 1.0,
    }
    assert int(loaded.optimizer.iterations) == 2
    np.testing.assert_allclose(
        float(loaded.optimizer.learning_rate), _paper_lr(3, d, warmup), rtol=1e-6
    )
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    # Training continues identically from the restored optimizer state.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert int(loaded.optimizer.iterations) == 4
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [0, -5, 1.5, None])
def test_invalid_hidden_dim(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `hidden_dim`, expected a positive integer\. "
        rf"Received: hidden_dim={value!r}",
    ):
        TransformerSchedule(value)


@pytest.mark.parametrize("value", [0, -4000, 40.5])
def test_invalid_warmup_steps(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `warmup_steps`, expected a positive integer\. "
        rf"Received: warmup_steps={value!r}",
    ):
        TransformerSchedule(512, warmup_steps=value)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_invalid_scale(value):
    with pytest.raises(
        ValueError,
        match=rf"argument `scale`, expected a positive float\. "
        rf"Received: scale={value!r}",
    ):
        TransformerSchedule(512, scale=value)
