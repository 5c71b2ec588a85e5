"""MirroredStrategy over two logical CPUs equals one device, step for step.

The logical devices must exist before TensorFlow initialises, so the work
runs in a fresh subprocess (`mirrored_script.py`); this test checks what it
recorded. Tolerances: the loss of the first step to 1e-5 relative and the
weights after it to 1e-6 absolute (observed: under 1e-7; the step moves
some weight by 1e-3 to 1e-1), i.e. float32 rounding from summing the two
replicas' halves in another order. The optimizer is SGD with momentum and
`TransformerSchedule` (see the script for why not Adam).
"""

import importlib.util
import pathlib

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
_spec = importlib.util.spec_from_file_location("subprocesses", HERE / "subprocesses.py")
subprocesses = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(subprocesses)

LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-6


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored")
    names = ("classifier", "translator")
    with subprocesses.Processes(out) as procs:
        for name in names:  # two processes at once
            procs.start(name, "mirrored_script.py", [name, out / f"{name}.npz"],
                        subprocesses.python_env())
        procs.wait(names, timeout=600)
    results = {}
    for name in names:
        with np.load(out / f"{name}.npz") as data:
            results.update({k if "/" in k else f"{name}:{k}": data[k] for k in data.files})
    return results


def _weights(recorded, prefix):
    count = len([k for k in recorded if k.startswith(prefix + "/")])
    assert count > 0, prefix
    return [recorded[f"{prefix}/{i}"] for i in range(count)]


def _assert_same_step(recorded, name, path):
    initial = _weights(recorded, f"{name}/initial")
    mirrored = _weights(recorded, f"{name}/{path}/mirrored/weights")
    single = _weights(recorded, f"{name}/{path}/single/weights")
    np.testing.assert_allclose(
        recorded[f"{name}/{path}/mirrored/loss"],
        recorded[f"{name}/{path}/single/loss"],
        rtol=LOSS_RTOL,
    )
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, single))
    assert moved > 1e-4, "the step must change the weights"
    for m, s in zip(mirrored, single):
        np.testing.assert_allclose(m, s, atol=WEIGHT_ATOL, rtol=0)


def test_two_replicas(recorded):
    assert int(recorded["classifier:replicas"]) == 2
    assert int(recorded["translator:replicas"]) == 2


def test_global_batch_not_divisible_by_two_replicas(recorded):
    message = str(recorded["classifier:bad_batch_error"])
    assert message == (
        "Received an invalid value for argument `global_batch_size`, expected a "
        "multiple of the number of replicas in sync (2 under MirroredStrategy), "
        "so that every replica gets the same batch. Received: global_batch_size=7"
    )


@pytest.mark.parametrize("name", ["classifier", "translator"])
def test_fit_step_equals_single_device_step(recorded, name):
    _assert_same_step(recorded, name, "fit/even")


@pytest.mark.parametrize("name", ["classifier", "translator"])
def test_mirrored_fit_trains(recorded, name):
    losses = recorded[f"{name}/fit/train_losses"]
    assert np.all(np.isfinite(losses))
    assert losses[-3:].mean() < 0.8 * losses[:3].mean(), losses
    # Both replicas hold identical copies of every variable.
    assert float(recorded[f"{name}/fit/replica_spread"]) == 0.0


def test_trainer_step_equals_single_device_step_with_uneven_padding(recorded):
    # The halves of this batch hold 5 and 26 label tokens. The custom loop
    # normalises by the global token count, so it equals one device.
    _assert_same_step(recorded, "translator", "trainer")
    assert float(recorded["translator/trainer/replica_spread"]) == 0.0


def test_trainer_clips_the_global_gradient(recorded):
    # The trainer runs use SGD(global_clipnorm=0.2): the single-device
    # first update is -lr * clip * g / |g|, of norm lr * clip exactly when
    # the clip was active; the mirrored step equals it (test above), so the
    # clip acted on the all-reduced gradient, not on each replica's half.
    initial = _weights(recorded, "translator/initial")
    single = _weights(recorded, "translator/trainer/single/weights")
    update = np.sqrt(sum(float(((s - i) ** 2).sum()) for s, i in zip(single, initial)))
    expected = float(recorded["translator/trainer/learning_rate"]) * float(
        recorded["translator/trainer/clip"]
    )
    np.testing.assert_allclose(update, expected, rtol=1e-4)


def test_keras_fit_averages_replica_means_with_uneven_padding(recorded):
    # What DistributedTrainer avoids: Keras fit scales each replica's own
    # token mean by 1/replicas, so with uneven padding its loss (and step)
    # differs from one device.
    mirrored = float(recorded["translator/fit/uneven/mirrored/loss"])
    single = float(recorded["translator/trainer/single/loss"])  # same batch
    assert abs(mirrored - single) > 1e-3 * single
