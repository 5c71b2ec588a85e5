"""Train a Transformer translator, measure BLEU, export it for TF Serving.

The main job of keras_attention. By default it runs offline: it learns to
translate dates written out in English words into ISO 8601
("the third of march two thousand and five" -> "2005-03-03"; several word
orders, year styles and an optional weekday; validation and test dates never
occur in training). It trains the encoder-decoder Transformer of Vaswani et
al. 2017 (label smoothing 0.1, Adam with the warm-up schedule), prints
the corpus BLEU (sacrebleu, 13a) and exact match of beam-search
translations on the test split with sample translations, writes a
cross-attention heat map, exports a SavedModel whose `serving_default`
takes raw source strings and returns translated strings (tokenizers and beam
search inside the graph), and reloads it in a fresh process that imports
only TensorFlow to translate a few sentences.

Run (about 10 minutes on 2 CPU cores):

    python examples/translate.py

Other data:

    python examples/translate.py --tsv fra.txt --max-pairs 50000   # Tatoeba/Anki: source<TAB>target
    python examples/translate.py --tfds ted_hrlr_translate/pt_to_en --download

An efficient attention kernel in the encoder (any: Linformer and BigBird
get the padded length as their `sequence_length`, so the export serves
sources of any length) and in the decoder's self-attention (one with
cached decoding: `performer`, `local`, `big_bird`; the cross-attention
stays exact); `--kernel-option` / `--decoder-kernel-option NAME=VALUE` set
the kernel layers' options; the heat map is the decoder's cross-attention:

    python examples/translate.py --attention-kernel local --kernel-option window_size=8
    python examples/translate.py --decoder-attention-kernel local \
        --decoder-kernel-option window_size=4

Several devices (docs/distributed.md):

    python examples/translate.py --strategy mirrored   # every GPU (or logical CPU)

Smoke test (under a minute, still trains, evaluates, plots, exports, reloads):

    python examples/translate.py --smoke --export-dir /tmp/translate_smoke

Outputs: saved_models/translate/<version>/ (SavedModel + assets.extra/model.keras),
plots/translate/*.png and translate_summary.json, TensorBoard logs in logs/translate.
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import common
import keras_attention as ka
from keras_attention import data as ka_data
from keras_attention.export import TranslatorPipeline
from keras_attention.models.model_parts import CAUSAL_DECODING_KERNELS

TFDS_NAMES = ("ted_hrlr_translate/pt_to_en",)
DEFAULTS = dict(
    epochs=3, batch_size=64, num_layers=2, hidden_dim=128, num_heads=4,
    intermediate_dim=256, num_train=20000, num_validation=1000, num_test=1000,
    warmup_steps=1000,
)
SMOKE = dict(
    epochs=1, batch_size=32, num_layers=1, hidden_dim=32, num_heads=2,
    intermediate_dim=64, num_train=256, num_validation=32, num_test=32,
    warmup_steps=50, bleu_samples=16,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Run"):],
    )
    common.add_common_arguments(parser, "translate")
    data = parser.add_argument_group("data (default: the generated dates task)")
    data.add_argument("--tsv", help="file of source<TAB>target lines (Tatoeba/Anki format)")
    data.add_argument("--tfds", choices=TFDS_NAMES, help="a TensorFlow Datasets corpus")
    data.add_argument("--reverse", action="store_true", help="translate the other way round")
    data.add_argument("--max-pairs", type=int, default=None, help="use at most this many pairs")
    data.add_argument("--num-train", type=int, default=None, help="dates task: training pairs")
    data.add_argument("--num-validation", type=int, default=None)
    data.add_argument("--num-test", type=int, default=None, help="test sentences for BLEU")
    data.add_argument("--tokenizer", choices=("wordpiece", "character"), default="wordpiece",
                      help="--tsv/--tfds: tokenizer of both sides")
    data.add_argument("--vocabulary-size", type=int, default=8000)
    data.add_argument("--max-length", type=int, default=None,
                      help="--tsv/--tfds: truncate sources and targets to this many tokens")
    model = parser.add_argument_group("model and training")
    model.add_argument("--num-layers", type=int, default=None)
    model.add_argument("--hidden-dim", type=int, default=None)
    model.add_argument("--num-heads", type=int, default=None)
    model.add_argument("--intermediate-dim", type=int, default=None)
    model.add_argument("--dropout", type=float, default=0.1)
    # The export serves sources of any length: BigBird and Linformer get the
    # padded length as their `sequence_length` (block pattern, projections).
    common.add_attention_kernel_arguments(model, what="the encoder's self-attention")
    # The decoder's self-attention: a kernel with cached decoding.
    common.add_attention_kernel_arguments(
        model, CAUSAL_DECODING_KERNELS, prefix="decoder-",
        what="the decoder's causal self-attention (its cross-attention stays exact)")
    model.add_argument("--label-smoothing", type=float, default=0.1)
    model.add_argument("--warmup-steps", type=int, default=None)
    model.add_argument("--bleu-samples", type=int, default=200,
                       help="validation sentences for the per-epoch greedy BLEU")
    decode = parser.add_argument_group("decoding (evaluation and the export)")
    decode.add_argument("--decode", choices=("beam", "greedy"), default="beam")
    decode.add_argument("--beam-width", type=int, default=4)
    decode.add_argument("--length-penalty", type=float, default=0.6)
    args = parser.parse_args(argv)
    if args.tsv and args.tfds:
        parser.error("--tsv and --tfds are exclusive: pick one data source")
    for key, value in {**DEFAULTS, **(SMOKE if args.smoke else {})}.items():
        if getattr(args, key) is None or (args.smoke and key in SMOKE):
            setattr(args, key, value)
    args.kernel_arguments = common.attention_kernel_arguments(parser, args, None)
    args.decoder_kernel_arguments = common.attention_kernel_arguments(
        parser, args, None, causal_decoding=True, prefix="decoder-")
    common.check_decoding_flags(parser, "--beam-width / --length-penalty",
                                beam_width=args.beam_width, length_penalty=args.length_penalty)
    return parser, args


def load_pairs(args):
    """`(TranslationData, description)` of the chosen data source."""
    common_kwargs = dict(batch_size=args.batch_size, seed=args.seed)
    if args.tsv:
        pairs = ka_data.load_translation_tsv(args.tsv, args.max_pairs, reverse=args.reverse)
        train, valid, test = ka_data.split_examples(pairs, 0.1, 0.1, seed=args.seed)
        if args.smoke:
            train = train[: SMOKE["num_train"]]
        test = test or valid or train[: args.num_test]
        data = ka_data.prepare_translation_data(
            train, valid or None, test[: args.num_test],
            source_kind=args.tokenizer, target_kind=args.tokenizer,
            vocabulary_size=args.vocabulary_size,
            source_sequence_length=args.max_length,
            target_sequence_length=args.max_length and args.max_length + 2,
            **common_kwargs,
        )
        return data, f"{args.tsv}: {len(train)} train / {len(valid)} validation / {len(test)} test pairs"
    if args.tfds:
        def load(split, limit=None):
            dataset = ka_data.load_ted_hrlr_pt_en(split, args.data_dir, download=args.download)
            if args.reverse:
                dataset = dataset.map(lambda s, t: (t, s))
            return dataset.take(limit) if limit else dataset

        train = load("train", SMOKE["num_train"] if args.smoke else args.max_pairs)
        valid = load("validation", args.num_validation)
        test = ka_data.tfds_translation_pairs(load("test"), args.num_test)
        data = ka_data.prepare_translation_data(
            train, valid, test,
            source_kind=args.tokenizer, target_kind=args.tokenizer,
            vocabulary_size=args.vocabulary_size,
            source_sequence_length=args.max_length or 64,
            target_sequence_length=(args.max_length or 64) + 2,
            **common_kwargs,
        )
        return data, f"TFDS {args.tfds}"
    data = ka_data.date_translation_task(
        args.num_train, args.num_validation, args.num_test,
        reverse=args.reverse, **common_kwargs,
    )
    return data, (f"generated dates task: {args.num_train} train / "
                  f"{args.num_validation} validation / {args.num_test} test pairs")


def as_model_inputs(dataset):
    """`((source, target_in), target_out)` -> the model's named inputs."""
    return dataset.map(
        lambda x, y: ({"source_ids": x[0], "target_ids": x[1]}, y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def build_translator(args, source_tokenizer, target_tokenizer):
    """Build and compile the translator (inside the distribution strategy)."""
    length = max(source_tokenizer.sequence_length, target_tokenizer.sequence_length)

    def build_fn():
        return ka.models.transformer_translator(
            vocabulary_size=source_tokenizer.vocabulary_size,
            target_vocabulary_size=target_tokenizer.vocabulary_size,
            sequence_length=length,
            num_layers=args.num_layers,
            hidden_dim=args.hidden_dim,
            num_heads=args.num_heads,
            intermediate_dim=args.intermediate_dim,
            dropout=args.dropout,
            **common.with_sequence_length(args.kernel_arguments, length),
            # The builder gives a BigBird decoder the model's length itself.
            decoder_attention_kernel=args.decoder_kernel_arguments["attention_kernel"],
            decoder_attention_kernel_options=args.decoder_kernel_arguments[
                "attention_kernel_options"],
        )

    def compile_kwargs():
        schedule = ka.training.TransformerSchedule(args.hidden_dim, args.warmup_steps)
        return dict(
            optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
            loss=ka.training.MaskedSparseCategoricalCrossentropy(
                label_smoothing=args.label_smoothing
            ),
            metrics=[ka.training.MaskedAccuracy()],
            jit_compile=args.jit_compile,
        )

    return common.build(args, build_fn, compile_kwargs)


def translate_all(pipeline, sources, batch_size=256):
    """Translations (list of str) of `sources`, in batches."""
    out = []
    for start in range(0, len(sources), batch_size):
        out.extend(common.as_text(pipeline(sources[start : start + batch_size])["translations"]))
    return out


def main(argv=None):
    parser, args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.time()
    data, description = common.load_data(parser, lambda: load_pairs(args))
    source_tokenizer, target_tokenizer = data.source_tokenizer, data.target_tokenizer
    print(f"data: {description}")
    print(f"tokenizers: source {type(source_tokenizer).__name__} "
          f"({source_tokenizer.vocabulary_size} tokens, length {source_tokenizer.sequence_length}), "
          f"target {type(target_tokenizer).__name__} ({target_tokenizer.vocabulary_size} "
          f"tokens, length {target_tokenizer.sequence_length})")

    model = build_translator(args, source_tokenizer, target_tokenizer)
    print(f"model: {model.count_params():,} parameters")
    if args.verbose:
        model.summary()

    def normalize(texts):
        return common.as_text(target_tokenizer.normalize(tf.constant(list(texts))))

    greedy = TranslatorPipeline(model, source_tokenizer, target_tokenizer,
                                strategy="greedy", batch_chunk=64)
    validation_pairs = data.validation_pairs
    extra = []
    if isinstance(validation_pairs, list) and validation_pairs:
        sample = validation_pairs[: args.bleu_samples]
        extra.append(ka.training.BleuCallback(
            ([s for s, _ in sample], normalize(t for _, t in sample)),
            translate_fn=lambda batch: greedy(list(batch))["translations"],
            batch_size=256, verbose=True,
        ))
    fit_start = time.time()
    history = model.fit(
        as_model_inputs(data.train_dataset),
        validation_data=(as_model_inputs(data.validation_dataset)
                         if data.validation_dataset is not None else None),
        epochs=args.epochs,
        callbacks=common.callbacks(args, extra),
        verbose=args.verbose,
    )
    train_seconds = time.time() - fit_start

    # Test BLEU with the decoding that is exported (beam search by default).
    pipeline = TranslatorPipeline(
        model, source_tokenizer, target_tokenizer, strategy=args.decode,
        beam_width=args.beam_width, length_penalty=args.length_penalty,
    )
    evaluator = TranslatorPipeline(
        model, source_tokenizer, target_tokenizer, strategy=args.decode,
        beam_width=args.beam_width, length_penalty=args.length_penalty, batch_chunk=64,
    )
    test_sources = [s for s, _ in data.test_pairs]
    references = normalize(t for _, t in data.test_pairs)
    eval_start = time.time()
    hypotheses = translate_all(evaluator, test_sources)
    bleu = ka.training.corpus_bleu(hypotheses, references)
    exact = float(np.mean([h == r for h, r in zip(hypotheses, references)]))
    print(f"\ntest ({len(test_sources)} sentences, {args.decode} search"
          f"{f', beam {args.beam_width}' if args.decode == 'beam' else ''}): "
          f"BLEU {bleu:.2f}, exact match {exact:.4f} "
          f"({time.time() - eval_start:.0f}s)")
    for source, hypothesis, reference in list(zip(test_sources, hypotheses, references))[:5]:
        mark = "ok" if hypothesis == reference else "WRONG"
        print(f"  {source!r} -> {hypothesis!r} (reference {reference!r}, {mark})")

    # Cross-attention of the first test sentence over its own translation.
    source_ids = source_tokenizer(tf.constant(test_sources[:1])).numpy()
    target_ids = target_tokenizer(tf.constant(hypotheses[:1])).numpy()
    query_tokens = common.token_strings(target_tokenizer, target_ids[0, 1:])
    plot_path = common.plot_attention_map(
        args, model,
        {"source_ids": source_ids, "target_ids": target_ids[:, :-1]},
        "translate_attention.png",
        query_tokens=query_tokens,
        key_tokens=common.token_strings(source_tokenizer, source_ids[0]),
    )

    export_path = common.export(args, pipeline)
    sources = test_sources[:5]
    in_process = pipeline(sources)
    served, same = common.report_reload(
        export_path, {"source": sources}, in_process, ["translations"]
    )
    for source, translation in zip(sources, served["translations"]):
        print(f"  served: {source!r} -> {translation!r}")

    logs = history.history
    summary = {
        "data": description,
        "parameters": model.count_params(),
        "attention_kernel": model.arguments["attention_kernel"],
        "attention_kernel_options": model.arguments["attention_kernel_options"],
        "decoder_attention_kernel": model.arguments["decoder_attention_kernel"],
        "decoder_attention_kernel_options": model.arguments["decoder_attention_kernel_options"],
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "final_loss": logs["loss"][-1],
        "val_masked_accuracy": logs.get("val_masked_accuracy", [None])[-1],
        "val_bleu_greedy": logs.get("val_bleu", [None])[-1],
        "test_bleu": bleu,
        "test_exact_match": exact,
        "test_sentences": len(test_sources),
        "decode": args.decode,
        "attention_png": plot_path,
        "export": export_path,
        "served_translations": served["translations"],
        "served_equals_in_process": same,
        "total_seconds": round(time.time() - started, 1),
    }
    return common.summarize(summary, args, "translate")


if __name__ == "__main__":
    main()
