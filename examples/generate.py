"""Train a GPT-style causal language model, generate text, export it for TF Serving.

By default it runs offline on a real corpus every Python installation has:
the docstrings of the standard library (documents separated by an `[END]`
token). It trains a decoder-only Transformer (`ka.models.causal_lm`,
pre-LN, tied embeddings) at the character level, prints the validation
perplexity (per token) and sampled continuations of a few prompts, writes a
causal self-attention heat map, exports a SavedModel whose
`serving_default` takes raw prompts and a `max_new_tokens` budget per prompt
and returns the continuations (tokenizer and KV-cached sampling inside the
graph), and reloads it in a fresh process that imports only TensorFlow.

Run (about 10 minutes on 2 CPU cores):

    python examples/generate.py

Other data:

    python examples/generate.py --text-files my_corpus/ notes.txt
    python examples/generate.py --tfds tiny_shakespeare --download

Performer, sliding-window (local) or BigBird self-attention; each keeps
a KV cache, so generation and the export work as with exact attention
(`--kernel-option NAME=VALUE` sets the kernel layer's options; BigBird's
`sequence_length` is `--sequence-length`, one block pattern for training
and generation; Performer draws no heat map):

    python examples/generate.py --attention-kernel local --kernel-option window_size=32
    python examples/generate.py --attention-kernel big_bird --kernel-option block_size=16

Several devices (docs/distributed.md):

    python examples/generate.py --strategy mirrored   # every GPU (or logical CPU)

Smoke test (under a minute):

    python examples/generate.py --smoke --export-dir /tmp/generate_smoke

Outputs: saved_models/generate/<version>/, plots/generate/*.png and
generate_summary.json, TensorBoard logs in logs/generate.
"""

import argparse
import math
import time

import keras
import numpy as np

import common
import keras_attention as ka
from keras_attention import data as ka_data
from keras_attention.export import GeneratorPipeline
from keras_attention.models.model_parts import CAUSAL_DECODING_KERNELS

TFDS_NAMES = ("tiny_shakespeare",)
DEFAULTS = dict(
    epochs=5, batch_size=32, num_layers=2, hidden_dim=128, num_heads=4,
    intermediate_dim=512, sequence_length=128, vocabulary_size=2000,
)
SMOKE = dict(
    epochs=1, batch_size=16, num_layers=1, hidden_dim=16, num_heads=2,
    intermediate_dim=32, sequence_length=32, vocabulary_size=200, max_tokens=8000,
)
PROMPTS = ("Return the ", "Open the file", "This module provides ", "Raise ")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Run"):],
    )
    common.add_common_arguments(parser, "generate")
    data = parser.add_argument_group("data (default: standard-library docstrings)")
    data.add_argument("--text-files", nargs="+", default=None,
                      help="plain-text files or directories of .txt files")
    data.add_argument("--tfds", choices=TFDS_NAMES, help="a TensorFlow Datasets corpus")
    data.add_argument("--tokenizer", choices=("character", "wordpiece"), default="character")
    data.add_argument("--vocabulary-size", type=int, default=None,
                      help="most tokens (characters or word pieces) in the vocabulary")
    data.add_argument("--max-tokens", type=int, default=None,
                      help="use at most this many training characters")
    model = parser.add_argument_group("model and training")
    model.add_argument("--sequence-length", type=int, default=None,
                       help="training window and longest prompt + continuation")
    model.add_argument("--num-layers", type=int, default=None)
    model.add_argument("--hidden-dim", type=int, default=None)
    model.add_argument("--num-heads", type=int, default=None)
    model.add_argument("--intermediate-dim", type=int, default=None)
    model.add_argument("--dropout", type=float, default=0.0)
    common.add_attention_kernel_arguments(model, CAUSAL_DECODING_KERNELS)
    model.add_argument("--learning-rate", type=float, default=2e-3)
    decode = parser.add_argument_group("generation (samples and the export)")
    decode.add_argument("--decode", choices=("sample", "greedy", "beam"), default="sample")
    decode.add_argument("--temperature", type=float, default=0.8)
    decode.add_argument("--top-k", type=int, default=20)
    decode.add_argument("--top-p", type=float, default=None)
    decode.add_argument("--max-new-tokens", type=int, default=None,
                        help="tokens generated per prompt (default: all the room left)")
    decode.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    args = parser.parse_args(argv)
    if args.text_files and args.tfds:
        parser.error("--text-files and --tfds are exclusive")
    for key, value in {**DEFAULTS, **(SMOKE if args.smoke else {})}.items():
        if getattr(args, key) is None or (args.smoke and key in SMOKE):
            setattr(args, key, value)
    args.kernel_arguments = common.attention_kernel_arguments(
        parser, args, args.sequence_length, causal_decoding=True)
    check_decoding_flags(parser, args, args.vocabulary_size)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens: expected a positive int, received {args.max_new_tokens}")
    return parser, args


def check_decoding_flags(parser, args, vocabulary_size=None):
    """`--temperature / --top-k / --top-p` as the pipeline will check them."""
    common.check_decoding_flags(
        parser, "--temperature / --top-k / --top-p", vocabulary_size,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)


def _split_lines(document, fraction=0.9):
    """First `fraction` of the lines, and the rest."""
    lines = document.splitlines(keepends=True)
    cut = max(1, int(len(lines) * fraction))
    return "".join(lines[:cut]), "".join(lines[cut:])


