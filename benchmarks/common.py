"""Shared helpers of the benchmarks: interleaved timing, JSON lines, context.

Every benchmark prints one JSON object per line per measurement (see
DESIGN.md): `{"benchmark", "config", "metric", "ours", "peer_name", "peer",
"ratio"}`, with `ratio` oriented so that > 1 means ours is better, plus a
`context` object (load average, backend, versions) so that a number can be
read against the state of the machine that produced it. `emit` also appends
the line to `benchmarks/results/<file>.jsonl`.

Timing rule: both sides run in the same process, interleaved (A, B, C, A, B,
C, ...), after warm-up; a measurement is the median over the repetitions.
"""

import json
import os
import platform
import statistics
import time

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def context():
    """What the machine was doing: load average, cores, backend, versions."""
    import keras

    info = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every platform
        pass
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = len(tf.config.list_physical_devices("GPU"))
    elif keras.backend.backend() == "jax":
        import jax

        info["jax"] = jax.__version__
        info["jax_devices"] = [d.device_kind for d in jax.devices()]
    return info


def record(benchmark, config, metric, ours, peer_name=None, peer=None,
           higher_is_better=True, **extra):
    """One result line; `ratio` is ours/peer (or peer/ours when lower wins)."""
    line = {
        "benchmark": benchmark,
        "config": config,
        "metric": metric,
        "ours": _round(ours),
    }
    if peer_name is not None:
        line["peer_name"] = peer_name
        line["peer"] = _round(peer)
        if peer and ours:
            ratio = ours / peer if higher_is_better else peer / ours
            line["ratio"] = round(ratio, 3)
        else:
            line["ratio"] = None
    line.update(extra)
    line["context"] = context()
    return line


def _round(value):
    if value is None:
        return None
    if abs(value) >= 100:
        return round(value, 1)
    return float(f"{value:.4g}")


def emit(line, results_file=None):
    """Print `line` as JSON and append it to `benchmarks/results/<file>`."""
    text = json.dumps(line)
    print(text, flush=True)
    if results_file:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        with open(os.path.join(RESULTS_DIR, results_file), "a") as f:
            f.write(text + "\n")


def timed(function):
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


class Timing:
    """Median wall-clock and process-CPU seconds of one timed unit.

    The CPU time (all threads of this process, `time.process_time`) is less
    sensitive than the wall clock to other processes on a shared machine;
    both are reported.
    """

    def __init__(self, wall, cpu):
        self.all = list(wall)
        self.seconds = statistics.median(wall)
        self.cpu_seconds = statistics.median(cpu)

    def __iter__(self):  # (median seconds, all timings)
        return iter((self.seconds, self.all))

    def __getitem__(self, index):
        return (self.seconds, self.all)[index]


def interleaved(functions, repeats, warmup=1):
    """Median seconds per call of each function, timed in interleaved rounds.

    Args:
        functions: dict name -> zero-argument callable (one timed unit).
        repeats: number of timed rounds; each round calls every function once,
            in a rotating order so that no side always runs first.
        warmup: untimed calls of each function before timing (compilation).

    Returns:
        dict name -> `Timing` (`.seconds`, `.cpu_seconds`, `.all`; it also
        unpacks as `(median seconds, all timings)`).
    """
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            cpu_start = time.process_time()
            wall[name].append(timed(functions[name]))
            cpu[name].append(time.process_time() - cpu_start)
    return {name: Timing(wall[name], cpu[name]) for name in names}


def matmul_unit(size=2048, iterations=5, jit_compile=True):
    """A timed unit of `iterations` chained float32 `size` x `size` matmuls.

    The products are chained inside one compiled function so that dispatch
    overhead does not count. Returns `(callable, flops_per_call)`; time the
    callable among the other units of an `interleaved` run so that the
    matmul rate sees the same machine load as the models.
    """
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32) / size**0.5

    @tf.function(jit_compile=jit_compile)
    def chain(x):
        for _ in range(iterations):
            x = tf.matmul(x, b)
        return x

    return (lambda: chain(a).numpy()), 2.0 * size**3 * iterations


def matmul_gflops(size=2048, repeats=5, jit_compile=True, iterations=5):
    """Median float32 `tf.matmul` rate (GFLOP/s), measured on its own."""
    unit, flops = matmul_unit(size, iterations, jit_compile)
    unit()
    seconds = statistics.median(timed(unit) for _ in range(repeats))
    return flops / seconds / 1e9
