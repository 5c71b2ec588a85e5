"""Attention time and peak memory as the length grows: full vs blockwise.

One head of size 64, batch 1, self-attention (T = S), forward + backward
(gradients of `sum(out * out)` with respect to Q, K and V), float32, on the
TensorFlow backend:

- full: `keras_attention.ops.scaled_dot_product_attention`, which forms the
  `(B, H, T, S)` score matrix;
- blockwise: `keras_attention.ops.blockwise_attention` (online softmax,
  recomputing backward pass), default or `--block` sizes.

Peak memory, measured per (length, implementation) in a fresh subprocess so
that one measurement cannot inherit another's allocations:

- on a GPU: `tf.config.experimental.get_memory_info("GPU:0")["peak"]` after
  `reset_memory_stats`, minus the memory in use before the call;
- on CPU: the subprocess's resident-set high-water mark, read after the
  inputs are made and the function is traced (the baseline) and again after
  one forward+backward call (the peak). Reported: `peak - baseline` (the
  memory the attention itself needed) and the raw peak. The mark is
  `VmHWM` from `/proc/self/status` (Linux), which belongs to the process's
  own address space; `resource.getrusage(RUSAGE_SELF).ru_maxrss` is the
  fallback elsewhere, but on Linux it starts from the parent's high-water
  mark at fork time (it survives `exec`), so after the parent has run a
  large measurement every child would report at least that.

Each subprocess also saves its output and gradients; the parent reports the
largest absolute difference between the two implementations (target
<= 1e-4). Time is measured separately in this process, both implementations
interleaved, median of `--repeats` calls after one warm-up.

Lines (see `benchmarks/common.py`): `peak_memory_mb` (ours = blockwise,
peer = full, ratio = full / blockwise, `fraction` = blockwise / full,
target <= 0.25 at 16384), `fwd_bwd_seconds` (ratio = full / blockwise;
issue 7 asks blockwise to stay within 1.5x of the full path's time at 2048,
i.e. ratio >= 0.667) and `max_abs_difference`.

Run:

    python benchmarks/attention_memory.py            # 256 .. 16384, ~15 min
    python benchmarks/attention_memory.py --quick    # 1024 and 4096, ~2 min
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # common.py; keras_attention

RESULTS = "attention_memory.jsonl"
LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384]
FULL = "full (keras_attention.ops.scaled_dot_product_attention)"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--block", type=int, nargs=2, default=None,
                        metavar=("QUERY", "KEY"),
                        help="blockwise block sizes (default: the op's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit", action="store_true",
                        help="compile with XLA (default: TF graph mode)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "LENGTH", "NPZ"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.repeats = [1024, 4096], 2
    return args


def make_step(implementation, args):
    import tensorflow as tf

    from keras_attention.ops import blockwise_attention
    from keras_attention.ops import scaled_dot_product_attention

    kwargs = {}
    if implementation == "blockwise":
        fn = blockwise_attention
        if args.block:
            kwargs = dict(query_block_size=args.block[0], key_block_size=args.block[1])
    else:
        fn = scaled_dot_product_attention

    @tf.function(jit_compile=args.jit)
    def step(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = fn(q, k, v, **kwargs)
            loss = tf.reduce_sum(out * out)
        return [out] + tape.gradient(loss, [q, k, v])

    return step


def inputs(length, head_dim):
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(length)
    return [rng.normal((1, length, 1, head_dim)) for _ in range(3)]


def child(args):
    """One measurement in a fresh process; prints a JSON dict."""
    import resource
    import time

    import numpy as np
    import tensorflow as tf

    implementation, length, npz = args.child[0], int(args.child[1]), args.child[2]

    def high_water_mark():
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024, "VmHWM (/proc/self/status)"
        except OSError:
            pass
        return (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "resource.getrusage ru_maxrss",
        )

    q, k, v = inputs(length, args.head_dim)
    step = make_step(implementation, args)
    step.get_concrete_function(q, k, v)  # trace before the baseline
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
        before = tf.config.experimental.get_memory_info("GPU:0")["current"]
    else:
        before, _ = high_water_mark()
    start = time.perf_counter()
    results = [t.numpy() for t in step(q, k, v)]
    seconds = time.perf_counter() - start
    if gpu:
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        method = "tf.config.experimental.get_memory_info peak"
    else:
        peak, mark = high_water_mark()
        method = f"{mark} high-water mark of a fresh subprocess"
    np.savez(npz, *results)
    print(json.dumps({
        "baseline_mb": before / 2**20, "peak_mb": peak / 2**20,
        "first_call_seconds": seconds, "method": method,
    }))


def measure(implementation, length, args, npz):
    command = [sys.executable, os.path.abspath(__file__), "--head-dim",
               str(args.head_dim), "--child", implementation, str(length), npz]
    if args.block:
        command[2:2] = ["--block", *map(str, args.block)]
    if args.jit:
        command.append("--jit")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    args = parse_args()
    if args.child:
        child(args)
        return
    import numpy as np

    import common

    config_base = dict(batch=1, heads=1, head_dim=args.head_dim,
                       jit_compile=args.jit, block=args.block or "default")
    with tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            config = dict(config_base, length=length)
            files = {impl: os.path.join(tmp, f"{impl}_{length}.npz")
                     for impl in ("full", "blockwise")}
            got = {impl: measure(impl, length, args, path)
                   for impl, path in files.items()}
            if any("error" in g for g in got.values()):
                common.emit(common.record(
                    "attention_memory", config, "peak_memory_mb", None,
                    error={k: g.get("error") for k, g in got.items()},
                ), RESULTS)
                continue
            ours = got["blockwise"]["peak_mb"] - got["blockwise"]["baseline_mb"]
            peer = got["full"]["peak_mb"] - got["full"]["baseline_mb"]
            common.emit(common.record(
                "attention_memory", config, "peak_memory_mb", ours, FULL, peer,
                higher_is_better=False,
                fraction=round(ours / peer, 4) if peer > 0 else None,
                target_fraction=0.25 if length == 16384 else None,
                raw_peak_mb={k: round(g["peak_mb"], 1) for k, g in got.items()},
                baseline_mb={k: round(g["baseline_mb"], 1) for k, g in got.items()},
                method=got["full"]["method"],
            ), RESULTS)
            with np.load(files["full"]) as a, np.load(files["blockwise"]) as b:
                diff = max(float(np.max(np.abs(a[key] - b[key]))) for key in a)
            common.emit(common.record(
                "attention_memory", config, "max_abs_difference", diff,
                target=1e-4, compared="output and dQ, dK, dV",
            ), RESULTS)
            time_length(length, args, config)


def time_length(length, args, config):
    import common

    q, k, v = inputs(length, args.head_dim)
    steps = {impl: make_step(impl, args) for impl in ("blockwise", "full")}
    units = {
        impl: (lambda s=s: [t.numpy() for t in s(q, k, v)])
        for impl, s in steps.items()
    }
    times = common.interleaved(units, args.repeats, warmup=1)
    common.emit(common.record(
        "attention_memory", config, "fwd_bwd_seconds", times["blockwise"][0],
        FULL, times["full"][0], higher_is_better=False,
        target_ratio=round(1 / 1.5, 3) if length == 2048 else None,
    ), RESULTS)


if __name__ == "__main__":
    main()
