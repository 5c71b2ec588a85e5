"""Pieces every example shares: flags, data errors, callbacks, plots, export
and the reload of the export in a fresh process.

Not a library module: the examples import it as `common` (they run as
scripts from `examples/`, so this directory is on `sys.path`).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

from keras_attention.distribute import STRATEGY_NAMES
from keras_attention.distribute import build_and_compile
from keras_attention.distribute import check_fit_strategy
from keras_attention.distribute import get_strategy
from keras_attention.export import export_for_serving
from keras_attention.generation.generator import check_decoding_arguments
from keras_attention.layers.transformer.block_components import ATTENTION_KERNELS
from keras_attention.models import model_parts
from keras_attention.utils.command_line import kernel_option
from keras_attention.visualization import attention_layer_names
from keras_attention.visualization import plot_model_attention

# The fresh process imports TensorFlow only: what a TF Serving user has.
RELOAD_SCRIPT = r"""
import json, sys
import tensorflow as tf
path, payload = sys.argv[1], json.loads(sys.argv[2])
serve = tf.saved_model.load(path).signatures["serving_default"]
outputs = serve(**{name: tf.constant(value) for name, value in payload.items()})
def plain(value):
    value = value.numpy()
    if value.dtype == object:
        return [v.decode("utf-8") for v in value.reshape(-1)] if value.ndim else value.decode("utf-8")
    return value.tolist()
print(json.dumps({
    "imports_keras_attention": "keras_attention" in sys.modules,
    "outputs": {name: plain(value) for name, value in outputs.items()},
}))
"""


class DataError(Exception):
    """Bad user data: the message names the file (and the line)."""


def add_attention_kernel_arguments(group, kernels=tuple(ATTENTION_KERNELS), prefix="",
                                   what="the blocks' self-attention"):
    """`--<prefix>attention-kernel` (one of `kernels`) and
    `--<prefix>kernel-option` (e.g. `prefix="decoder-"`)."""
    group.add_argument(f"--{prefix}attention-kernel", choices=list(kernels),
                       default="dot_product",
                       help=f"{what}: exact (dot_product) or an efficient kernel")
    group.add_argument(f"--{prefix}kernel-option", type=kernel_option, action="append",
                       default=[], metavar="NAME=VALUE",
                       help="an option of the kernel's layer, repeatable, e.g. "
                            "window_size=32 (local), num_random_features=128 "
                            "(performer), projection_dim=32 (linformer), "
                            "block_size=16 (big_bird); the sequence_length of "
                            "linformer and big_bird is the padded length")


def check_decoding_flags(parser, flags, vocabulary_size=None, **options):
    """A parser error now for decoding options the export's pipeline would
    reject only after training (`check_decoding_arguments`). `flags` names
    them for the message, e.g. "--temperature / --top-k / --top-p". With
    `vocabulary_size=None` (not known yet), `top_k` is checked only for its
    type and sign; call again once the tokenizer is fitted."""
    if vocabulary_size is None:
        vocabulary_size = max(options.get("top_k") or 1, 1)
    try:
        check_decoding_arguments(vocabulary_size, **options)
    except (TypeError, ValueError) as error:
        parser.error(f"{flags}: {error}")


def attention_kernel_arguments(parser, args, sequence_length, causal_decoding=False,
                               prefix=""):
    """The builder's `attention_kernel` / `attention_kernel_options` from
    the `--<prefix>...` flags, checked now (a parser error, before any data
    is loaded).

    `sequence_length` (the padded length) becomes the `sequence_length`
    option of Linformer and BigBird unless a flag gives one; `None` when
    the data decides it: `with_sequence_length` adds it then (the check
    here uses a stand-in)."""
    dest = prefix.replace("-", "_")
    kernel = getattr(args, f"{dest}attention_kernel")
    options = dict(getattr(args, f"{dest}kernel_option"))
    try:
        model_parts.check_attention_kernel(
            kernel, None, model_parts.with_sequence_length(kernel, options, sequence_length or 1),
            causal_decoding=causal_decoding)
    except (TypeError, ValueError) as error:
        parser.error(f"--{prefix}attention-kernel {kernel} / --{prefix}kernel-option: "
                     f"{error}")
    return dict(attention_kernel=kernel, attention_kernel_options=model_parts.with_sequence_length(
        kernel, options, sequence_length))


def with_sequence_length(kernel_arguments, sequence_length):
    """`kernel_arguments` with the padded length as the kernel's
    `sequence_length` option where its layer takes one and no flag set it."""
    kernel = kernel_arguments["attention_kernel"]
    return dict(attention_kernel=kernel, attention_kernel_options=model_parts.with_sequence_length(
        kernel, kernel_arguments["attention_kernel_options"], sequence_length))


def add_common_arguments(parser, name):
    """Flags shared by every example; `name` picks the default paths."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run (under a minute) that still trains, evaluates and exports")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-dir", default=os.path.join("saved_models", name),
                        help="TF Serving model root; the export goes to <export-dir>/<version>/")
    parser.add_argument("--export-version", type=int, default=None,
                        help="version directory (default: one above the highest existing)")
    parser.add_argument("--log-dir", default=os.path.join("logs", name),
                        help="TensorBoard logs (tensorboard --logdir logs)")
    parser.add_argument("--plot-dir", default=os.path.join("plots", name),
                        help="where the attention heat-map PNGs go")
    parser.add_argument("--plot-layer", default=None,
                        help="attention layer to plot: a name such as "
                             "decoder_block_0/cross_attention, or an index (-1: last)")
    parser.add_argument("--plot-head", default="all",
                        help="head to plot: an index, 'mean' or 'all' (side by side)")
    parser.add_argument("--strategy", type=strategy_name, choices=STRATEGY_NAMES,
                        default="default",
                        help="tf.distribute strategy to build and train under: "
                             "mirrored = every GPU (or every logical CPU, see "
                             "keras_attention.distribute.configure_logical_devices); "
                             "multi_worker needs DistributedTrainer, not Keras fit")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile the training step with XLA (slower to start on CPU)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="Keras progress bars: 0 silent, 1 bar, 2 one line per epoch")
    parser.add_argument("--data-dir", default=None,
                        help="with --tfds: TFDS data directory" + _DATA_DIR_HELP.get(name, ""))
    parser.add_argument("--download", action="store_true",
                        help="with --tfds: download and prepare the dataset if missing")


