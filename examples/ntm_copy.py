"""Train a Neural Turing Machine on the algorithmic tasks of Graves et al. 2014.

Trains an NTM (or a DNC, or an LSTM baseline) on copy, repeat copy,
associative recall or priority sort, generated offline as seeded `tf.data`
pipelines; reports wrong bits per sequence on 640 held-out sequences (the
convergence criterion of Collier and Beel 2018 is < 0.1), and, for copy, on
sequences twice as long as any seen in training. Writes TensorBoard logs of
the training curve (loss and wrong bits per sequence, train and eval, one
point per evaluation) under `--log-dir` (`tensorboard --logdir logs`), and to
`--export-dir`:

- `<version>/`: a SavedModel for TF Serving (`serving_default` takes the
  float bit sequences `bits (B, T, input_dim)` and returns the logits),
  reloaded in a fresh process that imports only TensorFlow and checked
  against the trained model,
- `model.keras` (reloaded and checked against the trained model),
- `learning_curve.png` (loss and wrong bits per sequence against steps),
- `weightings.png` (NTM read and write weightings over time, as in the
  paper's figures 6-8, above the inputs and outputs),
- `history.json`.

Run (the paper's copy setting: LSTM-100 controller, memory 128 x 20, batch
32, Adam 1e-3, global gradient-norm clip 50):

    python examples/ntm_copy.py

(the defaults: `--task copy --model ntm --steps 10000`).

Other tasks and models:

    python examples/ntm_copy.py --task associative_recall --model ntm
    python examples/ntm_copy.py --task copy --model lstm
    python examples/ntm_copy.py --task repeat_copy --model dnc
    python examples/ntm_copy.py --strategy mirrored   # every GPU (or logical CPU)

Smoke test (under a minute: trains, evaluates, saves, reloads, plots):

    python examples/ntm_copy.py --smoke --export-dir /tmp/ntm_smoke
"""

import argparse
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

import keras_attention
from keras_attention.data import TASKS
from keras_attention.data import algorithmic_task
from keras_attention.distribute import STRATEGY_NAMES
from keras_attention.distribute import check_fit_strategy
from keras_attention.distribute import get_strategy
from keras_attention.export import export_for_serving
from keras_attention.training import BitErrorsPerSequence

MODELS = ("ntm", "dnc", "lstm")
EVAL_SEED_OFFSET = 10_000

# Task sizes of Graves et al. 2014: (train sizes, generalisation sizes).
TASK_SIZES = {
    "copy": (
        {"num_bits": 8, "min_length": 1, "max_length": 20},
        {"min_length": 40, "max_length": 40},
    ),
    "repeat_copy": (
        {"num_bits": 8, "min_length": 1, "max_length": 10, "min_repeats": 1, "max_repeats": 10},
        {"min_length": 10, "max_length": 10, "min_repeats": 15, "max_repeats": 15},
    ),
    "associative_recall": (
        {"num_bits": 6, "item_length": 3, "min_items": 2, "max_items": 6},
        {"min_items": 12, "max_items": 12},
    ),
    "priority_sort": (
        {"num_bits": 8, "min_items": 20, "max_items": 20, "num_outputs": 16},
        None,
    ),
}
SMOKE_SIZES = {
    "copy": {"num_bits": 4, "min_length": 1, "max_length": 4},
    "repeat_copy": {"num_bits": 4, "min_length": 1, "max_length": 3, "min_repeats": 1, "max_repeats": 2},
    "associative_recall": {"num_bits": 4, "item_length": 2, "min_items": 2, "max_items": 3},
    "priority_sort": {"num_bits": 4, "min_items": 5, "max_items": 5, "num_outputs": 3},
}


