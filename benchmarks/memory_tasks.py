"""Steps and wall time to convergence of the memory models on the bit tasks.

For every task, seed and model (the memory model under test, then the LSTM
baseline as the peer) this trains with the settings of Collier and Beel 2018
(batch 32, Adam 1e-3, global gradient-norm clip 50; NTM: LSTM-100
controller, memory 128 x 20) and evaluates every `--eval-every` steps on 640
held-out sequences. A run has converged at the first evaluation under
`--threshold` (0.1) wrong bits per sequence; it stops there or after
`--max-steps`. Then it evaluates the longer sequences of the task (copy:
length 40, never seen in training).

The DNC runs with the repeat-copy settings of deepmind/dnc's `train.py`
(`DNC_SETTINGS`: controller 64, memory 16 x 16, 4 read heads, 1 write head,
RMSProp 1e-4 with epsilon 1e-10, global gradient-norm clip 50, batch 16;
outputs clipped to +-20, the layer's default) on the task of Graves et al.
(8 bits, lengths 1-10, 1-10 repeats; deepmind/dnc's own default task is
smaller: 4 bits, lengths 1-2, 1-2 repeats); `--dnc-settings example` uses
the example's flags instead, and example flags given on the command line
(e.g. `--optimizer adam --learning-rate 1e-3`) override single settings.
Evaluation stays at 640 sequences.

Prints one JSON object per line (`benchmarks/common.py`: with the machine's
`context`, load average included) and appends it to
`benchmarks/results/memory_tasks.jsonl` (not for `--smoke`):

- `metric="eval_curve"`: one per run, `ours` is the list of
  `[step, seconds, eval wrong bits per sequence]`.
- `metric="steps_to_converge"`, `"wall_s_to_converge"`: `ours` for the
  memory model, `peer` for the LSTM, `null` when a run did not converge;
  `ratio = peer / ours`, > 1 meaning the memory model is better; when the
  peer did not converge its budget (`--max-steps`, or its wall time) stands
  in and `ratio_is_lower_bound` is true.
- `metric="final_bit_errors"`, `"generalisation_bit_errors"`: eval wrong
  bits per sequence at the end of the runs; `ratio = peer / ours`.

Wall times include tracing and XLA compilation and, on a shared machine,
other people's load: compare ratios from the same run, not absolute times.

Run (the convergence check; measured on 2 shared CPU cores: the NTM 9-12
min per seed, XLA compilation included, with seeds 0, 1, 2 run at once as
three processes; the LSTM 74 min for seed 0):

    python benchmarks/memory_tasks.py --task copy --models ntm --seeds 0 1 2
    python benchmarks/memory_tasks.py --task copy --models ntm lstm --seeds 0

Others (`--max-minutes` bounds the wall time of each run):

    python benchmarks/memory_tasks.py --task associative_recall --models ntm lstm
    python benchmarks/memory_tasks.py --task repeat_copy --models dnc lstm
    python benchmarks/memory_tasks.py --task repeat_copy --models dnc --optimizer adam --learning-rate 1e-3
    python benchmarks/memory_tasks.py --smoke
"""

import argparse
import json
import pathlib
import sys
import time

import keras

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import common  # noqa: E402
import ntm_copy  # noqa: E402

RESULTS_FILE = "memory_tasks.jsonl"

# deepmind/dnc train.py defaults (hidden_size, memory_size, word_size,
# num_read_heads, num_write_heads, RMSProp learning_rate / epsilon,
# max_grad_norm, batch_size); eval_batches keeps 640 evaluation sequences.
DNC_SETTINGS = {
    "controller_units": 64,
    "memory_size": 16,
    "memory_width": 16,
    "read_heads": 4,
    "write_heads": 1,
    "optimizer": "rmsprop",
    "learning_rate": 1e-4,
    "clipnorm": 50.0,
    "batch_size": 16,
    "eval_batches": 40,
    # Not a deepmind/dnc setting: pad time to multiples of 32 (sequences of
    # up to 113 steps) so XLA compiles 4 shapes instead of 15.
    "time_multiple": 32,
}


class WallClockBudget(keras.callbacks.Callback):
    """Stops training at the end of the first epoch (evaluation) after
    `minutes` of wall time."""

    def __init__(self, minutes):
        super().__init__()
        self.minutes = minutes
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.start > 60 * self.minutes:
            self.stopped = True
            self.model.stop_training = True


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", choices=ntm_copy.TASKS, default=["copy"])
    parser.add_argument("--models", nargs="+", choices=ntm_copy.MODELS, default=["ntm", "lstm"],
                        help="model under test first; 'lstm' is the peer")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max-steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="also stop a run at the first evaluation after this much wall time")
    parser.add_argument("--output", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--dnc-settings", choices=("deepmind", "example"), default="deepmind",
                        help="DNC runs: deepmind/dnc's repeat-copy settings, or the example's flags")
    parser.add_argument("--smoke", action="store_true", help="tiny run, under a minute")
    args, rest = parser.parse_known_args(argv)
    # Everything else (model sizes, learning rate, --no-jit...) is the example's.
    example_argv = rest + (["--smoke"] if args.smoke else [])
    args.example = ntm_copy.parse_args(example_argv)
    # Example flags given on the command line win over DNC_SETTINGS.
    args.explicit = {
        token[2:].split("=")[0].replace("-", "_") for token in rest if token.startswith("--")
    }
    if args.smoke:
        args.max_steps = args.example.steps
        args.eval_every = args.example.eval_every
    return args