_DATA_DIR_HELP = {
    "classify": "; otherwise a directory with one sub-folder of .txt files per class",
}


def load_data(parser, load_fn):
    """Run `load_fn()`; bad data ends the run with a clear error (exit 2)."""
    try:
        return load_fn()
    except (FileNotFoundError, ValueError, DataError) as error:
        parser.error(str(error))


def strategy_name(value):
    """`--strategy` type: refuses the strategies Keras `fit` cannot train under
    (`keras_attention.distribute.check_fit_strategy`). Unknown names pass
    through to argparse's `choices` check (its usual "invalid choice" error,
    exit 2)."""
    if value not in STRATEGY_NAMES:
        return value
    try:
        return check_fit_strategy(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"the examples train with Keras fit. {error}")


def strategy_of(args):
    """The `tf.distribute` strategy named by `--strategy`; one that cannot be
    made here (e.g. `tpu` with no TPU) stops the run with its reason."""
    name = getattr(args, "strategy", None) or "default"
    try:
        return get_strategy(name)
    except ValueError as error:
        raise SystemExit(f"error: --strategy {name}: {error}") from None


def build(args, build_fn, compile_kwargs):
    """Build and compile the model inside the `--strategy` scope.

    Records the strategy and its replica count on `args` (`summarize` puts
    them in the summary).
    """
    strategy = strategy_of(args)
    args.replicas = strategy.num_replicas_in_sync
    print(f"strategy: {args.strategy or 'default'} -> {type(strategy).__name__} "
          f"({args.replicas} replica(s))")
    return build_and_compile(strategy, build_fn, compile_kwargs)


