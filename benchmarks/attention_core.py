"""Attention core forward + backward: ours vs `keras.ops.dot_product_attention`.

The core is `softmax(Q K^T / sqrt(D)) V` with `(B, T, H, D)` inputs, timed
as one call that returns the gradients of `sum(out * r)` (fixed random `r`)
with respect to Q, K and V, on the TensorFlow backend:

- ours: `keras_attention.ops.scaled_dot_product_attention` (the "full" path
  of our `MultiHeadAttention` and blocks); with `--blockwise` also
  `keras_attention.ops.blockwise_attention`, and with `--einsum-gradients`
  also our kernel(s) traced with the plain einsum products under XLA as
  well (autodiff gradients for the full path, plain einsums in
  blockwise's backward), which is what they ran before `dot_layout`;
- peer: `keras.ops.dot_product_attention`, Keras' own kernel (on
  TensorFlow an einsum / softmax / einsum, the same products as
  `keras.layers.MultiHeadAttention`).

Shapes: the attention of the two encoder sizes of issue 7 (see
`encoder_throughput.py`): (a) B 32, T 128, H 4, D 64; (b) B 16, T 256,
H 8, D 64. Each runs with `jit_compile=True` and `False`.

Under XLA our key and value gradients are products over the query axis
computed as canonical dots on copied transposes
(`keras_attention.ops.dot_layout`); XLA:CPU runs the form autodiff
produces (a batched dot contracting the leading axis of both operands)
about 4x slower. Without XLA both sides are the same einsums.

Metric `fwd_bwd_ms` (ratio = peer / ours, > 1: ours faster), median of
interleaved rounds after two warm-up calls, plus the largest absolute
difference between the two sides' gradients.

Run (the lines in benchmarks/results/attention_core.jsonl were produced this way):

    python benchmarks/attention_core.py --repeats 15 --blockwise --einsum-gradients
    # ~2 min on 2 cores
"""

import argparse
import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # common.py; keras_attention

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402
from keras_attention.ops import blockwise_attention  # noqa: E402
from keras_attention.ops import scaled_dot_product_attention  # noqa: E402

SHAPES = {
    "a": dict(batch=32, length=128, heads=4, head_dim=64),
    "b": dict(batch=16, length=256, heads=8, head_dim=64),
}
RESULTS = "attention_core.jsonl"
PEER = "keras.ops.dot_product_attention"
EINSUM = "scaled_dot_product_attention, einsum gradients"
BLOCKWISE_EINSUM = "blockwise_attention, einsum gradients"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["a", "b"], choices=SHAPES)
    parser.add_argument("--jit", nargs="+", default=["on", "off"],
                        choices=["on", "off"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--blockwise", action="store_true",
                        help="also time keras_attention.ops.blockwise_attention")
    parser.add_argument("--einsum-gradients", action="store_true",
                        help="also time our kernel(s) with the plain einsum "
                             "products under XLA (before dot_layout)")
    return parser.parse_args()


@contextlib.contextmanager
def plain_einsums():
    """Trace with the plain einsum products under XLA too, what our kernels
    ran before `dot_layout` (the comparison for the change)."""
    modules = [sys.modules["keras_attention.ops.attention"],
               sys.modules["keras_attention.ops.blockwise_attention"]]
    saved = [module.canonical_einsum for module in modules]
    for module in modules:
        module.canonical_einsum = keras.ops.einsum
    try:
        yield
    finally:
        for module, function in zip(modules, saved):
            module.canonical_einsum = function


def fwd_bwd(kernel, jit):
    @tf.function(jit_compile=jit)
    def step(q, k, v, r):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(kernel(q, k, v) * r)
        return tape.gradient(loss, [q, k, v])

    return step


def main():
    args = parse_args()
    kernels = {
        "scaled_dot_product_attention": scaled_dot_product_attention,
        PEER: keras.ops.dot_product_attention,
    }
    plain = set()
    if args.einsum_gradients:
        kernels[EINSUM] = scaled_dot_product_attention
        plain.add(EINSUM)
    if args.blockwise:
        kernels["blockwise_attention"] = blockwise_attention
        if args.einsum_gradients:
            kernels[BLOCKWISE_EINSUM] = blockwise_attention
            plain.add(BLOCKWISE_EINSUM)
    for name in args.sizes:
        shape = SHAPES[name]
        rng = np.random.default_rng(0)
        dims = (shape["batch"], shape["length"], shape["heads"], shape["head_dim"])
        q, k, v, r = (tf.constant(rng.standard_normal(dims), "float32") for _ in range(4))
        for jit in args.jit:
            steps = {kname: fwd_bwd(fn, jit == "on") for kname, fn in kernels.items()}
            grads = {}
            for kname, step in steps.items():  # the first call traces
                with plain_einsums() if kname in plain else contextlib.nullcontext():
                    grads[kname] = step(q, k, v, r)
            times = common.interleaved(
                {kname: (lambda s=step: [g.numpy() for g in s(q, k, v, r)])
                 for kname, step in steps.items()},
                args.repeats, warmup=2,
            )
            config = dict(size=name, jit_compile=jit == "on", **shape,
                          rounds=args.repeats)
            for kname in kernels:
                if kname == PEER:
                    continue
                diff = max(float(np.max(np.abs(a - b)))
                           for a, b in zip(grads[kname], grads[PEER]))
                common.emit(common.record(
                    "attention_core", dict(config, kernel=kname), "fwd_bwd_ms",
                    times[kname].seconds * 1e3, PEER, times[PEER].seconds * 1e3,
                    higher_is_better=False, max_abs_grad_difference=diff,
                ), RESULTS)


if __name__ == "__main__":
    main()
