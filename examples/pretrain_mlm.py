"""Pre-train a BERT-style masked language model, export a fill-mask service.

By default it runs offline on a real corpus every Python installation has:
the docstrings of the standard library. It trains a bidirectional
Transformer encoder (`ka.models.masked_lm`) with BERT's corruption (15% of
the tokens selected; 80% of those become `[MASK]`, 10% a random token, 10%
stay), prints the validation perplexity and accuracy on the selected
tokens and a few filled-in sentences, writes a self-attention heat map,
exports a SavedModel whose `serving_default` takes raw strings with
`[MASK]` markers and returns them filled in (with the predicted token and
its probability per mask), and reloads it in a fresh process that imports
only TensorFlow.

Run (about 5 minutes on 2 CPU cores):

    python examples/pretrain_mlm.py

Other data (paragraphs of your text files are the examples):

    python examples/pretrain_mlm.py --text-files my_corpus/

An efficient attention kernel in the encoder (`performer`, `linformer`,
`local`, `big_bird`; `--kernel-option NAME=VALUE` sets its layer's options;
the performer and linformer kernels form no token-by-token weights, so no
heat map is drawn for them):

    python examples/pretrain_mlm.py --attention-kernel local --kernel-option window_size=16

Several devices (docs/distributed.md):

    python examples/pretrain_mlm.py --strategy mirrored   # every GPU (or logical CPU)

Smoke test (under a minute):

    python examples/pretrain_mlm.py --smoke --export-dir /tmp/mlm_smoke

Outputs: saved_models/pretrain_mlm/<version>/, plots/pretrain_mlm/*.png and
pretrain_mlm_summary.json, TensorBoard logs in logs/pretrain_mlm.
"""

import argparse
import math
import re
import time

import keras
import tensorflow as tf

import common
import keras_attention as ka
from keras_attention import data as ka_data
from keras_attention.export import FillMaskPipeline

DEFAULTS = dict(
    epochs=15, batch_size=32, num_layers=2, hidden_dim=128, num_heads=4,
    intermediate_dim=256, max_length=64, vocabulary_size=3000,
)
SMOKE = dict(
    epochs=1, batch_size=16, num_layers=1, hidden_dim=16, num_heads=2,
    intermediate_dim=32, max_length=32, vocabulary_size=300, max_examples=128,
)
SENTENCES = (
    "Return the [MASK] of the list.",
    "Open the [MASK] and return a stream.",
    "Raise ValueError if the [MASK] is not valid.",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Run"):],
    )
    common.add_common_arguments(parser, "pretrain_mlm")
    data = parser.add_argument_group("data (default: standard-library docstrings)")
    data.add_argument("--text-files", nargs="+", default=None,
                      help="plain-text files or directories; each paragraph is an example")
    data.add_argument("--max-examples", type=int, default=None)
    data.add_argument("--vocabulary-size", type=int, default=None)
    data.add_argument("--max-length", type=int, default=None, help="tokens per example (truncated)")
    data.add_argument("--mask-rate", type=float, default=0.15)
    model = parser.add_argument_group("model and training")
    model.add_argument("--num-layers", type=int, default=None)
    model.add_argument("--hidden-dim", type=int, default=None)
    model.add_argument("--num-heads", type=int, default=None)
    model.add_argument("--intermediate-dim", type=int, default=None)
    model.add_argument("--dropout", type=float, default=0.1)
    common.add_attention_kernel_arguments(model)
    model.add_argument("--learning-rate", type=float, default=1e-3)
    model.add_argument("--sentences", nargs="+", default=list(SENTENCES),
                       help="texts with [MASK] markers to fill in at the end")
    args = parser.parse_args(argv)
    for key, value in {**DEFAULTS, **(SMOKE if args.smoke else {})}.items():
        if getattr(args, key) is None or (args.smoke and key in SMOKE):
            setattr(args, key, value)
    args.kernel_arguments = common.attention_kernel_arguments(
        parser, args, args.max_length)
    return parser, args