def load_documents(args):
    """`(train documents, validation documents, description)`."""
    if args.tfds:
        train = [ka_data.load_tiny_shakespeare("train", args.data_dir, download=args.download)]
        valid = [ka_data.load_tiny_shakespeare("validation", args.data_dir, download=args.download)]
        description = f"TFDS {args.tfds}"
    elif args.text_files:
        documents = ka_data.load_text_files(args.text_files)
        halves = [_split_lines(d) for d in documents]
        train = [a for a, _ in halves if a.strip()]
        valid = [b for _, b in halves if b.strip()]
        if not valid:
            raise common.DataError(
                f"{args.text_files[0]}: too little text to hold out a validation "
                "part (the last 10% of the lines of each file)")
        description = ", ".join(args.text_files)
    else:
        corpus = ka_data.stdlib_docstrings()
        train = [d.text for d in corpus if d.split == "train"]
        valid = [d.text for d in corpus if d.split == "validation"]
        description = "standard-library docstrings"
    if args.max_tokens:
        train = _truncate(train, args.max_tokens)
        valid = _truncate(valid, max(args.max_tokens // 4, 4 * args.sequence_length))
    sizes = f"{sum(map(len, train)):,} / {sum(map(len, valid)):,} characters"
    return train, valid, f"{description}: {len(train)} train / {len(valid)} validation documents, {sizes}"


def _truncate(documents, characters):
    kept, total = [], 0
    for document in documents:
        if total >= characters:
            break
        kept.append(document[: characters - total])
        total += len(kept[-1])
    return kept


def build_language_model(args, tokenizer):
    """Build and compile the language model (inside the distribution strategy)."""

    def build_fn():
        return ka.models.causal_lm(
            vocabulary_size=tokenizer.vocabulary_size,
            sequence_length=args.sequence_length,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            num_heads=args.num_heads,
            intermediate_dim=args.intermediate_dim,
            dropout=args.dropout,
            **args.kernel_arguments,
        )

    def compile_kwargs():
        return dict(
            optimizer=keras.optimizers.AdamW(args.learning_rate, weight_decay=0.01,
                                             global_clipnorm=1.0),
            loss=ka.training.MaskedSparseCategoricalCrossentropy(),
            metrics=[ka.training.MaskedAccuracy()],
            jit_compile=args.jit_compile,
        )

    return common.build(args, build_fn, compile_kwargs)


def main(argv=None):
    parser, args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.time()
    train, valid, description = common.load_data(parser, lambda: load_documents(args))
    print(f"data: {description}")
    tokenizer = common.load_data(parser, lambda: ka_data.fit_tokenizer(
        train, kind=args.tokenizer, vocabulary_size=args.vocabulary_size,
        sequence_length=args.sequence_length, lowercase=args.tokenizer == "wordpiece"))
    print(f"tokenizer: {type(tokenizer).__name__}, {tokenizer.vocabulary_size} tokens, "
          f"windows of {tokenizer.sequence_length}")
    check_decoding_flags(parser, args, tokenizer.vocabulary_size)  # --top-k vs the vocabulary
    train_ds, valid_ds = common.load_data(parser, lambda: (
        ka_data.make_language_model_dataset(
            train, tokenizer, args.batch_size, shuffle=True, seed=args.seed,
            document_separator=True),
        ka_data.make_language_model_dataset(
            valid, tokenizer, args.batch_size, document_separator=True),
    ))

    model = build_language_model(args, tokenizer)
    print(f"model: {model.count_params():,} parameters")
    if args.verbose:
        model.summary()
    fit_start = time.time()
    history = model.fit(
        train_ds, validation_data=valid_ds, epochs=args.epochs,
        callbacks=common.callbacks(args), verbose=args.verbose,
    )
    train_seconds = time.time() - fit_start
    loss = model.evaluate(valid_ds, verbose=0, return_dict=True)["loss"]
    perplexity = math.exp(loss)
    print(f"\nvalidation perplexity: {perplexity:.3f} per {args.tokenizer} token "
          f"(cross-entropy {loss:.4f} nats)")

    pipeline = GeneratorPipeline(
        model, tokenizer,
        prompt_length=args.sequence_length // 2,
        start_token_id=tokenizer.end_token_id,  # documents start after [END]
        strategy=args.decode, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed,
    )
    budget = args.max_new_tokens or args.sequence_length
    prompts = list(args.prompts)
    in_process = pipeline(prompts, [budget] * len(prompts))
    for prompt, continuation in zip(prompts, common.as_text(in_process["continuations"])):
        print(f"  {prompt!r} -> {continuation!r}")

    # Causal self-attention of the last block over the first prompt and its continuation.
    text = prompts[0] + common.as_text(in_process["continuations"])[0]
    pieces = tokenizer.tokenize_ragged(text).numpy()[: min(39, args.sequence_length - 1)]
    ids = np.asarray([[tokenizer.end_token_id, *pieces]], "int32")  # as generated
    tokens = common.token_strings(tokenizer, ids[0])
    plot_path = common.plot_attention_map(
        args, model, ids[:, : len(tokens)], "generate_attention.png", tokens, tokens)

    export_path = common.export(args, pipeline)
    served, same = common.report_reload(
        export_path, {"prompt": prompts, "max_new_tokens": [budget] * len(prompts)},
        in_process, ["continuations"])
    for prompt, continuation in zip(prompts, served["continuations"]):
        print(f"  served: {prompt!r} -> {continuation!r}")

    logs = history.history
    summary = {
        "data": description,
        "parameters": model.count_params(),
        **args.kernel_arguments,
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "final_loss": logs["loss"][-1],
        "validation_perplexity": perplexity,
        "perplexity_unit": f"per {args.tokenizer} token",
        "attention_png": plot_path,
        "export": export_path,
        "served_continuations": served["continuations"],
        "served_equals_in_process": same,
        "total_seconds": round(time.time() - started, 1),
    }
    return common.summarize(summary, args, "generate")


if __name__ == "__main__":
    main()
