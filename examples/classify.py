"""Train a Transformer text classifier, export it for TF Serving.

By default it runs offline on a real corpus every Python installation has:
the docstrings of the standard library, labelled by module family (text,
datatypes, numeric, files, formats, internet, concurrency, development).
It trains a Transformer encoder with attention pooling
(`ka.models.transformer_classifier`), prints the test accuracy (and the
majority-class baseline) with sample predictions, writes a self-attention
heat map, exports a SavedModel whose `serving_default` takes raw strings and
returns label ids, label names and probabilities, and reloads it in a fresh
process that imports only TensorFlow.

Run (a few minutes on 2 CPU cores):

    python examples/classify.py

Other data:

    python examples/classify.py --data-dir reviews/        # reviews/<class>/*.txt
    python examples/classify.py --csv reviews.csv --text-column text --label-column label
    python examples/classify.py --tfds imdb_reviews --download

An efficient attention kernel in the encoder (`performer`, `linformer`,
`local`, `big_bird`; `--kernel-option NAME=VALUE` sets its layer's options;
the performer and linformer kernels form no token-by-token weights, so no
heat map is drawn for them):

    python examples/classify.py --attention-kernel big_bird --kernel-option block_size=16

Several devices (docs/distributed.md):

    python examples/classify.py --strategy mirrored   # every GPU (or logical CPU)

Smoke test (under a minute):

    python examples/classify.py --smoke --export-dir /tmp/classify_smoke

Outputs: saved_models/classify/<version>/, plots/classify/*.png and
classify_summary.json, TensorBoard logs in logs/classify.
"""

import argparse
import random
import time

import keras
import numpy as np
import tensorflow as tf

import common
import keras_attention as ka
from keras_attention import data as ka_data
from keras_attention.export import ClassifierPipeline

TFDS_NAMES = ("imdb_reviews",)
DEFAULTS = dict(
    epochs=20, batch_size=32, num_layers=2, hidden_dim=64, num_heads=4,
    intermediate_dim=128, max_length=96, vocabulary_size=4000,
)
SMOKE = dict(
    epochs=1, batch_size=16, num_layers=1, hidden_dim=16, num_heads=2,
    intermediate_dim=32, max_length=32, vocabulary_size=400, max_examples=256,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Run"):],
    )
    common.add_common_arguments(parser, "classify")
    data = parser.add_argument_group("data (default: standard-library docstrings)")
    data.add_argument("--csv", help="CSV file with a header row")
    data.add_argument("--text-column", default="text")
    data.add_argument("--label-column", default="label")
    data.add_argument("--tfds", choices=TFDS_NAMES, help="a TensorFlow Datasets corpus")
    data.add_argument("--max-examples", type=int, default=None,
                      help="use at most this many training examples")
    data.add_argument("--tokenizer", choices=("wordpiece", "character"), default="wordpiece")
    data.add_argument("--vocabulary-size", type=int, default=None)
    data.add_argument("--max-length", type=int, default=None, help="tokens per text (truncated)")
    model = parser.add_argument_group("model and training")
    model.add_argument("--num-layers", type=int, default=None)
    model.add_argument("--hidden-dim", type=int, default=None)
    model.add_argument("--num-heads", type=int, default=None)
    model.add_argument("--intermediate-dim", type=int, default=None)
    model.add_argument("--pooling", choices=("attention", "mean", "cls"), default="attention")
    model.add_argument("--dropout", type=float, default=0.1)
    common.add_attention_kernel_arguments(model)
    model.add_argument("--learning-rate", type=float, default=5e-4)
    model.add_argument("--patience", type=int, default=4,
                       help="early stopping on validation accuracy (best weights kept)")
    args = parser.parse_args(argv)
    if sum(bool(x) for x in (args.csv, args.tfds, args.data_dir and not args.tfds)) > 1:
        parser.error("--data-dir (a folder per class), --csv and --tfds are exclusive")
    for key, value in {**DEFAULTS, **(SMOKE if args.smoke else {})}.items():
        if getattr(args, key) is None or (args.smoke and key in SMOKE):
            setattr(args, key, value)
    args.kernel_arguments = common.attention_kernel_arguments(
        parser, args, args.max_length)
    return parser, args


