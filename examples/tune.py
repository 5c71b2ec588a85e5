"""Search hyper-parameters with keras-tuner, offline, and keep the best model.

Searches one of the package's HyperModels with `RandomSearch` or
`Hyperband`:

- `classifier`: `TransformerClassifierHyperModel` on the standard-library
  docstrings labelled by module family (offline; `--tfds imdb_reviews` for
  IMDB);
- `translator`: `TransformerTranslatorHyperModel` on generated dates,
  words -> ISO (offline; `--tfds ted_hrlr_translate` for TED pt -> en);
- `memory`: `MemoryHyperModel` (NTM or DNC) on the copy task (offline).

It prints every trial, then the best trial and its hyper-parameters,
reloads the best model (from the tuner's checkpoint, then from a `.keras`
file in safe mode) and evaluates it on held-out test data, and exports it
for TF Serving under `--export-dir/<version>/` (raw strings in for the
Transformers). The search resumes where it stopped when run again with the
same `--directory` (`--overwrite` starts afresh).

Run (minutes on 2 CPU cores):

    python examples/tune.py --model classifier --tuner hyperband
    python examples/tune.py --model translator --tuner random --max-trials 6
    python examples/tune.py --model memory --tuner random --max-trials 4

Several devices (see docs/distributed.md):

    python examples/tune.py --model classifier --strategy mirrored

Smoke test (under a minute: two tiny trials, evaluation, export):

    python examples/tune.py --smoke --export-dir /tmp/tune_smoke
"""

import argparse
import os
import tempfile
import time

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from keras_attention import data as ka_data
from keras_attention.distribute import STRATEGY_NAMES
from keras_attention.distribute import check_fit_strategy
from keras_attention.distribute import get_strategy
from keras_attention.export import ClassifierPipeline
from keras_attention.export import TranslatorPipeline
from keras_attention.export import export_for_serving
from keras_attention.tuning import MemoryHyperModel
from keras_attention.tuning import TransformerClassifierHyperModel
from keras_attention.tuning import TransformerTranslatorHyperModel

