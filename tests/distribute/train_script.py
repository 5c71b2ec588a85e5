"""Train a small translator in a subprocess: the distributed and fault tests.

Usage:
    python train_script.py --out DIR --init INIT.weights.h5
        [--strategy default|multi_worker] [--loop trainer|fit]
        [--epochs 2] [--steps 6] [--save-every 2] [--step-delay 0.0]
        [--dropout 0.0]

Every process builds the same translator, loads the initial weights from
`--init` (so all runs start equal), trains on a fixed, deterministic
dataset of global batches of 8 and writes, under `--out`, files named with
its task (`chief`/`worker1` for a cluster, `single` otherwise):

- `steps_<task>.jsonl`: one line per finished step (epoch, step, global
  step, loss), appended, so a killed and restarted run shows both parts;
- `start_<task>.jsonl`: per start, where training resumed (restored
  checkpoint, epoch, step in epoch, optimizer iterations);
- `writes_<task>.json`: the directories `chief_write_dir` gave this process
  and whether each still existed afterwards;
- `final_<task>.npz`: the final weights (by variable path, `/` written
  `:`) and the final model's logits on 8 other examples (`logits`).

`--loop trainer` uses `DistributedTrainer` (checkpoint every `--save-every`
steps and every epoch under `DIR/checkpoints`, then `save_model` and
`export` under `DIR/model.keras` and `DIR/export/1`); `--loop fit` uses
Keras `fit` with `keras.callbacks.BackupAndRestore(DIR/backup,
save_freq="epoch")` (default strategy only).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_attention as ka  # noqa: E402
from keras_attention import distribute  # noqa: E402
from keras_attention.distribute import trainer as trainer_module  # noqa: E402
from keras_attention.models import transformer_translator  # noqa: E402

GLOBAL_BATCH = 8
VOCAB = 24
LENGTH = 8


def build_translator(dropout=0.0):
    return transformer_translator(
        vocabulary_size=VOCAB, sequence_length=LENGTH, num_layers=1,
        hidden_dim=8, num_heads=2, intermediate_dim=16, dropout=dropout,
    )


def compile_kwargs():
    return {
        "optimizer": keras.optimizers.Adam(
            ka.training.TransformerSchedule(8, warmup_steps=4), beta_2=0.98
        ),
        "loss": ka.training.MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        "metrics": [ka.training.MaskedAccuracy()],
    }


def examples(num_batches, seed=0):
    """Copy-and-reverse pairs with uneven padding (fixed order)."""
    rng = np.random.default_rng(seed)
    n = num_batches * GLOBAL_BATCH
    source = np.zeros((n, LENGTH), "int32")
    target = np.zeros((n, LENGTH), "int32")
    for i in range(n):
        length = int(rng.integers(2, LENGTH - 1))
        tokens = rng.integers(3, VOCAB, length)
        source[i, :length] = tokens
        target[i, 0] = 1
        target[i, 1 : length + 1] = tokens[::-1]
    labels = np.zeros_like(target)
    labels[:, :-1] = target[:, 1:]
    return {"source_ids": source, "target_ids": target}, labels


def dataset(num_batches):
    x, y = examples(num_batches)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(
        GLOBAL_BATCH, drop_remainder=True
    )


class Recorder(keras.callbacks.Callback):
    """Appends each finished step to a JSON-lines file; optional delay."""

    def __init__(self, path, step_delay, iterations):
        super().__init__()
        self.path = path
        self.step_delay = step_delay
        self.iterations = iterations
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        record = {
            "epoch": self.epoch,
            "step": batch,
            "global_step": int(self.iterations.numpy()),
            "loss": float(logs["loss"]),
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.step_delay:
            time.sleep(self.step_delay)


def record_writes(log):
    """Wrap `chief_write_dir` to log the directories it yields."""
    original = trainer_module.chief_write_dir

    class Recording:
        def __init__(self, directory, strategy=None):
            self.context = original(directory, strategy)

        def __enter__(self):
            self.path = self.context.__enter__()
            return self.path

        def __exit__(self, *exc):
            result = self.context.__exit__(*exc)
            log.append({"path": self.path, "exists_after": os.path.exists(self.path)})
            return result

    trainer_module.chief_write_dir = Recording


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--init", required=True)
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--loop", default="trainer", choices=("trainer", "fit"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.0)
    args = parser.parse_args()

    keras.utils.set_random_seed(7)
    tf.config.experimental.enable_op_determinism()
    strategy = distribute.get_strategy(args.strategy, timeout_seconds=120.0)
    task = "single"
    if args.strategy == "multi_worker":
        resolver = strategy.cluster_resolver
        task = "chief" if distribute.is_chief(strategy) else f"worker{resolver.task_id}"
    out = args.out
    model = distribute.build_and_compile(
        strategy, lambda: build_translator(args.dropout), compile_kwargs
    )
    model.load_weights(args.init)
    writes = []
    record_writes(writes)
    data = dataset(args.steps)
    recorder = Recorder(os.path.join(out, f"steps_{task}.jsonl"), args.step_delay,
                        model.optimizer.iterations)
    start = {"pid": os.getpid()}
    if args.loop == "trainer":
        trainer = distribute.DistributedTrainer(
            model,
            metrics=[ka.training.MaskedAccuracy()],
            strategy=strategy,
            checkpoint_dir=os.path.join(out, "checkpoints"),
            save_every_steps=args.save_every,
        )
        start["restored"] = trainer.restore()
        start.update(epoch=trainer.epoch, step_in_epoch=trainer.step_in_epoch,
                     iterations=trainer.global_step)
        with open(os.path.join(out, f"start_{task}.jsonl"), "a") as f:
            f.write(json.dumps(start) + "\n")
        trainer.fit(data, epochs=args.epochs, callbacks=[recorder], verbose=0)
        trainer.save_model(os.path.join(out, "model.keras"))
        trainer.export(os.path.join(out, "export"))
    else:
        backup = keras.callbacks.BackupAndRestore(os.path.join(out, "backup"))

        class Start(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                start["iterations"] = int(self.model.optimizer.iterations.numpy())
                with open(os.path.join(out, f"start_{task}.jsonl"), "a") as f:
                    f.write(json.dumps(start) + "\n")

        model.fit(data, epochs=args.epochs, callbacks=[backup, Start(), recorder],
                  shuffle=False, verbose=0)
    with open(os.path.join(out, f"writes_{task}.json"), "w") as f:
        json.dump(writes, f)
    final = {v.path.replace("/", ":"): v.numpy() for v in model.weights}
    final["logits"] = model.predict(examples(1, seed=1)[0], verbose=0)
    np.savez(os.path.join(out, f"final_{task}.npz"), **final)
    print(f"{task} finished", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