def load_examples(args):
    """`(train, validation, test, label_names, description)`; each split a
    list of `(text, label)`."""
    if args.tfds:
        train_texts, train_labels, names = ka_data.load_imdb_reviews(
            "train", args.data_dir, download=args.download)
        test_texts, test_labels, _ = ka_data.load_imdb_reviews(
            "test", args.data_dir, download=args.download)
        train, valid, _ = ka_data.split_examples(
            list(zip(train_texts, train_labels)), 0.1, 0.0, seed=args.seed)
        test = list(zip(test_texts, test_labels))
        description = f"TFDS {args.tfds}"
    elif args.csv or args.data_dir:
        if args.csv:
            texts, labels, names = ka_data.load_text_classification_csv(
                args.csv, args.text_column, args.label_column)
            source = args.csv
        else:
            texts, labels, names = ka_data.load_text_classification_directory(args.data_dir)
            source = args.data_dir
        train, valid, test = ka_data.split_examples(
            list(zip(texts, labels)), 0.1, 0.1, seed=args.seed)
        description = source
    else:
        splits = [ka_data.docstring_classification_data(s) for s in ("train", "validation", "test")]
        names = splits[0][2]
        train, valid, test = (list(zip(t, l)) for t, l, _ in splits)
        description = "standard-library docstrings by module family"
    for split in (train, valid, test):  # mix the classes before any truncation
        random.Random(args.seed).shuffle(split)
    if args.max_examples:
        train = train[: args.max_examples]
        valid = valid[: max(args.max_examples // 4, 1)]
        test = test[: max(args.max_examples // 4, 1)]
    if not test:
        test = valid or train[:32]
    description += (f": {len(train)} train / {len(valid)} validation / {len(test)} "
                    f"test texts, {len(names)} classes")
    return train, valid, test, list(names), description


def build_classifier(args, tokenizer, num_classes):
    """Build and compile the classifier (inside the distribution strategy)."""

    def build_fn():
        return ka.models.transformer_classifier(
            vocabulary_size=tokenizer.vocabulary_size,
            sequence_length=tokenizer.sequence_length,
            num_classes=num_classes,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            num_heads=args.num_heads,
            intermediate_dim=args.intermediate_dim,
            pooling=args.pooling,
            dropout=args.dropout,
            **args.kernel_arguments,
        )

    def compile_kwargs():
        return dict(
            optimizer=keras.optimizers.AdamW(args.learning_rate, weight_decay=0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=args.jit_compile,
        )

    return common.build(args, build_fn, compile_kwargs)


def main(argv=None):
    parser, args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.time()
    train, valid, test, names, description = common.load_data(parser, lambda: load_examples(args))
    print(f"data: {description}")
    train_texts = [t for t, _ in train]
    tokenizer = common.load_data(parser, lambda: ka_data.fit_tokenizer(
        train_texts, kind=args.tokenizer, vocabulary_size=args.vocabulary_size,
        sequence_length=args.max_length, add_start_token=args.pooling == "cls"))
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size} tokens, "
          f"length {tokenizer.sequence_length}")

    def dataset(split, shuffle=False):
        texts, labels = [t for t, _ in split], [y for _, y in split]
        return ka_data.make_classification_dataset(
            texts, labels, tokenizer, args.batch_size, shuffle=shuffle, seed=args.seed)

    model = build_classifier(args, tokenizer, len(names))
    print(f"model: {model.count_params():,} parameters")
    if args.verbose:
        model.summary()
    extra = []
    if valid:
        extra.append(keras.callbacks.EarlyStopping(
            "val_accuracy", patience=args.patience, restore_best_weights=True))
    fit_start = time.time()
    history = model.fit(
        dataset(train, shuffle=True),
        validation_data=dataset(valid) if valid else None,
        epochs=args.epochs,
        callbacks=common.callbacks(args, extra),
        verbose=args.verbose,
    )
    train_seconds = time.time() - fit_start

    pipeline = ClassifierPipeline(model, tokenizer, names)
    test_texts = [t for t, _ in test]
    test_labels = np.asarray([y for _, y in test])
    predictions = np.concatenate([
        pipeline(test_texts[i : i + 256])["label_ids"] for i in range(0, len(test), 256)
    ])
    accuracy = float(np.mean(predictions == test_labels))
    majority = float(np.max(np.bincount(test_labels, minlength=len(names))) / len(test_labels))
    print(f"\ntest accuracy: {accuracy:.4f} on {len(test)} texts "
          f"(majority-class baseline {majority:.4f})")
    for text, label, predicted in list(zip(test_texts, test_labels, predictions))[:5]:
        snippet = " ".join(text.split())[:70]
        print(f"  {snippet!r}: predicted {names[predicted]}, true {names[label]}")

    # Self-attention of the last encoder block over a short test text.
    short = [t for t in test_texts if 6 <= len(t.split()) <= 16] or test_texts
    ids = tokenizer(tf.constant(short[:1])).numpy()
    tokens = common.token_strings(tokenizer, ids[0])[:40]
    plot_path = common.plot_attention_map(
        args, model, ids[:, : len(tokens)], "classify_attention.png", tokens, tokens)

    export_path = common.export(args, pipeline)
    samples = test_texts[:4] + [""]
    in_process = pipeline(samples)
    served, same = common.report_reload(
        export_path, {"text": samples}, in_process,
        ["label_ids", "label_names", "probabilities"])
    for text, name, probabilities in zip(samples, served["label_names"], served["probabilities"]):
        snippet = " ".join(text.split())[:50]
        print(f"  served: {snippet!r} -> {name} (p={max(probabilities):.2f})")

    logs = history.history
    summary = {
        "data": description,
        "parameters": model.count_params(),
        **args.kernel_arguments,
        "epochs_run": len(logs["loss"]),
        "train_seconds": round(train_seconds, 1),
        "best_val_accuracy": max(logs["val_accuracy"]) if "val_accuracy" in logs else None,
        "test_accuracy": accuracy,
        "majority_baseline": majority,
        "test_texts": len(test),
        "attention_png": plot_path,
        "export": export_path,
        "served_label_names": served["label_names"],
        "served_equals_in_process": same,
        "total_seconds": round(time.time() - started, 1),
    }
    return common.summarize(summary, args, "classify")


if __name__ == "__main__":
    main()
