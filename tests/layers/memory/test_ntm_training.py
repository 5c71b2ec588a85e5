"""A short NTM training run on copy: catches changes that break learning.

The full convergence check (paper settings, 10,000 steps) is
`benchmarks/memory_tasks.py`, and the slow-marked test below.
"""

import keras
import pytest

from keras_attention.data import copy_task
from keras_attention.layers import NTM
from keras_attention.training import BitErrorsPerSequence


def _model(input_dim, output_dim, learning_rate, jit_compile, **ntm_kwargs):
    model = keras.Sequential(
        [
            keras.Input((None, input_dim)),
            NTM(output_dim=output_dim, return_sequences=True, **ntm_kwargs),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=50.0),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        weighted_metrics=[BitErrorsPerSequence(from_logits=True, name="bit_errors")],
        jit_compile=jit_compile,
    )
    return model


def test_short_copy_run_reduces_loss_and_bit_errors():
    # 3-bit vectors, lengths 1-3 (one padded time length, traced once), a
    # tiny memory; 200 steps. jit_compile="auto": a TensorFlow graph without
    # XLA on CPU (compiling would cost more than the run on a 2-core
    # machine); jit on JAX (faster than op by op; op-by-op training is
    # test_memory_rnn_jax.py's).
    task = dict(num_bits=3, min_length=1, max_length=3, time_multiple=7)
    train = copy_task(batch_size=16, seed=1, **task)
    evaluation = copy_task(batch_size=32, num_batches=4, seed=2, **task)
    model = _model(4, 3, 1e-2, "auto", controller_units=32, memory_size=8, memory_width=6)
    before = model.evaluate(evaluation, verbose=0, return_dict=True)
    model.fit(train, steps_per_epoch=200, epochs=1, verbose=0, shuffle=False)
    after = model.evaluate(evaluation, verbose=0, return_dict=True)
    # Untrained: ~3.4 wrong bits of ~6 asked per sequence. A learning NTM
    # halves both the loss and the errors within these 200 steps.
    assert before["bit_errors"] > 2.5
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert after["bit_errors"] < 0.6 * before["bit_errors"], (before, after)


@pytest.mark.slow
def test_copy_converges_with_the_paper_settings():
    # Collier and Beel 2018: LSTM-100, memory 128 x 20, batch 32, Adam 1e-3,
    # global norm clip 50; converged = < 0.1 wrong bits per sequence on 640
    # sequences of lengths 1-20. Measured with benchmarks/memory_tasks.py
    # (seeds 0, 1, 2): converged at steps 2,000, 1,500 and 3,500, 9-12
    # minutes each (XLA compilation included) with the three seeds running
    # at once on 2 shared cores.
    task = dict(num_bits=8, min_length=1, max_length=20, time_multiple=8)
    train = copy_task(batch_size=32, seed=0, **task)
    evaluation = copy_task(batch_size=32, num_batches=20, seed=10_000, **task)
    keras.utils.set_random_seed(0)
    model = _model(9, 8, 1e-3, True)
    # Per-sequence summed cross-entropy, as in the paper (see NTM's docstring).
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=50.0),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, reduction="sum"),
        loss_weights=8 / 32,
        weighted_metrics=[BitErrorsPerSequence(from_logits=True, name="bit_errors")],
        jit_compile=True,
    )
    stopper = _StopBelow(0.1)
    model.fit(
        train,
        steps_per_epoch=500,
        epochs=20,
        validation_data=evaluation,
        callbacks=[stopper],
        verbose=0,
        shuffle=False,
    )
    assert stopper.stopped_at is not None, "no convergence within 10,000 steps"


class _StopBelow(keras.callbacks.Callback):
    def __init__(self, threshold):
        super().__init__()
        self.threshold = threshold
        self.stopped_at = None

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_bit_errors"] < self.threshold:
            self.stopped_at = (epoch + 1) * 500
            self.model.stop_training = True