def strategy_name(value):
    """`--strategy` type: refuses the strategies Keras `fit` cannot train
    under (`check_fit_strategy`; unknown names fail argparse's `choices`)."""
    if value not in STRATEGY_NAMES:
        return value
    try:
        return check_fit_strategy(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"the examples train with Keras fit. {error}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS, default="copy")
    parser.add_argument("--model", choices=MODELS, default="ntm")
    parser.add_argument("--steps", type=int, default=10_000, help="training batches")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam",
                        help="adam (Collier and Beel's NTM) or rmsprop (deepmind/dnc)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--clipnorm", type=float, default=50.0, help="global gradient norm clip")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--eval-batches", type=int, default=20, help="20 x 32 = 640 sequences")
    parser.add_argument("--stop-below", type=float, default=None,
                        help="stop once eval wrong bits per sequence fall below this")
    parser.add_argument("--curriculum-steps", type=int, default=0)
    parser.add_argument("--time-multiple", type=int, default=8,
                        help="pad time to a multiple of this (fewer XLA compilations)")
    parser.add_argument("--controller-units", type=int, default=100)
    parser.add_argument("--memory-size", type=int, default=128)
    parser.add_argument("--memory-width", type=int, default=20)
    parser.add_argument("--read-heads", type=int, default=1)
    parser.add_argument("--write-heads", type=int, default=1)
    parser.add_argument("--lstm-units", type=int, default=256, help="LSTM baseline width")
    parser.add_argument("--lstm-layers", type=int, default=3, help="LSTM baseline depth")
    parser.add_argument("--no-jit", action="store_true", help="compile without XLA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-dir", default="saved_models/ntm_copy",
                        help="model root: SavedModel in <export-dir>/<version>/, "
                             "model.keras, plots and history beside it")
    parser.add_argument("--export-version", type=int, default=None,
                        help="SavedModel version (default: one above the highest existing)")
    parser.add_argument("--log-dir", default=os.path.join("logs", "ntm_copy"),
                        help="TensorBoard logs (tensorboard --logdir logs)")
    parser.add_argument("--strategy", type=strategy_name, choices=STRATEGY_NAMES, default="default",
                        help="tf.distribute strategy to build and train under "
                             "(mirrored: every GPU, or every logical CPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny run, under a minute")
    parser.add_argument("--verbose", type=int, default=1, help="Keras progress bars (0/1/2)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps = 60
        args.eval_every = 30
        args.eval_batches = 2
        args.batch_size = 16
        args.controller_units = 32
        args.memory_size = 16
        args.memory_width = 8
        args.lstm_units = 32
        args.lstm_layers = 1
        args.learning_rate = 3e-3
        args.time_multiple = 16  # one time length: nothing traced twice
        args.no_jit = True  # XLA compilation alone takes longer than the run
    return args


def task_datasets(args):
    """Training stream, evaluation set, generalisation set (or None)."""
    sizes, longer = TASK_SIZES[args.task]
    if args.smoke:
        sizes, longer = SMOKE_SIZES[args.task], None
    common = {"batch_size": args.batch_size, "time_multiple": args.time_multiple}
    train = algorithmic_task(
        args.task, **sizes, **common, curriculum_steps=args.curriculum_steps, seed=args.seed
    )
    evaluation = algorithmic_task(
        args.task, **sizes, **common, num_batches=args.eval_batches,
        seed=args.seed + EVAL_SEED_OFFSET,
    )
    generalisation = None
    if longer is not None:
        generalisation = algorithmic_task(
            args.task, **{**sizes, **longer}, **common, num_batches=args.eval_batches,
            seed=args.seed + 2 * EVAL_SEED_OFFSET,
        )
    return train, evaluation, generalisation


def build_model(model_name, input_dim, output_dim, args, return_weightings=False):
    """The sequence model: inputs `(B, T, input_dim)` -> logits `(B, T, output_dim)`.

    `return_weightings=True` (memory models only) also outputs the memory
    weightings, for the plots.
    """
    inputs = keras.Input((None, input_dim), name="bits")
    if model_name == "ntm":
        core = keras_attention.layers.NTM(
            controller_units=args.controller_units,
            memory_size=args.memory_size,
            memory_width=args.memory_width,
            num_read_heads=args.read_heads,
            num_write_heads=args.write_heads,
            output_dim=output_dim,
            return_sequences=True,
            return_weightings=return_weightings,
            name="ntm",
        )
        outputs = core(inputs)
    elif model_name == "dnc":
        dnc_cls = getattr(keras_attention.layers, "DNC", None)
        if dnc_cls is None:
            raise SystemExit("--model dnc needs keras_attention.layers.DNC")
        core = dnc_cls(
            controller_units=args.controller_units,
            memory_size=args.memory_size,
            memory_width=args.memory_width,
            num_read_heads=args.read_heads,
            num_write_heads=args.write_heads,
            output_dim=output_dim,
            return_sequences=True,
            return_weightings=return_weightings,
            name="dnc",
        )
        outputs = core(inputs)
    elif model_name == "lstm":
        x = inputs
        for i in range(args.lstm_layers):
            x = keras.layers.LSTM(args.lstm_units, return_sequences=True, name=f"lstm_{i}")(x)
        outputs = keras.layers.Dense(output_dim, name="logits")(x)
    else:
        raise SystemExit(f"unknown --model {model_name!r}; expected one of {MODELS}")
    return keras.Model(inputs, outputs, name=f"{model_name}_model")


def make_optimizer(args):
    """`--optimizer` with `--learning-rate` and the global norm clip
    `--clipnorm`. RMSProp uses deepmind/dnc's decay 0.9 and epsilon 1e-10."""
    optimizer = getattr(args, "optimizer", "adam")
    if optimizer == "rmsprop":
        return keras.optimizers.RMSprop(
            args.learning_rate, rho=0.9, epsilon=1e-10, global_clipnorm=args.clipnorm
        )
    return keras.optimizers.Adam(args.learning_rate, global_clipnorm=args.clipnorm)


def compile_model(model, args):
    """Adam (or RMSProp) with a global gradient-norm clip; the loss is the cross-entropy
    summed over the bits and steps of each sequence and averaged over the
    batch (nats per sequence, the cost of Graves et al.), so long sequences
    weigh more than short ones, as in Collier and Beel's training."""
    output_dim = model.output_shape[-1]
    model.compile(
        optimizer=make_optimizer(args),
        # "sum" adds the per-step losses (each a mean over the bits) of the
        # batch; the weight turns that into the per-sequence sum over bits.
        loss=keras.losses.BinaryCrossentropy(from_logits=True, reduction="sum"),
        loss_weights=float(output_dim) / args.batch_size,
        weighted_metrics=[BitErrorsPerSequence(from_logits=True, name="bit_errors")],
        jit_compile=not args.no_jit,
    )


class StepLogger(keras.callbacks.Callback):
    """Records step, seconds, losses and bit errors after every epoch, and
    stops training once the eval bit errors fall below `stop_below`."""

    def __init__(self, steps_per_epoch, stop_below=None, log=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.stop_below = stop_below
        self.log = log
        self.records = []
        self.converged_at = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {
            "step": (epoch + 1) * self.steps_per_epoch,
            "seconds": time.perf_counter() - self.start,
            "loss": logs.get("loss"),
            "bit_errors": logs.get("bit_errors"),
            "val_loss": logs.get("val_loss"),
            "val_bit_errors": logs.get("val_bit_errors"),
        }
        self.records.append(record)
        if self.log is not None:
            self.log(record)
        if self.stop_below is not None and record["val_bit_errors"] < self.stop_below:
            self.converged_at = record
            self.model.stop_training = True


def train_model(
    model, train, evaluation, steps, eval_every, stop_below=None, verbose=1, log=None,
    callbacks=(),
):
    """Fit for `steps` batches, evaluating every `eval_every`; returns the
    `StepLogger` (its `records` are the learning curve). `callbacks` run
    after the logger (e.g. `keras.callbacks.TensorBoard`)."""
    steps_per_epoch = min(eval_every, steps)
    logger = StepLogger(steps_per_epoch, stop_below, log)
    model.fit(
        train,
        steps_per_epoch=steps_per_epoch,
        epochs=max(1, steps // steps_per_epoch),
        validation_data=evaluation,
        callbacks=[logger, *callbacks],
        shuffle=False,
        verbose=verbose,
    )
    return logger


def plot_learning_curve(records, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_bits) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(steps, [r["loss"] for r in records], label="train")
    ax_loss.plot(steps, [r["val_loss"] for r in records], label="eval")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy per sequence (nats)")
    ax_loss.legend()
    ax_bits.plot(steps, [r["val_bit_errors"] for r in records], marker="o")
    ax_bits.axhline(0.1, color="grey", linestyle="--", linewidth=0.8)
    ax_bits.set_yscale("symlog", linthresh=0.1)
    ax_bits.set_xlabel("step")
    ax_bits.set_ylabel("wrong bits per sequence (eval)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_weightings(model, inputs, targets, args, path):
    """Read/write weightings over time for one sequence (figures 6-8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    _, input_dim = inputs.shape[1:]
    output_dim = targets.shape[-1]
    inspect = build_model(args.model, input_dim, output_dim, args, return_weightings=True)
    inspect.set_weights(model.get_weights())
    logits, reads, writes = inspect.predict(inputs[:1], verbose=0)
    outputs = 1.0 / (1.0 + np.exp(-logits[0]))
    panels = [
        ("inputs", inputs[0].T, "Greys"),
        ("outputs", outputs.T, "Greys"),
        ("write weightings", writes[0, :, 0].T, "viridis"),
        ("read weightings", reads[0, :, 0].T, "viridis"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    for ax, (title, image, cmap) in zip(axes.T.ravel(), panels):
        ax.imshow(image, aspect="auto", cmap=cmap, interpolation="nearest", origin="upper")
        ax.set_title(title)
        ax.set_xlabel("time")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("channel")
    axes[1, 0].set_ylabel("channel")
    axes[0, 1].set_ylabel("memory slot")
    axes[1, 1].set_ylabel("memory slot")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# The fresh process imports TensorFlow only: what a TF Serving user has.
RELOAD_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
path, inputs = sys.argv[1], np.load(sys.argv[2])
serve = tf.saved_model.load(path).signatures["serving_default"]
(name, outputs), = serve(bits=tf.constant(inputs)).items()
np.save(sys.argv[3], outputs.numpy())
print(json.dumps({"output": name, "imports_keras_attention": "keras_attention" in sys.modules}))
"""


def next_version(export_dir):
    """One above the highest numeric version under `export_dir` (1 if none)."""
    if not os.path.isdir(export_dir):
        return 1
    return max((int(n) for n in os.listdir(export_dir) if n.isdigit()), default=0) + 1


def export_and_check(model, inputs, args):
    """SavedModel export to `<export-dir>/<version>/`, reloaded in a fresh
    process (TensorFlow only) whose `serving_default` must give the trained
    model's logits on `inputs`; returns the export path."""
    version = args.export_version or next_version(args.export_dir)
    path = export_for_serving(model, args.export_dir, version=version)
    inputs_file = os.path.join(args.export_dir, ".reload_inputs.npy")
    outputs_file = os.path.join(args.export_dir, ".reload_outputs.npy")
    np.save(inputs_file, inputs)
    try:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "-c", RELOAD_SCRIPT, path, inputs_file, outputs_file],
            capture_output=True, text=True, env=env, timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"reloading {path} failed:\n{result.stderr[-3000:]}")
        served = json.loads(result.stdout.strip().splitlines()[-1])
        if served["imports_keras_attention"]:
            raise RuntimeError("the reload process imported keras_attention")
        np.testing.assert_allclose(
            np.load(outputs_file), model.predict(inputs, verbose=0), atol=1e-4
        )
    finally:
        for name in (inputs_file, outputs_file):
            if os.path.exists(name):
                os.remove(name)
    print(f"exported SavedModel to {path}; reloaded in a fresh process "
          f"(TensorFlow only), serving_default matches the trained model")
    return path


def evaluate(model, dataset):
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    return results["bit_errors"]


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.export_dir, exist_ok=True)
    train, evaluation, generalisation = task_datasets(args)
    input_spec, target_spec, _ = train.element_spec
    input_dim, output_dim = input_spec.shape[-1], target_spec.shape[-1]
    strategy = get_strategy(args.strategy)
    print(f"strategy: {args.strategy} -> {type(strategy).__name__} "
          f"({strategy.num_replicas_in_sync} replica(s))")
    with strategy.scope():  # variables, optimizer and metrics under the strategy
        model = build_model(args.model, input_dim, output_dim, args)
        compile_model(model, args)
    print(f"{args.model} on {args.task}: {model.count_params():,} parameters")

    tensorboard = keras.callbacks.TensorBoard(log_dir=args.log_dir)
    logger = train_model(
        model, train, evaluation, args.steps, args.eval_every, args.stop_below, args.verbose,
        callbacks=[tensorboard],
    )
    print(f"TensorBoard logs in {args.log_dir}")
    final = logger.records[-1]
    print(
        f"after {final['step']} steps ({final['seconds']:.0f} s): "
        f"{final['val_bit_errors']:.3f} wrong bits per sequence "
        f"on {args.eval_batches * args.batch_size} eval sequences"
    )
    summary = {
        "task": args.task, "model": args.model, "strategy": args.strategy,
        "records": logger.records,
    }
    if generalisation is not None:
        summary["generalisation_bit_errors"] = evaluate(model, generalisation)
        print(f"longer sequences: {summary['generalisation_bit_errors']:.3f} wrong bits per sequence")

    path = os.path.join(args.export_dir, "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    batch = next(iter(evaluation))
    np.testing.assert_allclose(
        model.predict(batch[0], verbose=0),
        reloaded.predict(batch[0], verbose=0),
        atol=1e-5,
    )
    print(f"saved and reloaded {path}")
    summary["export_path"] = export_and_check(model, batch[0].numpy(), args)

    plot_learning_curve(
        logger.records,
        os.path.join(args.export_dir, "learning_curve.png"),
        f"{args.model} on {args.task}",
    )
    if args.model == "ntm":
        inputs, targets, _ = (t.numpy() for t in batch)
        plot_weightings(model, inputs, targets, args, os.path.join(args.export_dir, "weightings.png"))
    with open(os.path.join(args.export_dir, "history.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"plots and history in {args.export_dir}")
    return summary


if __name__ == "__main__":
    main()