def load_texts(args):
    """`(train texts, validation texts, description)`."""
    if args.text_files:
        paragraphs = [
            p.strip()
            for document in ka_data.load_text_files(args.text_files)
            for p in re.split(r"\n\s*\n", document)
            if p.strip()
        ]
        train, valid, _ = ka_data.split_examples(paragraphs, 0.1, 0.0, seed=args.seed)
        if not valid:
            raise common.DataError(
                f"{args.text_files[0]}: too few paragraphs to hold out a "
                "validation set (10%); separate paragraphs by blank lines")
        description = ", ".join(args.text_files)
    else:
        corpus = ka_data.stdlib_docstrings()
        train = [d.text for d in corpus if d.split == "train"]
        valid = [d.text for d in corpus if d.split == "validation"]
        description = "standard-library docstrings"
    if args.max_examples:
        train = train[: args.max_examples]
        valid = valid[: max(args.max_examples // 4, 1)]
    return train, valid, f"{description}: {len(train)} train / {len(valid)} validation texts"


def build_masked_lm(args, tokenizer):
    """Build and compile the masked LM (inside the distribution strategy)."""

    def build_fn():
        return ka.models.masked_lm(
            vocabulary_size=tokenizer.vocabulary_size,
            sequence_length=tokenizer.sequence_length,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            num_heads=args.num_heads,
            intermediate_dim=args.intermediate_dim,
            dropout=args.dropout,
            **args.kernel_arguments,
        )

    def compile_kwargs():
        # The dataset yields (ids, targets, weights): the loss and accuracy
        # count only the selected tokens (weight 1).
        return dict(
            optimizer=keras.optimizers.AdamW(args.learning_rate, weight_decay=0.01,
                                             global_clipnorm=1.0),
            loss=ka.training.MaskedSparseCategoricalCrossentropy(),
            weighted_metrics=[ka.training.MaskedAccuracy()],
            jit_compile=args.jit_compile,
        )

    return common.build(args, build_fn, compile_kwargs)


def main(argv=None):
    parser, args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.time()
    train, valid, description = common.load_data(parser, lambda: load_texts(args))
    print(f"data: {description}")
    tokenizer = common.load_data(parser, lambda: ka_data.fit_tokenizer(
        train, kind="wordpiece", vocabulary_size=args.vocabulary_size,
        sequence_length=args.max_length))
    print(f"tokenizer: WordPieceTokenizer, {tokenizer.vocabulary_size} tokens, "
          f"length {tokenizer.sequence_length}")
    train_ds = ka_data.make_masked_lm_dataset(
        train, tokenizer, args.batch_size, args.mask_rate, shuffle=True, seed=args.seed)
    valid_ds = ka_data.make_masked_lm_dataset(
        valid, tokenizer, args.batch_size, args.mask_rate, seed=args.seed + 1)

    model = build_masked_lm(args, tokenizer)
    print(f"model: {model.count_params():,} parameters")
    if args.verbose:
        model.summary()
    fit_start = time.time()
    history = model.fit(
        train_ds, validation_data=valid_ds, epochs=args.epochs,
        callbacks=common.callbacks(args), verbose=args.verbose,
    )
    train_seconds = time.time() - fit_start
    results = model.evaluate(valid_ds, verbose=0, return_dict=True)
    perplexity = math.exp(results["loss"])
    accuracy = results["masked_accuracy"]
    print(f"\nvalidation (selected tokens only): perplexity {perplexity:.2f}, "
          f"accuracy {accuracy:.4f}")

    pipeline = FillMaskPipeline(model, tokenizer)
    sentences = list(args.sentences)
    in_process = pipeline(sentences)
    for sentence, filled in zip(sentences, common.as_text(in_process["filled"])):
        print(f"  {sentence!r} -> {filled!r}")

    # Self-attention of the last encoder block over the first sentence.
    ids = pipeline.token_ids(tf.constant(sentences[:1])).numpy()
    tokens = common.token_strings(tokenizer, ids[0])
    plot_path = common.plot_attention_map(
        args, model, ids[:, : len(tokens)], "pretrain_mlm_attention.png", tokens, tokens)

    export_path = common.export(args, pipeline)
    served, same = common.report_reload(
        export_path, {"text": sentences}, in_process, ["filled", "mask_probabilities"])
    for sentence, filled in zip(sentences, served["filled"]):
        print(f"  served: {sentence!r} -> {filled!r}")

    logs = history.history
    summary = {
        "data": description,
        "parameters": model.count_params(),
        **args.kernel_arguments,
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "final_loss": logs["loss"][-1],
        "validation_perplexity": perplexity,
        "validation_masked_accuracy": accuracy,
        "attention_png": plot_path,
        "export": export_path,
        "served_filled": served["filled"],
        "served_equals_in_process": same,
        "total_seconds": round(time.time() - started, 1),
    }
    return common.summarize(summary, args, "pretrain_mlm")


if __name__ == "__main__":
    main()
