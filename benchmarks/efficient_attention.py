"""Efficient attention: Performer and Linformer vs exact attention, and
Performer's approximation error vs the number of random features.

Timed units (batch 1, `--heads` heads of size 64, float32), each one
compiled `tf.function(jit_compile=True)` that runs the forward pass and the
backward pass (gradients of the sum of the output with respect to the
queries, keys and values, and Linformer's projections):

- exact: `keras_attention.ops.scaled_dot_product_attention` (the full
  T x T score matrix), the peer of every line;
- performer: FAVOR+ bidirectional attention
  (`layers.attention.efficient_math.favor_attention`) with
  `--features` random features (PerformerAttention's core);
- linformer: keys and values projected along the sequence to
  `--projection-dim` rows by learned `(T, k)` matrices, then exact
  attention over them (LinformerAttention's core);
- performer_causal (vs exact causal): FAVOR+ with chunked prefix sums.

All units of all lengths run in one interleaved pool (rotating order),
after a compiled warm-up call each, so that every ratio -- across kernels
and across lengths -- is measured under the same machine load; a time is
the median over `--repeats` rounds (the minimum wall time and the median
process CPU time are reported next to it as `ours_min` / `peer_min` and
`ours_cpu` / `peer_cpu`).

Lines (JSON, see `benchmarks/common.py`):

- `fwd_bwd_ms` per kernel and length: ours = the kernel, peer = exact
  attention, ratio = peer / ours (> 1: the kernel is faster; target >= 4 at
  8192);
- `time_growth_2048_to_8192` per kernel: ours = t(8192) / t(2048) (target
  <= 5), peer = exact's growth, ratio = peer / ours;
- `relative_error` of Performer vs exact softmax attention
  (`|approx - exact| / |exact|`, Frobenius, mean over `--error-seeds`
  feature draws) for 16 ... 1024 features at length 1024, with q and k
  entries ~ N(0, s^2) for each `--error-scales` s (logits `q . k / 8` of
  standard deviation s^2). The relative variance of one FAVOR+ feature is
  about `exp(|q + k|^2 / sqrt(D))`, so random 64-dimensional q, k at s = 1
  (`|q|^2 ~ 64`) give a far larger error than at s = 0.5.

Run (about 10 minutes on 2 busy CPU cores; shared machines make absolute
times noise, the ratios are measured side by side):

    python benchmarks/efficient_attention.py
    python benchmarks/efficient_attention.py --lengths 1024 2048 --repeats 3
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # common.py; keras_attention

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402
from keras_attention.layers.attention import efficient_math  # noqa: E402
from keras_attention.ops import scaled_dot_product_attention  # noqa: E402

BENCHMARK = "efficient_attention"
RESULTS_FILE = "efficient_attention.jsonl"
PEER = "ops.scaled_dot_product_attention"


def _fwd_bwd(attention, tensors):
    """A compiled forward+backward unit; returns a callable."""

    @tf.function(jit_compile=True)
    def step(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            out = attention(*args)
            loss = tf.reduce_sum(out)
        return loss, tape.gradient(loss, args)

    def run():
        loss, grads = step(*tensors)
        # Block until done (XLA may run asynchronously).
        loss.numpy()
        for g in grads:
            g.numpy()

    return run


def _units(length, heads, features, projection_dim, seed=0):
    rng = np.random.default_rng(seed)

    def rand(*shape, scale=1.0):
        return tf.constant((scale * rng.normal(size=shape)).astype("float32"))

    q, k, v = (rand(1, length, heads, 64) for _ in range(3))
    projection = efficient_math.orthogonal_random_features(features, 64, seed=seed)
    e = rand(length, projection_dim, scale=length**-0.5)
    f = rand(length, projection_dim, scale=length**-0.5)

    def exact(q, k, v):
        return scaled_dot_product_attention(q, k, v)

    def exact_causal(q, k, v):
        return scaled_dot_product_attention(q, k, v, causal=True)

    def performer(q, k, v):
        return efficient_math.favor_attention(q, k, v, projection)

    def performer_causal(q, k, v):
        return efficient_math.favor_attention(q, k, v, projection, causal=True)

    def linformer(q, k, v, e, f):
        k_low = tf.einsum("bshd,sp->bphd", k, e)  # (B, k, H, D)
        v_low = tf.einsum("bshd,sp->bphd", v, f)  # (B, k, H, D)
        return scaled_dot_product_attention(q, k_low, v_low)

    return {
        "exact": _fwd_bwd(exact, (q, k, v)),
        "performer": _fwd_bwd(performer, (q, k, v)),
        "linformer": _fwd_bwd(linformer, (q, k, v, e, f)),
        "exact_causal": _fwd_bwd(exact_causal, (q, k, v)),
        "performer_causal": _fwd_bwd(performer_causal, (q, k, v)),
    }


PEERS = {
    "performer": "exact",
    "linformer": "exact",
    "performer_causal": "exact_causal",
}


def time_lengths(args):
    # Every unit of every length in one interleaved pool, so that the growth
    # from the shortest to the longest length is measured under the same
    # machine load.
    units = {}
    for length in args.lengths:
        for name, unit in _units(
            length, args.heads, args.features, args.projection_dim
        ).items():
            units[(name, length)] = unit
    measured = common.interleaved(units, args.repeats, warmup=1)
    median = {key: seconds for key, (seconds, _) in measured.items()}
    fastest = {key: min(times) for key, (_, times) in measured.items()}
    cpu = {key: getattr(t, "cpu_seconds", None) for key, t in measured.items()}

    def cpu_ms(key):
        return None if cpu[key] is None else round(1e3 * cpu[key], 2)
    for length in args.lengths:
        for kernel, peer in PEERS.items():
            config = {
                "kernel": kernel,
                "length": length,
                "batch": 1,
                "heads": args.heads,
                "head_dim": 64,
                "features": args.features,
                "projection_dim": args.projection_dim,
                "jit_compile": True,
                "repeats": args.repeats,
            }
            common.emit(common.record(
                BENCHMARK, config, "fwd_bwd_ms",
                1e3 * median[(kernel, length)],
                peer_name=PEER + (" causal" if "causal" in peer else ""),
                peer=1e3 * median[(peer, length)],
                higher_is_better=False,
                ours_min=round(1e3 * fastest[(kernel, length)], 2),
                peer_min=round(1e3 * fastest[(peer, length)], 2),
                ours_cpu=cpu_ms((kernel, length)),
                peer_cpu=cpu_ms((peer, length)),
            ), args.results_file)
    first, last = min(args.lengths), max(args.lengths)
    if first != last:
        for kernel, peer in PEERS.items():
            config = {"kernel": kernel, "from": first, "to": last,
                      "heads": args.heads, "jit_compile": True}
            common.emit(common.record(
                BENCHMARK, config, f"time_growth_{first}_to_{last}",
                median[(kernel, last)] / median[(kernel, first)],
                peer_name=PEER + (" causal" if "causal" in peer else ""),
                peer=median[(peer, last)] / median[(peer, first)],
                higher_is_better=False,
                ours_min=round(fastest[(kernel, last)] / fastest[(kernel, first)], 3),
                peer_min=round(fastest[(peer, last)] / fastest[(peer, first)], 3),
            ), args.results_file)


def relative_errors(args):
    rng = np.random.default_rng(1)
    length = args.error_length
    for scale in args.error_scales:
        q, k = (
            (scale * rng.normal(size=(1, length, 2, 64))).astype("float32")
            for _ in range(2)
        )
        v = rng.normal(size=(1, length, 2, 64)).astype("float32")
        exact = np.asarray(scaled_dot_product_attention(q, k, v))
        for features in args.error_features:
            errors = []
            for seed in range(args.error_seeds):
                w = efficient_math.orthogonal_random_features(features, 64, seed=seed)
                approx = np.asarray(efficient_math.favor_attention(q, k, v, w))
                errors.append(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
            config = {"kernel": "performer", "features": features, "length": length,
                      "heads": 2, "head_dim": 64, "qk_std": scale,
                      "logit_std": round(scale**2, 4), "seeds": args.error_seeds}
            common.emit(common.record(
                BENCHMARK, config, "relative_error", float(np.mean(errors)),
                error_std=round(float(np.std(errors)), 4),
            ), args.results_file)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--projection-dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--error-length", type=int, default=1024)
    parser.add_argument("--error-features", type=int, nargs="+",
                        default=[16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument("--error-seeds", type=int, default=5)
    parser.add_argument("--error-scales", type=float, nargs="+", default=[0.5, 1.0],
                        help="standard deviation of the q and k entries")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-errors", action="store_true")
    parser.add_argument("--results-file", default=RESULTS_FILE,
                        help="file under benchmarks/results/ ('' to not save)")
    args = parser.parse_args()
    if not args.skip_timing:
        time_lengths(args)
    if not args.skip_errors:
        relative_errors(args)


if __name__ == "__main__":
    main()
