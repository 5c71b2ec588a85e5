"""Encoder training throughput and FLOP utilisation on any Keras backend.

The backend-neutral companion of `encoder_throughput.py`, for issue 7's
device target: "record tokens/s and model FLOP utilisation for size (b) on
TensorFlow and on JAX with flash attention". It runs on the backend that
`KERAS_BACKEND` selects (TensorFlow or JAX), on whatever device that
backend uses, and compares, in one interleaved run:

- ours: `keras_attention.layers.TransformerEncoderBlock` stack (the same
  `ours_stack` as `encoder_throughput.py`; on JAX its attention is
  `keras.ops.dot_product_attention`, which JAX serves with cuDNN's flash
  kernel on GPUs for 16-bit inputs, see `--dtype-policy`);
- `keras_hub.layers.TransformerEncoder` (same sizes, same parameter count).

Both train with Adam on an MSE loss, compiled with XLA (`jit_compile=True`).

Lines (JSON, see `benchmarks/common.py`):

- `train_tokens_per_s`: median over interleaved rounds, ratio = ours /
  keras-hub;
- `train_gflops` per model: achieved model FLOP/s (the model-FLOP count of
  `encoder_throughput.flops_per_token`), peer = the rate of chained square
  `keras.ops.matmul` products in the policy's compute dtype, compiled and
  timed in the same rounds; ratio = the fraction of that rate; with
  `--peak-tflops` (the device's dense peak for the compute dtype, from its
  data sheet) also `model_flops_utilisation` = achieved / peak.

`config` names the backend, the device (`device_kind`), the dtype policy
and whether the fused attention path was taken.

Run (on a GPU machine; the device check of issue 7):

    python benchmarks/backend_throughput.py --sizes b --dtype-policy mixed_bfloat16
    KERAS_BACKEND=jax python benchmarks/backend_throughput.py --sizes b \\
        --dtype-policy mixed_bfloat16
    # add --peak-tflops P for MFU (e.g. the H100 SXM's dense bf16 peak)

On this repository's 2-core CPU, `KERAS_BACKEND=jax python
benchmarks/backend_throughput.py --sizes a b` gave the JAX CPU numbers in
benchmarks/results/backend_throughput.jsonl.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # common.py; keras_attention

import keras  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from encoder_throughput import SIZES  # noqa: E402
from encoder_throughput import flops_per_token  # noqa: E402
from encoder_throughput import keras_hub_stack  # noqa: E402
from encoder_throughput import ours_stack  # noqa: E402
from encoder_throughput import same_parameter_count  # noqa: E402
from encoder_throughput import training_unit  # noqa: E402

RESULTS = "backend_throughput.jsonl"
MATMUL = "keras.ops.matmul, square, compiled"
HUB = "keras_hub.layers.TransformerEncoder"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["b"], choices=SIZES)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2,
                        help="training steps per timed unit")
    parser.add_argument("--dtype-policy", default="float32",
                        help="Keras dtype policy of both stacks, e.g. "
                             "mixed_bfloat16 (flash kernels need 16-bit)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak TFLOP/s for the compute "
                             "dtype; adds model_flops_utilisation")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--results-file", default=RESULTS,
                        help="file under benchmarks/results/ ('' to not save)")
    return parser.parse_args(argv)


def device_kind():
    """The accelerator (or CPU) the backend computes on, in words."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].device_kind
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", "GPU")
        return "cpu"
    raise ValueError(
        "Received an invalid value for the Keras backend, expected "
        f"'tensorflow' or 'jax'. Received: backend={backend!r}"
    )


def compiled(function):
    """`function` compiled with XLA on the current backend."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function, jit_compile=True)


def matmul_unit(size, dtype, iterations=5):
    """A timed unit of `iterations` chained `size` x `size` products in
    `dtype`, compiled; returns `(callable, flops_per_call)`."""
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size)), dtype)
    b = keras.ops.convert_to_tensor(
        rng.standard_normal((size, size)) / size**0.5, dtype
    )

    def chain(x, b):
        for _ in range(iterations):
            x = keras.ops.matmul(x, b)
        return x

    chain = compiled(chain)
    return (lambda: keras.ops.convert_to_numpy(chain(a, b))), 2.0 * size**3 * iterations


def fused_attention_taken(model):
    """Whether ours' attention layers take the fused
    `keras.ops.dot_product_attention` path in a training call."""
    from keras_attention.layers import MultiHeadAttention

    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, MultiHeadAttention)]
    return bool(layers) and all(
        layer._implementation(return_attention_scores=False, training=True) == "fused"
        for layer in layers
    )


def run_size(name, size, args):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shape = (size["batch"], size["length"], size["hidden"])
    x = rng.standard_normal(shape).astype("float32")
    y = rng.standard_normal(shape).astype("float32")
    models = {"ours": ours_stack(size, "auto"), HUB: keras_hub_stack(size)}
    params = same_parameter_count(models)
    for model in models.values():
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse",
                      jit_compile=True)
    units = {k: training_unit(m, x, y, args.steps) for k, m in models.items()}
    compute_dtype = keras.dtype_policies.get(args.dtype_policy).compute_dtype
    units[MATMUL], matmul_flops = matmul_unit(args.matmul_size, compute_dtype)
    times = common.interleaved(units, args.repeats, warmup=2)
    matmul = matmul_flops / times.pop(MATMUL).seconds / 1e9
    tokens = size["batch"] * size["length"] * args.steps
    rate = {k: tokens / t.seconds for k, t in times.items()}
    config = dict(size=name, **size, params=params, jit_compile=True,
                  dtype_policy=args.dtype_policy, device=device_kind(),
                  fused_attention=fused_attention_taken(models["ours"]),
                  steps_per_round=args.steps, rounds=args.repeats)
    common.emit(common.record(
        "backend_throughput", config, "train_tokens_per_s", rate["ours"],
        HUB, rate[HUB],
    ), args.results_file)
    fpt = flops_per_token(size)
    for k in models:
        achieved = rate[k] * fpt / 1e9
        extra = {}
        if args.peak_tflops:
            extra["model_flops_utilisation"] = float(f"{achieved / (args.peak_tflops * 1e3):.4g}")
        common.emit(common.record(
            "backend_throughput", dict(config, model=k, flops_per_token=fpt,
                                       matmul_size=args.matmul_size),
            "train_gflops", achieved, MATMUL, matmul, **extra,
        ), args.results_file)


def main(argv=None):
    args = parse_args(argv)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.dtype_policy)
    try:
        for name in args.sizes:
            run_size(name, SIZES[name], args)
    finally:
        keras.config.set_dtype_policy(previous)


if __name__ == "__main__":
    main()