OBJECTIVES = {
    "classifier": keras_tuner.Objective("val_accuracy", "max"),
    "translator": keras_tuner.Objective("val_loss", "min"),
    "memory": keras_tuner.Objective("val_bit_errors_per_sequence", "min"),
}
TFDS_NAMES = {"classifier": ("imdb_reviews",), "translator": ("ted_hrlr_translate",)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Run"):],
    )
    parser.add_argument("--model", choices=tuple(OBJECTIVES), default="classifier")
    parser.add_argument("--tuner", choices=("random", "hyperband"), default="random")
    parser.add_argument("--max-trials", type=int, default=8, help="RandomSearch trials")
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs per RandomSearch trial; Hyperband's max_epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--directory", default="tuning",
                        help="where the tuner keeps its trials (resumed on a rerun)")
    parser.add_argument("--overwrite", action="store_true", help="start the search afresh")
    parser.add_argument("--strategy", choices=STRATEGY_NAMES, default="default",
                        help="tf.distribute strategy the trials train under (one "
                             "machine: keras-tuner trains with Keras fit)")
    parser.add_argument("--tfds", default=None,
                        help="real data: imdb_reviews (classifier), ted_hrlr_translate (translator)")
    parser.add_argument("--data-dir", default=None, help="with --tfds: TFDS data directory")
    parser.add_argument("--download", action="store_true",
                        help="with --tfds: download and prepare the dataset if missing")
    parser.add_argument("--export-dir", default=None,
                        help="TF Serving model root (default saved_models/tune_<model>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run (under a minute): two trials, evaluation, export")
    args = parser.parse_args(argv)
    if args.tfds is not None and args.tfds not in TFDS_NAMES.get(args.model, ()):
        parser.error(f"--tfds {args.tfds} is not available for --model {args.model}; "
                     f"choose from {TFDS_NAMES.get(args.model, ())}")
    for name in ("max_trials", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    try:
        check_fit_strategy(args.strategy)
    except ValueError as error:
        parser.error(f"keras-tuner trains with Keras fit. {error}; tune on one "
                     "machine, then train the best configuration on several hosts")
    if args.smoke:
        args.max_trials, args.epochs, args.batch_size = 2, 1, 16
    args.export_dir = args.export_dir or os.path.join("saved_models", f"tune_{args.model}")
    return parser, args


# ----------------------------------------------------------------------
# Data and search spaces


def kernel_option_space(length):
    """Options of the efficient kernels, scaled to the padded `length` so
    that each is really sparse or low-rank there (the layers' defaults, a
    window of 128 and blocks of 64, would be exact attention at this
    length); Linformer and BigBird also get `length` itself from the
    HyperModel. Local attention may also make the first token (the start
    token the classifier pools) global."""
    return {
        "performer": {"num_random_features": [64, 256]},
        "linformer": {"projection_dim": [max(1, length // 8), max(1, length // 4)]},
        # A global first token: Longformer's global attention on [CLS].
        "local": {"window_size": [max(1, length // 8), max(1, length // 4)],
                  "num_global_tokens": [0, 1]},
        "big_bird": {"block_size": [max(1, length // 16), max(1, length // 8)]},
    }


def classifier_task(args):
    if args.tfds:
        splits = [ka_data.load_imdb_reviews(s, data_dir=args.data_dir, download=args.download)
                  for s in ("train[:90%]", "train[90%:]", "test")]
    else:
        splits = [ka_data.docstring_classification_data(s)
                  for s in ("train", "validation", "test")]
    names = splits[0][2]
    limit = 256 if args.smoke else None
    splits = [(list(texts)[:limit], np.asarray(labels)[:limit]) for texts, labels, _ in splits]
    tokenizer = ka_data.fit_tokenizer(
        splits[0][0], kind="wordpiece", vocabulary_size=400 if args.smoke else 4000,
        sequence_length=32 if args.smoke else 96, add_start_token=True)

    def dataset(texts, labels):
        return ka_data.make_classification_dataset(texts, labels, tokenizer, args.batch_size)

    if args.smoke:
        space = dict(num_layers=1, num_heads=2, key_dim=[8, 16], intermediate_multiplier=2,
                     attention_kernel=["dot_product", "performer"],
                     attention_kernel_options={"performer": {"num_random_features": [8, 16]}},
                     position_scheme=[None, "rotary"], warmup_steps=20, pooling=["cls", "mean"],
                     learning_rate=(1e-3, 3e-3))
    else:
        space = dict(num_layers=[1, 2], num_heads=[2, 4], key_dim=[16, 32],
                     attention_kernel_options=kernel_option_space(tokenizer.sequence_length),
                     warmup_steps=[100, 400])  # every attention kernel (the default)
    hypermodel = TransformerClassifierHyperModel(
        vocabulary_size=tokenizer.vocabulary_size, sequence_length=tokenizer.sequence_length,
        num_classes=len(names), **space)
    train, valid, test = (dataset(*split) for split in splits)
    pipeline = lambda model: ClassifierPipeline(model, tokenizer, names)  # noqa: E731
    return hypermodel, train, valid, test, pipeline


def translator_task(args):
    if args.tfds:
        pairs = [ka_data.tfds_translation_pairs(ka_data.load_ted_hrlr_pt_en(
            s, data_dir=args.data_dir, download=args.download)) for s in
            ("train", "validation", "test")]
        data = ka_data.prepare_translation_data(*pairs, batch_size=args.batch_size)
    else:
        sizes = (256, 64, 64) if args.smoke else (8000, 500, 500)
        data = ka_data.date_translation_task(*sizes, batch_size=args.batch_size, seed=args.seed)
    source, target = data.source_tokenizer, data.target_tokenizer

    def as_dict(dataset):
        return dataset.map(lambda x, y: ({"source_ids": x[0], "target_ids": x[1]}, y))

    test = ka_data.make_translation_dataset(data.test_pairs, source, target, args.batch_size)
    length = max(source.sequence_length, target.sequence_length)
    if args.smoke:
        space = dict(num_layers=1, num_heads=2, key_dim=[8, 16], intermediate_multiplier=2,
                     norm_first=[False, True], attention_kernel=["dot_product", "local"],
                     attention_kernel_options={"local": {"window_size": [2, 4]}},
                     position_scheme=None, warmup_steps=20, learning_rate=(1e-3, 3e-3))
    else:
        space = dict(num_layers=[1, 2, 3], num_heads=[2, 4], key_dim=[16, 32],
                     attention_kernel_options=kernel_option_space(length),
                     warmup_steps=[200, 800])  # every encoder attention kernel
    hypermodel = TransformerTranslatorHyperModel(
        vocabulary_size=source.vocabulary_size, target_vocabulary_size=target.vocabulary_size,
        sequence_length=length, **space)
    pipeline = lambda model: TranslatorPipeline(  # noqa: E731
        model, source, target, strategy="greedy")
    return (hypermodel, as_dict(data.train_dataset), as_dict(data.validation_dataset),
            as_dict(test), pipeline)


def memory_task(args):
    bits = 8
    lengths = dict(min_length=1, max_length=3 if args.smoke else 10)
    batches = (8, 2, 2) if args.smoke else (100, 10, 10)
    train, valid, test = (
        ka_data.copy_task(batch_size=args.batch_size, num_bits=bits, num_batches=n,
                          seed=args.seed + i, **lengths)
        for i, n in enumerate(batches))
    if args.smoke:
        space = dict(cell=["ntm", "dnc"], controller_units=16, memory_size=8, memory_width=8,
                     num_read_heads=1, learning_rate=(1e-3, 3e-3))
    else:
        space = dict(controller_units=[64, 100], memory_size=[16, 32], memory_width=[8, 16])
    hypermodel = MemoryHyperModel(input_dim=bits + 1, output_dim=bits, **space)
    return hypermodel, train, valid, test, None


TASKS = {"classifier": classifier_task, "translator": translator_task, "memory": memory_task}


# ----------------------------------------------------------------------
# Search


def make_tuner(args, hypermodel, strategy):
    common = dict(
        objective=OBJECTIVES[args.model],
        directory=args.directory,
        project_name=f"{args.model}_{args.tuner}" + ("_smoke" if args.smoke else ""),
        seed=args.seed,
        overwrite=args.overwrite or args.smoke,
        distribution_strategy=None if strategy is tf.distribute.get_strategy() else strategy,
    )
    if args.tuner == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=args.max_trials, **common)
    # Hyperband trains up to max_epochs; with --smoke, max_epochs=2 and
    # factor=3 make one bracket of two trials.
    max_epochs = 2 if args.smoke else max(args.epochs, 2)
    return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, factor=3, **common)


def describe(trial):
    values = ", ".join(f"{k}={v}" for k, v in trial.hyperparameters.values.items()
                       if not k.startswith("tuner/"))
    return f"trial {trial.trial_id}: score {trial.score:.4f} ({values})"


def main(argv=None):
    parser, args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.time()
    strategy = get_strategy(args.strategy)  # before any op: see get_strategy
    try:
        hypermodel, train, valid, test, pipeline = TASKS[args.model](args)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(f"searching {type(hypermodel).__name__} with {args.tuner} under "
          f"{type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))")
    tuner = make_tuner(args, hypermodel, strategy)
    tuner.search_space_summary()
    search_kwargs = {"epochs": args.epochs} if args.tuner == "random" else {}
    tuner.search(train, validation_data=valid, verbose=0 if args.smoke else 2, **search_kwargs)

    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    print(f"\n{len(trials)} trial(s), objective {tuner.oracle.objective.name} "
          f"({tuner.oracle.objective.direction}):")
    for trial in trials:
        print("  " + describe(trial))
    best_trial = trials[0]
    print(f"\nbest {describe(best_trial)}")
    for name, value in tuner.get_best_hyperparameters(1)[0].values.items():
        if not name.startswith("tuner/"):  # Hyperband's bookkeeping
            print(f"  {name} = {value}")

    best = tuner.get_best_models(num_models=1)[0]
    results = best.evaluate(test, verbose=0, return_dict=True)
    path = os.path.join(tempfile.mkdtemp(), "best.keras")
    best.save(path)
    reloaded = keras.saving.load_model(path)
    again = reloaded.evaluate(test, verbose=0, return_dict=True)
    print("\nbest model on the test data: "
          + ", ".join(f"{k} {v:.4f}" for k, v in results.items())
          + f"\nreloaded from {path}: "
          + ", ".join(f"{k} {v:.4f}" for k, v in again.items()))
    served = reloaded if pipeline is None else pipeline(reloaded)
    version = 1 + max([int(v) for v in os.listdir(args.export_dir) if v.isdigit()]
                      if os.path.isdir(args.export_dir) else [], default=0)
    exported = export_for_serving(served, args.export_dir, version=version)
    print(f"exported: {exported}\ndone in {time.time() - started:.0f}s")
    return results


if __name__ == "__main__":
    main()