def callbacks(args, extra=()):
    """TensorBoard logs under `--log-dir`, after `extra` (so their logs reach it)."""
    return [*extra, keras.callbacks.TensorBoard(log_dir=args.log_dir)]


def next_version(export_dir):
    """One above the highest numeric version under `export_dir` (1 if none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir) if n.isdigit()]
    return max(versions, default=0) + 1


def parse_head(value):
    """`--plot-head`: 'all' -> None, 'mean', or an int."""
    if value in (None, "all"):
        return None
    if value == "mean":
        return "mean"
    try:
        return int(value)
    except ValueError:
        raise DataError(
            f"--plot-head expects an index, 'mean' or 'all'. Received: {value!r}"
        ) from None


def parse_layer(value):
    """`--plot-layer`: None, an int index, or a layer name."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


_VISIBLE = {" ": "\u00b7", "\n": "\\n", "\t": "\\t"}


def token_strings(tokenizer, ids):
    """Token strings of the non-padding ids of one sequence (blanks made visible)."""
    tokens = [tokenizer.id_to_token(int(i)) for i in np.asarray(ids) if int(i) != 0]
    return [_VISIBLE.get(token, token) for token in tokens]


def plot_attention_map(args, model, inputs, filename, query_tokens, key_tokens):
    """Write the heat map chosen by `--plot-layer` / `--plot-head`; its path
    (`None` when no attention layer of the model forms token-by-token
    weights: every block has a Performer or Linformer kernel)."""
    if not attention_layer_names(model):
        kernel = getattr(args, "attention_kernel", "dot_product")
        print(f"attention heat map: none, the {kernel!r} kernel forms no "
              "token-by-token attention weights")
        return None
    path = os.path.join(args.plot_dir, filename)
    layer, _ = plot_model_attention(
        model,
        inputs,
        path,
        layer=parse_layer(args.plot_layer),
        head=parse_head(args.plot_head),
        query_tokens=query_tokens,
        key_tokens=key_tokens,
    )
    print(f"attention heat map ({layer}, head {args.plot_head}): {path}")
    return path


def export(args, pipeline):
    """Export the serving pipeline to `<export-dir>/<version>/`; its path."""
    version = args.export_version or next_version(args.export_dir)
    start = time.time()
    path = export_for_serving(pipeline, args.export_dir, version=version)
    print(f"exported SavedModel (serving_default on raw strings) to {path} "
          f"in {time.time() - start:.0f}s")
    return path


def reload_in_fresh_process(path, payload):
    """Load the export in a new Python process that imports only TensorFlow
    and run `serving_default` on `payload` (input name -> list)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, path, json.dumps(payload)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"reloading {path} failed:\n{result.stderr[-3000:]}")
    served = json.loads(result.stdout.strip().splitlines()[-1])
    if served["imports_keras_attention"]:
        raise RuntimeError("the reload process imported keras_attention")
    return served["outputs"]


def as_text(values):
    """NumPy bytes/str array -> list of str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def report_reload(path, payload, in_process, keys):
    """Reload the export in a fresh process, print its predictions and
    whether they equal the in-process pipeline's; returns the served dict."""
    start = time.time()
    served = reload_in_fresh_process(path, payload)
    same = True
    for key in keys:
        expected = in_process[key]
        if np.asarray(expected).dtype == object:
            same = same and as_text(expected) == served[key]
        else:
            same = same and np.allclose(expected, served[key], atol=1e-4)
    print(f"reloaded {path} in a fresh process (TensorFlow only) in "
          f"{time.time() - start:.0f}s; predictions identical to in-process: {same}")
    return served, same


def summarize(summary, args, name):
    """Print the final summary as JSON and write it next to the plots."""
    if getattr(args, "replicas", None) is not None:
        summary = {**summary, "strategy": args.strategy, "replicas": args.replicas}
    os.makedirs(args.plot_dir, exist_ok=True)
    path = os.path.join(args.plot_dir, f"{name}_summary.json")
    with open(path, "w") as handle:
        json.dump(summary, handle, indent=2, default=float)
    print(json.dumps(summary, indent=2, default=float))
    return summary