def emit(line, args):
    common.emit(line, None if args.smoke else RESULTS_FILE)
    if args.output:
        with open(args.output, "a") as f:
            f.write(json.dumps(line) + "\n")


def example_args(task, model_name, seed, args):
    """The example's flags for one run (DNC: deepmind/dnc's settings)."""
    example = argparse.Namespace(**vars(args.example))
    example.task, example.model, example.seed = task, model_name, seed
    if model_name == "dnc" and args.dnc_settings == "deepmind" and not args.smoke:
        for key, value in DNC_SETTINGS.items():
            if key not in args.explicit:
                setattr(example, key, value)
    return example


def run_one(task, model_name, seed, args):
    example = example_args(task, model_name, seed, args)
    keras.utils.set_random_seed(seed)
    train, evaluation, generalisation = ntm_copy.task_datasets(example)
    input_spec, target_spec, _ = train.element_spec
    model = ntm_copy.build_model(model_name, input_spec.shape[-1], target_spec.shape[-1], example)
    ntm_copy.compile_model(model, example)
    start = time.perf_counter()
    def progress(record):
        print(f"# {task} {model_name} seed {seed}: {json.dumps(record)}", file=sys.stderr, flush=True)

    budget = [WallClockBudget(args.max_minutes)] if args.max_minutes else []
    logger = ntm_copy.train_model(
        model, train, evaluation, args.max_steps, args.eval_every, args.threshold,
        verbose=0, log=progress, callbacks=budget,
    )
    wall = time.perf_counter() - start
    result = {
        "model": model_name,
        "params": model.count_params(),
        "curve": [[r["step"], round(r["seconds"], 1), r["val_bit_errors"]] for r in logger.records],
        "converged_step": logger.converged_at["step"] if logger.converged_at else None,
        "converged_s": logger.converged_at["seconds"] if logger.converged_at else None,
        "final_bit_errors": logger.records[-1]["val_bit_errors"],
        "wall_s": wall,
        "stopped_by_wall_clock": bool(budget and budget[0].stopped and not logger.converged_at),
        "generalisation_bit_errors": (
            ntm_copy.evaluate(model, generalisation) if generalisation is not None else None
        ),
    }
    return result


def _ratio(ours, peer, peer_budget):
    """peer / ours for costs (steps, seconds); the peer's budget stands in
    when it did not converge (then the ratio is a lower bound)."""
    if ours is None:
        return None, False
    if peer is None:
        return round(peer_budget / ours, 3), True
    return round(peer / ours, 3), False


def run_config(task, seed, ex, args):
    """The config recorded with a run's lines."""
    return {
        "task": task,
        "seed": seed,
        "batch_size": ex.batch_size,
        "optimizer": ex.optimizer,
        "learning_rate": ex.learning_rate,
        "clipnorm": ex.clipnorm,
        "max_steps": args.max_steps,
        "max_minutes": args.max_minutes,
        "eval_every": args.eval_every,
        "eval_sequences": ex.eval_batches * ex.batch_size,
        "threshold": args.threshold,
        "controller_units": ex.controller_units,
        "memory": [ex.memory_size, ex.memory_width],
        "heads": [ex.read_heads, ex.write_heads],
        "time_multiple": ex.time_multiple,
        "lstm_baseline": [ex.lstm_layers, ex.lstm_units],
        "jit_compile": not ex.no_jit,
        "smoke": args.smoke,
    }


def main(argv=None):
    args = parse_args(argv)
    for task in args.task:
        for seed in args.seeds:
            config = run_config(task, seed, example_args(task, args.models[0], seed, args), args)
            results = {}
            for model_name in args.models:
                result = run_one(task, model_name, seed, args)
                results[model_name] = result
                model_config = run_config(task, seed, example_args(task, model_name, seed, args), args)
                line = common.record(
                    "memory_tasks",
                    {**model_config, "model": model_name, "params": result["params"]},
                    "eval_curve",
                    None,
                    converged_step=result["converged_step"],
                    wall_s=round(result["wall_s"], 1),
                    stopped_by_wall_clock=result["stopped_by_wall_clock"],
                )
                line["ours"] = result["curve"]  # [step, seconds, eval wrong bits]
                emit(line, args)
            ours_name = args.models[0]
            peer_name = "lstm" if "lstm" in args.models[1:] else None
            ours = results[ours_name]
            peer = results.get(peer_name) if peer_name else None
            for metric, key, budget in (
                ("steps_to_converge", "converged_step", args.max_steps),
                ("wall_s_to_converge", "converged_s", peer["wall_s"] if peer else None),
                ("final_bit_errors", "final_bit_errors", None),
                ("generalisation_bit_errors", "generalisation_bit_errors", None),
            ):
                line = common.record(
                    "memory_tasks",
                    {**config, "model": ours_name},
                    metric,
                    ours[key],
                    peer_name=peer_name,
                    peer=peer[key] if peer else None,
                    higher_is_better=False,
                )
                if peer is not None and budget is not None:
                    line["ratio"], line["ratio_is_lower_bound"] = _ratio(ours[key], peer[key], budget)
                elif peer is not None and ours[key] is not None and peer[key] is not None:
                    # Fewer wrong bits is better; a perfect model counts as 1e-3.
                    line["ratio"] = round(peer[key] / max(ours[key], 1e-3), 3)
                emit(line, args)


if __name__ == "__main__":
    main()
