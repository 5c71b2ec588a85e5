"""MirroredStrategy over two logical CPUs vs one device (run as a subprocess).

Usage: python mirrored_script.py classifier|translator OUT.npz

Logical devices must be configured before TensorFlow initialises, so the
test suite runs this file in a fresh process. For the classifier or the
translator it records, from identical initial weights and the same global
batch of 8, the weights and loss after one step on one device and on two
mirrored replicas, with Keras `fit` and with `DistributedTrainer`, plus a
few more mirrored training steps; the test compares them.

The optimizer is SGD with momentum and `TransformerSchedule`: its update is
linear in the gradient, so float32 rounding differences between one device
and two replicas stay at rounding level. (Adam's first update,
`lr * g / (|g| + eps)`, turns the rounding noise of gradients that are zero
in exact arithmetic -- such as the key-projection bias, to which softmax is
invariant -- into updates of a sizeable fraction of `lr`, which would hide a
real difference between the two runs.)
"""

import os
import sys
import time

START = time.time()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_attention.distribute import configure_logical_devices  # noqa: E402

configure_logical_devices(2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_attention as ka  # noqa: E402
from keras_attention.distribute import DistributedTrainer  # noqa: E402
from keras_attention.distribute import build_and_compile  # noqa: E402
from keras_attention.distribute import distribute_global_batches  # noqa: E402
from keras_attention.distribute import get_strategy  # noqa: E402
from keras_attention.models import transformer_classifier  # noqa: E402
from keras_attention.models import transformer_translator  # noqa: E402

GLOBAL_BATCH = 8
CLIP = 0.2  # global gradient-norm clip of the DistributedTrainer runs (|g| ~ 0.6)
VOCAB = 24
LENGTH = 8


def padded(lengths, rng, start=None):
    ids = np.zeros((len(lengths), LENGTH), "int32")
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(3, VOCAB, n)
        if start is not None:
            ids[i, 0] = start
    return ids


def translator_data(target_lengths, seed):
    rng = np.random.default_rng(seed)
    source = padded([7, 5, 6, 4, 3, 7, 6, 5], rng)
    target = padded(target_lengths, rng, start=1)
    labels = np.zeros_like(target)
    labels[:, :-1] = target[:, 1:]
    return {"source_ids": source, "target_ids": target}, labels


def classifier_data(seed):
    rng = np.random.default_rng(seed)
    ids = padded([7, 5, 6, 4, 3, 7, 6, 5], rng, start=2)
    return ids, rng.integers(0, 3, GLOBAL_BATCH).astype("int32")


MODELS = {
    "classifier": (
        lambda: transformer_classifier(
            vocabulary_size=VOCAB, sequence_length=LENGTH, num_classes=3,
            num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16,
            dropout=0.0,
        ),
        lambda: {
            "optimizer": keras.optimizers.SGD(
                ka.training.TransformerSchedule(8, warmup_steps=4), momentum=0.9
            ),
            "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        },
    ),
    "translator": (
        lambda: transformer_translator(
            vocabulary_size=VOCAB, sequence_length=LENGTH, num_layers=1,
            hidden_dim=8, num_heads=2, intermediate_dim=16, dropout=0.0,
        ),
        lambda: {
            "optimizer": keras.optimizers.SGD(
                ka.training.TransformerSchedule(8, warmup_steps=4), momentum=0.9
            ),
            "loss": ka.training.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
            "metrics": [ka.training.MaskedAccuracy()],
        },
    ),
}


def weights(model):
    return [np.array(w) for w in model.get_weights()]


def replica_spread(model):
    """Largest difference between the two replicas' copies of a variable."""
    spread = 0.0
    for variable in model.trainable_variables:
        copies = [c.numpy() for c in variable.value.values]  # one per device
        spread = max(spread, max(float(np.abs(c - copies[0]).max()) for c in copies))
    return spread


def main(only, out):
    mirrored = get_strategy("mirrored")
    default = get_strategy("default")
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    results = {"replicas": mirrored.num_replicas_in_sync}
    bad_batch = tf.data.Dataset.from_tensor_slices(np.zeros((14, 2))).batch(7, drop_remainder=True)
    try:
        distribute_global_batches(mirrored, bad_batch)
    except ValueError as error:
        results["bad_batch_error"] = str(error)
    for name, (build, compile_kwargs) in MODELS.items():
        if name != only:
            continue
        if name == "translator":
            # Both halves of the batch hold 14 label tokens: Keras fit
            # averages per-replica means, equal to the global mean only then.
            x_even, y_even = translator_data([3, 4, 5, 6, 6, 5, 4, 3], seed=1)
            x_uneven, y_uneven = translator_data([2, 2, 3, 2, 7, 8, 8, 7], seed=2)
            cases = (("even", (x_even, y_even)), ("uneven", (x_uneven, y_uneven)))
        else:
            x_even, y_even = classifier_data(seed=1)
            cases = (("even", (x_even, y_even)),)
        keras.utils.set_random_seed(0)
        initial = weights(build_and_compile(mirrored, build, None))
        results[f"{name}/initial"] = initial

        def fresh(strategy):
            model = build_and_compile(strategy, build, compile_kwargs)
            model.set_weights(initial)
            return model

        # Keras fit, one step of the global batch.
        for label, strategy in (("mirrored", mirrored), ("single", default)):
            for kind, (x, y) in cases:
                if label == "single" and kind == "uneven":
                    continue  # the trainer's single-device run below covers it
                model = fresh(strategy)
                history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1,
                                    shuffle=False, verbose=0)
                results[f"{name}/fit/{kind}/{label}/loss"] = history.history["loss"][0]
                results[f"{name}/fit/{kind}/{label}/weights"] = weights(model)
                if label == "mirrored" and kind == "even":
                    # Keep training the mirrored model: the loss must fall.
                    more = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=15,
                                     shuffle=False, verbose=0)
                    results[f"{name}/fit/train_losses"] = np.array(more.history["loss"])
                    results[f"{name}/fit/replica_spread"] = replica_spread(model)

        print(f"{name}: fit done {time.time() - START:.0f}s", file=sys.stderr, flush=True)
        if name != "translator":
            continue
        # DistributedTrainer, one step of the uneven global batch, with a
        # gradient-norm clip far below the gradient's norm: equal steps mean
        # the clip saw the global gradient (Keras clips each replica's part).
        data = tf.data.Dataset.from_tensor_slices((x_uneven, y_uneven)).batch(
            GLOBAL_BATCH, drop_remainder=True
        )
        schedule = ka.training.TransformerSchedule(8, warmup_steps=4)
        results["translator/trainer/clip"] = CLIP
        results["translator/trainer/learning_rate"] = float(schedule(0))

        def clipped_kwargs():
            kwargs = compile_kwargs()
            kwargs["optimizer"] = keras.optimizers.SGD(schedule, momentum=0.9, global_clipnorm=CLIP)
            return kwargs

        for label, strategy in (("mirrored", mirrored), ("single", default)):
            model = build_and_compile(strategy, build, clipped_kwargs)
            model.set_weights(initial)
            trainer = DistributedTrainer(model, strategy=strategy, metrics=compile_kwargs()["metrics"])
            history = trainer.fit(data, epochs=1, verbose=0)
            results[f"{name}/trainer/{label}/loss"] = history.history["loss"][0]
            results[f"{name}/trainer/{label}/weights"] = weights(model)
            if label == "mirrored":
                results[f"{name}/trainer/replica_spread"] = replica_spread(model)
    print(f"done {time.time() - START:.0f}s", file=sys.stderr, flush=True)
    flat = {}
    for key, value in results.items():
        if isinstance(value, list):
            for i, array in enumerate(value):
                flat[f"{key}/{i}"] = array
        else:
            flat[key] = np.asarray(value)
    np.savez(out, **flat)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
