"""Encoder-stack training throughput and latency: ours vs keras-hub vs Keras MHA.

Three stacks of identical sizes and parameter counts, each `num_layers`
post-LN encoder blocks (ReLU feed-forward, no dropout, epsilon 1e-5) on a
`(batch, length, hidden)` float32 input, trained with Adam on an MSE loss:

- ours: `keras_attention.layers.TransformerEncoderBlock`;
- `keras_hub.layers.TransformerEncoder`;
- a stack built from `keras.layers.MultiHeadAttention` + `LayerNormalization`
  + two `Dense` layers (the textbook Keras block).

Sizes (issue 7): (a) hidden 256, 4 heads, intermediate 1024, length 128,
batch 32, 2 layers; (b) hidden 512, 8 heads, intermediate 2048, length 256,
batch 16, 2 layers. Each size runs with `jit_compile=True` and `False`, set
explicitly in `compile` (Keras' "auto" turns XLA off on CPU).

Metrics (one JSON line each, see `benchmarks/common.py`):

- `train_tokens_per_s`: batch x length x steps / seconds of `train_on_batch`
  calls, median over interleaved rounds (ours, keras-hub, Keras-MHA, ours,
  ...), after two warm-up steps. ratio = ours / peer.
- `train_gflops`: achieved model FLOP/s, next to the `tf.matmul` rate of a
  2048 x 2048 float32 product (XLA) timed in the same interleaved rounds
  as the models (same load). ratio = fraction of the matmul rate
  (target >= 0.55 for size b). Model FLOPs per trained token:

      L * (6 * (4 E^2 + 2 E F) + 12 T E)

  with L layers, E hidden, F intermediate, T length: `6 x` the
  multiply-adds of the parameter matmuls (Q, K, V, O projections and the two
  feed-forward matrices; 2 FLOPs per multiply-add, forward + 2 x backward)
  plus the attention matmuls (`Q K^T` and `P V`, 2 T E each per token
  forward, 3 x for training). Biases, norms, softmax and the optimizer are
  not counted (they are a few percent); the first layer's Q/K/V input
  gradient, which no step computes, is (the usual model-FLOPs count).
- `step_seconds_over_products_floor`: each model's seconds per training
  step next to the seconds of the step's matrix products alone
  (`products_unit`: the same products, shapes and `jit_compile`, in their
  fast layouts, nothing else; not the first layer's input gradient, which
  XLA drops from every stack's step), timed in the same rounds. ratio = floor /
  step (the share of the step that is products); on the "ours" line
  `max_speedup_over_keras_hub` = keras-hub's step time / the floor, the
  largest speed-up over keras-hub that any stack computing these products
  could show on this machine.
- `infer_latency_ms`: batch-1 `predict_on_batch` latency, ratio = peer / ours.

Where ours differs (same FLOPs, same weights): in training, the Q/K/V/output
projections run as one 2-D matrix product with a vector bias
(`keras_attention.layers.attention.token_projection.TokenProjection`), so the
kernel gradient is one product instead of a batch of per-example products
summed afterwards, and the bias gradient a column sum; the norms work on
`(B * T, E)` rows (`...transformer.token_normalization`), whose gamma/beta
gradients XLA:CPU otherwise lowers to slow windowed reductions. Under XLA
the key/value gradients of attention (sums over the query axis) run as
canonical dots on copied transposes (`keras_attention.ops.dot_layout`,
measured by `attention_core.py`), and so do the kernel gradients of the
projections and the feed-forward matrices (`dW = X^T dY`, a sum over the
tokens; `canonical_matmul` in `TokenProjection` and
`...token_projection.TokenDense`; `--plain-kernel-gradients` adds our
stack traced with plain kernel gradients to the run, as one more peer: it
measured 1.03x / 1.026x slower at (a) and 1.001x / 1.018x at (b) in two
runs). A fused Q/K/V product was tried and measured: no training gain, 4%
slower batch-1 inference, so it is not used.

Run (the lines in benchmarks/results/encoder_throughput.jsonl were produced this way):

    python benchmarks/encoder_throughput.py --repeats 9   # ~3 min on 2 quiet cores
    python benchmarks/encoder_throughput.py --quick       # ~30 s: size a, jit on
    python benchmarks/encoder_throughput.py --repeats 9 --jit on --skip-keras-mha \
        --plain-kernel-gradients   # the kernel-gradient route's own gain
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

import common  # noqa: E402
from keras_attention.layers import TransformerEncoderBlock  # noqa: E402

SIZES = {
    "a": dict(hidden=256, heads=4, intermediate=1024, length=128, batch=32, layers=2),
    "b": dict(hidden=512, heads=8, intermediate=2048, length=256, batch=16, layers=2),
}
RESULTS = "encoder_throughput.jsonl"
MATMUL = "tf.matmul 2048x2048 float32 (XLA)"
PRODUCTS = "the step's matrix products alone"
PLAIN_KERNEL_GRADIENTS = "ours, plain kernel gradients"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["a", "b"], choices=SIZES)
    parser.add_argument("--jit", nargs="+", default=["on", "off"],
                        choices=["on", "off"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2,
                        help="training steps per timed unit")
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--skip-keras-mha", action="store_true")
    parser.add_argument("--plain-kernel-gradients", action="store_true",
                        help="also time our stack traced with plain kernel "
                             "gradients (ops.matmul, no canonical_matmul)")
    parser.add_argument("--attention-implementation", default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="size a, jit on, 3 rounds of 1 step")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.jit = ["a"], ["on"]
        args.repeats, args.steps, args.latency_repeats = 3, 1, 5
    return args


def flops_per_token(size):
    e, f, t, n = size["hidden"], size["intermediate"], size["length"], size["layers"]
    return n * (6 * (4 * e * e + 2 * e * f) + 12 * t * e)


def products_unit(size, jit):
    """A timed unit of only the matrix products of one training step.

    Every product a training step of the stack computes, with the stack's
    shapes, forward and backward, for all layers, each in its fast layout
    (the forward forms, `dX = dY W^T`, `dW = X^T dY` with `X^T` given, so
    that no product contracts a leading axis, and the attention products
    with the query axis leading): Q/K/V/output projections, the
    two feed-forward matrices, `Q K^T`, `P V` and their gradients. The
    first layer's Q/K/V `dX` products are left out: their input is the
    model's input, whose gradient no training step needs, and XLA drops
    them from every stack's step (its optimized HLO holds `24 L - 3` dots,
    checked in the tests). Nothing else (no softmax, norms, activations,
    optimizer). Its time bounds any implementation of the stack from below
    on this machine, so `peer step time / products time` is the largest
    speed-up over the peer that any stack with these products could show.
    Returns `(callable, flops)`; `flops` counts exactly these products
    (`flops_per_token(size)` per token less those three `dX` products).
    """
    import tensorflow as tf

    e, f, t = size["hidden"], size["intermediate"], size["length"]
    h, b, n = size["heads"], size["batch"], size["layers"]
    m, d, bh = b * t, e // h, b * h
    param_shapes = [(m, e, e)] * 4 + [(m, e, f), (m, f, e)]  # (M, K, N)
    no_input_gradient = 3  # first layer: Q, K, V read the model's input
    attention_shapes = [(bh, t, d, t), (bh, t, t, d)]  # batched (T, K, N)
    rng = tf.random.Generator.from_seed(0)
    # Distinct operands per layer (identical products would be merged).
    layers = [(
        [(rng.normal((mm, k)), rng.normal((k, nn)), rng.normal((mm, nn)),
          rng.normal((k, mm)))  # X^T, given: dW in the canonical form
         for mm, k, nn in param_shapes],
        [(rng.normal((g, tt, k)), rng.normal((g, k, nn)),
          rng.normal((g, tt, nn)), rng.normal((g, nn, tt)))
         for g, tt, k, nn in attention_shapes],
    ) for _ in range(n)]

    @tf.function(jit_compile=jit)
    def step():
        outs = []
        for i, (params, attention) in enumerate(layers):
            for j, (x, w, dy, x_t) in enumerate(params):
                outs.append(tf.matmul(x, w))  # forward
                if i > 0 or j >= no_input_gradient:
                    outs.append(tf.matmul(dy, w, transpose_b=True))  # dX
                outs.append(tf.matmul(x_t, dy))  # dW = X^T dY
            for lhs, rhs, d_out, d_out_t in attention:
                outs += [tf.matmul(lhs, rhs),  # forward
                         tf.matmul(d_out, rhs, transpose_b=True),  # d lhs
                         tf.matmul(d_out_t, lhs)]  # d rhs, transposed
        return outs

    flops = n * (sum(3 * 2 * mm * k * nn for mm, k, nn in param_shapes)
                 + sum(3 * 2 * g * tt * k * nn for g, tt, k, nn in attention_shapes)
                 ) - sum(2 * mm * k * nn for mm, k, nn in param_shapes[:no_input_gradient])
    def unit():
        return step()[-1].numpy()

    unit.step = step  # for tests: the compiled function
    return unit, flops


def ours_stack(size, implementation):
    inputs = keras.Input((size["length"], size["hidden"]))
    x = inputs
    extra = {}
    if implementation != "auto":
        extra["attention_implementation"] = implementation
    for i in range(size["layers"]):
        x = TransformerEncoderBlock(
            num_heads=size["heads"],
            intermediate_dim=size["intermediate"],
            name=f"block_{i}",
            **extra,
        )(x)
    return keras.Model(inputs, x, name="ours")


def keras_hub_stack(size):
    import keras_hub

    inputs = keras.Input((size["length"], size["hidden"]))
    x = inputs
    for i in range(size["layers"]):
        x = keras_hub.layers.TransformerEncoder(
            intermediate_dim=size["intermediate"],
            num_heads=size["heads"],
            name=f"block_{i}",
        )(x)
    return keras.Model(inputs, x, name="keras_hub")


def keras_mha_stack(size):
    layers = keras.layers
    e, h = size["hidden"], size["heads"]
    inputs = keras.Input((size["length"], e))
    x = inputs
    for i in range(size["layers"]):
        attended = layers.MultiHeadAttention(h, e // h, name=f"mha_{i}")(x, x)
        x = layers.LayerNormalization(epsilon=1e-5)(x + attended)
        hidden = layers.Dense(size["intermediate"], activation="relu")(x)
        x = layers.LayerNormalization(epsilon=1e-5)(x + layers.Dense(e)(hidden))
    return keras.Model(inputs, x, name="keras_mha")


def same_parameter_count(models):
    """The parameter count every model of `{name: model}` has.

    Raises:
        RuntimeError: when the counts differ (the stacks are not the same
            size, so their timings are not comparable).
    """
    counts = {k: m.count_params() for k, m in models.items()}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"parameter counts differ: {counts}")
    return next(iter(counts.values()))


def training_unit(model, x, y, steps):
    """A timed unit of `steps` `train_on_batch(x, y)` calls."""
    def unit():
        for _ in range(steps):
            model.train_on_batch(x, y)
    return unit


@contextlib.contextmanager
def plain_kernel_gradients():
    """Trace with `ops.matmul` in place of `canonical_matmul` in the
    per-token layers: what they computed before the kernel-gradient route."""
    from keras_attention.layers.attention import token_projection

    saved = token_projection.canonical_matmul
    token_projection.canonical_matmul = keras.ops.matmul
    try:
        yield
    finally:
        token_projection.canonical_matmul = saved


def compiled(model, jit):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss="mse", jit_compile=jit
    )
    return model


def run_size(name, size, jit, args):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shape = (size["batch"], size["length"], size["hidden"])
    x = rng.standard_normal(shape).astype("float32")
    y = rng.standard_normal(shape).astype("float32")
    models = {"ours": ours_stack(size, args.attention_implementation),
              "keras_hub.layers.TransformerEncoder": keras_hub_stack(size)}
    if not args.skip_keras_mha:
        models["keras.layers.MultiHeadAttention stack"] = keras_mha_stack(size)
    if args.plain_kernel_gradients:
        models[PLAIN_KERNEL_GRADIENTS] = ours_stack(size, args.attention_implementation)
    params = same_parameter_count(models)
    for key, model in models.items():
        compiled(model, jit)
        # The first step traces the training function.
        with plain_kernel_gradients() if key == PLAIN_KERNEL_GRADIENTS else contextlib.nullcontext():
            model.train_on_batch(x, y)

    # The matmul reference runs in the same interleaved rounds, so that it
    # sees the same machine load. Two warm-up calls each (compilation,
    # optimizer slots).
    units = {k: training_unit(m, x, y, args.steps) for k, m in models.items()}
    units[MATMUL], matmul_flops = common.matmul_unit()
    units[PRODUCTS], products_flops = products_unit(size, jit)
    times = common.interleaved(units, args.repeats, warmup=2)
    matmul_timing = times.pop(MATMUL)
    products_timing = times.pop(PRODUCTS)
    matmul = matmul_flops / matmul_timing.seconds / 1e9
    matmul_cpu = matmul_flops / matmul_timing.cpu_seconds / 1e9
    tokens = size["batch"] * size["length"] * args.steps
    rate = {k: tokens / t for k, (t, _) in times.items()}
    config = dict(size=name, jit_compile=jit, **size,
                  params=params, steps_per_round=args.steps,
                  rounds=args.repeats,
                  attention_implementation=args.attention_implementation)
    for peer in list(models)[1:]:
        common.emit(common.record(
            "encoder_throughput", config, "train_tokens_per_s",
            rate["ours"], peer, rate[peer],
            target=(1.25 if jit else 1.0)
            if peer.startswith("keras_hub") else None,
            cpu_time_ratio=round(times[peer].cpu_seconds / times["ours"].cpu_seconds, 3),
            seconds_per_round={"ours": [round(t, 3) for t in times["ours"].all],
                               "peer": [round(t, 3) for t in times[peer].all]},
        ), RESULTS)

    # The products-only floor: how far any stack could get ahead of each
    # model on this machine (the peer's step time over the products' time).
    hub = "keras_hub.layers.TransformerEncoder"
    for k in models:
        common.emit(common.record(
            "encoder_throughput", dict(config, model=k,
                                       products_gflop=round(products_flops / 1e9, 2)),
            "step_seconds_over_products_floor",
            times[k].seconds / args.steps, PRODUCTS, products_timing.seconds,
            higher_is_better=False,
            products_gflops=round(products_flops / products_timing.seconds / 1e9, 1),
            max_speedup_over_keras_hub=round(
                times[hub].seconds / args.steps / products_timing.seconds, 3
            ) if k == "ours" else None,
        ), RESULTS)

    fpt = flops_per_token(size)
    for k in models:
        common.emit(common.record(
            "encoder_throughput", dict(config, model=k, flops_per_token=fpt),
            "train_gflops", rate[k] * fpt / 1e9, MATMUL, matmul,
            target=0.55 if (k == "ours" and name == "b") else None,
            # The same fraction from process CPU time (less load-sensitive).
            cpu_time_fraction=round(
                (tokens * fpt / times[k].cpu_seconds / 1e9) / matmul_cpu, 3
            ),
        ), RESULTS)

    x1 = x[:1]
    latency = common.interleaved(
        {k: (lambda m=m: m.predict_on_batch(x1)) for k, m in models.items()},
        args.latency_repeats, warmup=2,
    )
    for peer in list(models)[1:]:
        common.emit(common.record(
            "encoder_throughput", dict(config, batch=1), "infer_latency_ms",
            latency["ours"][0] * 1e3, peer, latency[peer][0] * 1e3,
            higher_is_better=False,
        ), RESULTS)


def main():
    args = parse_args()
    for name in args.sizes:
        for jit in args.jit:
            run_size(name, SIZES[name], jit == "on", args)


if __name__ == "__main__":
    main()
