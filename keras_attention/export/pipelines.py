"""Serving pipelines: raw strings in, predictions out, in one TensorFlow graph.

A pipeline puts the in-graph tokenizers of `keras_attention.data`, a model
of `keras_attention.models` and, for text generation, the decoding loop of
`keras_attention.generation` into one function of string tensors:
`ClassifierPipeline` (texts -> labels and probabilities),
`TranslatorPipeline` (sources -> translations), `GeneratorPipeline`
(prompts and budgets -> continuations) and `FillMaskPipeline` (texts with
`[MASK]` markers -> filled texts). Pass one to `export_for_serving` and the
SavedModel's `serving_default` signature takes what a client has -- a batch
of raw strings -- and returns strings, ids and probabilities. The exported
graph uses core TensorFlow ops only (no tensorflow-text kernels), so it
loads in a process that imports only TensorFlow, and in TF Serving.

Every pipeline is also callable in Python (`pipeline(["some text"])`),
running the very function that is exported, and returns a dict of NumPy
arrays (strings as UTF-8 `bytes`).

Defined behaviour on awkward inputs: a text longer than the tokenizer's
`sequence_length` is truncated (the classifier, the translator and the
fill-mask pipeline keep the first tokens, the generator keeps the last
tokens of a prompt, the ones next to the continuation); an empty text is a
sequence of padding only (its attention rows are fully masked and give
zeros, never NaN), which gives a defined, if uninformative, prediction.

Decoding inside the graph runs the decoding loop of `Seq2SeqGenerator` /
`CausalLMGenerator` (greedy, beam search or sampling over KV caches, a
`tf.while_loop`, not XLA-compiled in the export) on chunks of `batch_chunk`
rows, so any batch size works: the batch is padded to a multiple of
`batch_chunk` and the chunks are decoded one after the other by
`tf.map_fn`.

Shape letters: B batch, C classes, S source length, P prompt length, L
decoding buffer length, K beam width.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_attention.data import tokenizers as tokenizers_lib
from keras_attention.export.serving import export_for_serving
from keras_attention.generation import CausalLMGenerator
from keras_attention.generation import Seq2SeqGenerator
from keras_attention.generation.generator import check_decoding_arguments
from keras_attention.models import BuilderModel
from keras_attention.utils import validation

STRATEGIES = ("greedy", "beam", "sample")


def _check_tokenizer(tokenizer, name):
    if not isinstance(tokenizer, tokenizers_lib.StringTokenizer):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            "WordPieceTokenizer or CharacterTokenizer from "
            f"`keras_attention.data`. Received: {name}={tokenizer!r}"
        )
    return tokenizer


def _check_builder(model, builders, name="model"):
    if not isinstance(model, BuilderModel) or model.builder not in builders:
        found = getattr(model, "builder", type(model).__name__)
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            "model built by "
            + " or ".join(f"`keras_attention.models.{b}`" for b in builders)
            + f". Received: {getattr(model, 'name', model)!r} ({found})"
        )
    return model


def _check_fits(length, length_name, model):
    limit = model.arguments["sequence_length"]
    if length > limit:
        raise ValueError(
            f"Received an invalid value for argument `{length_name}`, "
            f"expected at most the model's sequence_length={limit}. "
            f"Received: {length_name}={length}"
        )


def _string_spec(name):
    return tf.TensorSpec([None], tf.string, name=name)


def _map_chunks(fn, tensors, chunk, output_signature):
    """Apply `fn` to row chunks of static size `chunk`; rows back in order.

    The batch is padded with zero rows to a multiple of `chunk`; `fn` gets
    `(chunk_index, tensors_of_the_chunk)` with static leading dimension
    `chunk`, the padding rows are dropped from the results.
    """
    batch = tf.shape(tensors[0])[0]
    num_chunks = (batch + chunk - 1) // chunk
    padding = num_chunks * chunk - batch

    def split(tensor):
        rest = tensor.shape[1:].as_list()
        tensor = tf.pad(tensor, [[0, padding]] + [[0, 0]] * len(rest))
        return tf.reshape(tensor, [-1, chunk] + rest)  # (num_chunks, chunk, ...)

    def unsplit(tensor):
        rest = tensor.shape[2:].as_list()
        return tf.reshape(tensor, [-1] + rest)[:batch]  # (B, ...)

    outputs = tf.map_fn(
        lambda args: fn(args[0], args[1]),
        (tf.range(num_chunks), tuple(split(t) for t in tensors)),
        fn_output_signature=output_signature,
    )
    return tf.nest.map_structure(unsplit, outputs)


class ServingPipeline:
    """Base class of the pipelines (not used directly).

    Subclasses set `keras_model`, implement `serving_fn` and
    `serving_signature`, and list their tokenizers in `_tokenizers`.
    """

    keras_model = None
    _tokenizers = ()

    def serving_signature(self):
        """The `tf.TensorSpec`s of `serving_fn`'s arguments."""
        raise NotImplementedError

    def serving_fn(self, *inputs):
        """The exported function: TensorFlow tensors in, dict of tensors out."""
        raise NotImplementedError

    def trackables(self):
        """The Keras model and the tokenizers (their weights and tables)."""
        return [self.keras_model, *self._tokenizers]

    def __call__(self, *inputs):
        """Run the serving function in process; returns a dict of NumPy arrays."""
        if getattr(self, "_function", None) is None:
            self._function = tf.function(
                self.serving_fn, input_signature=self.serving_signature()
            )
        specs = self.serving_signature()
        if len(inputs) != len(specs):
            raise ValueError(
                f"Received an invalid number of inputs, expected {len(specs)} "
                f"({', '.join(s.name for s in specs)}). Received: {len(inputs)}"
            )
        tensors = [tf.convert_to_tensor(x, s.dtype) for x, s in zip(inputs, specs)]
        batch = tf.shape(tensors[0])[:1]
        tensors = [  # a scalar for a per-row input applies to every row
            tf.broadcast_to(t, batch) if t.shape.rank == 0 and s.shape.rank == 1 else t
            for t, s in zip(tensors, specs)
        ]
        outputs = self._function(*tensors)
        return {key: value.numpy() for key, value in outputs.items()}

    def export(self, export_dir, version=1, overwrite=False):
        """`export_for_serving(self, export_dir, version, overwrite)`."""
        return export_for_serving(self, export_dir, version=version, overwrite=overwrite)


class ClassifierPipeline(ServingPipeline):
    """Raw strings -> label ids, label names and class probabilities.

    Tokenizes a batch of texts with `tokenizer` (truncating to its
    `sequence_length`), runs the classifier and returns the softmax of its
    logits.

    Args:
        model: a Keras model mapping `(B, T)` int32 token ids to `(B, C)`
            logits, e.g. `keras_attention.models.transformer_classifier`.
        tokenizer: the `WordPieceTokenizer` or `CharacterTokenizer` the
            model was trained with.
        label_names: the `C` class names, indexed by label id.

    Serving signature:
        text: `(B,)` string.

    Returns (as a dict):
        label_ids: `(B,)` int32, the most probable class.
        label_names: `(B,)` string, its name.
        probabilities: `(B, C)` float32.

    Raises:
        ValueError: if `tokenizer` is not one of our tokenizers, or
            `label_names` is empty, has duplicates or does not match the
            model's number of outputs.

    Example:

    ```python
    import keras_attention as ka
    from keras_attention.data import fit_tokenizer
    from keras_attention.export import ClassifierPipeline
    tokenizer = fit_tokenizer(["good fun", "dull"], kind="character")
    model = ka.models.transformer_classifier(
        vocabulary_size=tokenizer.vocabulary_size,
        sequence_length=tokenizer.sequence_length, num_classes=2,
        num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16,
        pooling="mean")
    pipeline = ClassifierPipeline(model, tokenizer, ["neg", "pos"])
    pipeline(["good"])["probabilities"].shape  # (1, 2)
    ```
    """

    def __init__(self, model, tokenizer, label_names):
        if not isinstance(model, keras.Model):
            raise ValueError(
                "Received an invalid value for argument `model`, expected a "
                f"keras.Model. Received: model={model!r}"
            )
        self.model = model
        self.tokenizer = _check_tokenizer(tokenizer, "tokenizer")
        label_names = [str(name) for name in label_names]
        if not label_names or len(set(label_names)) != len(label_names):
            raise ValueError(
                "Received an invalid value for argument `label_names`, "
                "expected a non-empty list of unique class names. "
                f"Received: label_names={label_names!r}"
            )
        num_outputs = model.compute_output_shape((None, tokenizer.sequence_length))[-1]
        if num_outputs != len(label_names):
            raise ValueError(
                "Received an invalid value for argument `label_names`, "
                f"expected one name per model output ({num_outputs}). "
                f"Received: {len(label_names)} names"
            )
        self.label_names = label_names
        self.keras_model = model
        self._tokenizers = (tokenizer,)
        self._names = tf.constant(label_names, tf.string)

    def serving_signature(self):
        return [_string_spec("text")]

    def serving_fn(self, text):
        ids = self.tokenizer.tokenize(text)  # (B, T)
        logits = self.model(ids, training=False)  # (B, C)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)  # (B,)
        return {
            "label_ids": label_ids,
            "label_names": tf.gather(self._names, label_ids),
            "probabilities": probabilities,
        }


class _DecodingPipeline(ServingPipeline):
    """Shared checks and the chunked decoding call of the generators."""

    def _init_decoding(
        self, strategy, beam_width, length_penalty, temperature, top_k, top_p,
        seed, batch_chunk, vocabulary_size,
    ):
        self.strategy = validation.check_one_of(strategy, "strategy", STRATEGIES)
        (
            self.temperature, self.top_k, self.top_p, self.seed, self.beam_width,
            self.length_penalty,
        ) = check_decoding_arguments(
            vocabulary_size, temperature=temperature, top_k=top_k, top_p=top_p,
            seed=seed, beam_width=beam_width, length_penalty=length_penalty,
        )
        self.batch_chunk = validation.check_positive_int(batch_chunk, "batch_chunk")

    def _decode(self, tokens, lengths, limits, source, prompt_width):
        """Decode `(B, L)` buffers chunk by chunk; `(B, L)` ids, `(B,)` scores."""
        generator = self.generator
        seed_dtype = generator._seed_generator.state.dtype
        if self.seed is None:
            base_seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
        else:
            base_seed = tf.constant(self.seed, tf.int64)
        length = tokens.shape[1]
        tensors = (tokens, lengths, limits) + (() if source is None else (source,))

        def decode_chunk(index, chunk):
            tokens, lengths, limits = chunk[:3]
            seed = tf.cast(tf.stack([base_seed, tf.cast(index, tf.int64)]), seed_dtype)
            outputs = generator._decode(
                tokens,
                lengths,
                limits,
                chunk[3] if source is not None else None,
                tf.constant(self.temperature, tf.float32),
                tf.constant(1.0 if self.top_p is None else self.top_p, tf.float32),
                tf.constant(self.length_penalty, tf.float32),
                seed,
                prompt_width=prompt_width,
                strategy=self.strategy,
                use_cache=True,
                top_k=self.top_k,
                use_top_p=self.top_p is not None,
                beam_width=self.beam_width,
            )
            if self.strategy != "beam":
                return outputs, tf.zeros([self.batch_chunk], tf.float32)
            beams, scores = outputs  # (b, K, L), (b, K)
            best = tf.argmax(scores, axis=1, output_type=tf.int32)  # (b,)
            return (
                tf.gather(beams, best, axis=1, batch_dims=1),  # (b, L)
                tf.gather(scores, best, axis=1, batch_dims=1),  # (b,)
            )

        return _map_chunks(
            decode_chunk,
            tensors,
            self.batch_chunk,
            (
                tf.TensorSpec([self.batch_chunk, length], tf.int32),
                tf.TensorSpec([self.batch_chunk], tf.float32),
            ),
        )


class TranslatorPipeline(_DecodingPipeline):
    """Raw source strings -> translated strings, decoded inside the graph.

    Tokenizes the sources with `source_tokenizer` (truncated to its
    `sequence_length`), decodes each target from `[START]` with greedy
    search, beam search (`beam_width`, GNMT `length_penalty`) or sampling
    until `[END]` or `target_tokenizer.sequence_length` tokens, and
    detokenizes it with `target_tokenizer`.

    Args:
        model: a `keras_attention.models.transformer_translator` model.
        source_tokenizer: tokenizer of the source side.
        target_tokenizer: tokenizer of the target side, with
            `add_start_token=True` and `add_end_token=True`.
        strategy: `"beam"`, `"greedy"` or `"sample"`.
        beam_width: beams per sentence for `"beam"` (4 in the Transformer
            paper).
        length_penalty: GNMT length penalty alpha for `"beam"` (0.6).
        temperature: softmax temperature for `"sample"`.
        top_k: `None` or the number of most likely tokens kept when
            sampling.
        top_p: `None` or the nucleus probability kept when sampling.
        seed: `None` (a fresh seed per request) or an int making sampling
            deterministic.
        batch_chunk: rows decoded together; the batch is padded to a
            multiple of it.

    Serving signature:
        source: `(B,)` string.

    Returns (as a dict):
        translations: `(B,)` string.
        scores: `(B,)` float32 length-normalised log-probability of the
            chosen beam (`"beam"`; zeros otherwise).

    Raises:
        ValueError: if `model` is not a translator, a tokenizer does not
            fit the model (vocabulary size, length), the target tokenizer
            lacks start/end tokens, or a decoding option is invalid.

    Example:

    ```python
    import keras_attention as ka
    from keras_attention.data import translation_pairs, translation_tokenizers
    from keras_attention.export import TranslatorPipeline
    src, tgt = translation_tokenizers(translation_pairs(32), target_kind="character")
    model = ka.models.transformer_translator(
        vocabulary_size=src.vocabulary_size,
        target_vocabulary_size=tgt.vocabulary_size,
        sequence_length=max(src.sequence_length, tgt.sequence_length),
        num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)
    pipeline = TranslatorPipeline(model, src, tgt, beam_width=2)
    pipeline(["the third of march two thousand and five"])["translations"]
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", section 6.1.
        Wu et al., 2016, "Google's Neural Machine Translation System",
        section 7 (length penalty).
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        strategy="beam",
        beam_width=4,
        length_penalty=0.6,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
        batch_chunk=8,
    ):
        _check_builder(model, ("transformer_translator",))
        self.source_tokenizer = _check_tokenizer(source_tokenizer, "source_tokenizer")
        self.target_tokenizer = _check_tokenizer(target_tokenizer, "target_tokenizer")
        if not (target_tokenizer.add_start_token and target_tokenizer.add_end_token):
            raise ValueError(
                "Received an invalid value for argument `target_tokenizer`, "
                "expected add_start_token=True and add_end_token=True. "
                f"Received: add_start_token={target_tokenizer.add_start_token}, "
                f"add_end_token={target_tokenizer.add_end_token}"
            )
        _check_fits(source_tokenizer.sequence_length, "source_tokenizer.sequence_length", model)
        _check_fits(target_tokenizer.sequence_length, "target_tokenizer.sequence_length", model)
        arguments = model.arguments
        vocabularies = (
            ("source_tokenizer", source_tokenizer, arguments["vocabulary_size"]),
            (
                "target_tokenizer",
                target_tokenizer,
                arguments["target_vocabulary_size"] or arguments["vocabulary_size"],
            ),
        )
        for name, tokenizer, size in vocabularies:
            if tokenizer.vocabulary_size > size:
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected "
                    f"at most the model's {size} token ids. Received: "
                    f"vocabulary_size={tokenizer.vocabulary_size}"
                )
        self._init_decoding(
            strategy, beam_width, length_penalty, temperature, top_k, top_p,
            seed, batch_chunk, vocabulary_size=vocabularies[1][2],
        )
        self.model = model
        self.keras_model = model
        self._tokenizers = (source_tokenizer, target_tokenizer)
        self.generator = Seq2SeqGenerator(
            model,
            start_token_id=target_tokenizer.start_token_id,
            end_token_id=target_tokenizer.end_token_id,
        )

    def serving_signature(self):
        return [_string_spec("source")]

    def serving_fn(self, source):
        source_ids = self.source_tokenizer.tokenize(source)  # (B, S)
        batch = tf.shape(source_ids)[0]
        length = self.target_tokenizer.sequence_length
        tokens = tf.pad(
            tf.fill([batch, 1], self.target_tokenizer.start_token_id),
            [[0, 0], [0, length - 1]],
        )  # (B, L): [START] then room for the translation
        ones = tf.ones([batch], tf.int32)
        tokens, scores = self._decode(
            tokens, ones, ones * length, source_ids, prompt_width=1
        )
        return {
            "translations": self.target_tokenizer.detokenize(tokens),  # (B,)
            "scores": scores,
        }


class GeneratorPipeline(_DecodingPipeline):
    """Raw prompts and a token budget -> generated continuations.

    Tokenizes each prompt with `tokenizer`, keeps its last `prompt_length`
    tokens (after `start_token_id`, when given), generates up to
    `max_new_tokens` tokens for it (clipped to the room left in the model's
    `sequence_length`; 0 gives an empty continuation) with greedy search,
    beam search or sampling, stopping at `[END]`, and detokenizes the new
    tokens only.

    Args:
        model: a `keras_attention.models.causal_lm` model.
        tokenizer: the tokenizer the model was trained with.
        prompt_length: most prompt tokens kept (start token included);
            defaults to half the model's `sequence_length`.
        start_token_id: `None`, or an id put before every prompt, e.g. the
            `[END]` id that separated the training documents (then an empty
            prompt starts a new document).
        strategy: `"greedy"`, `"beam"` or `"sample"`.
        beam_width: beams per prompt for `"beam"`.
        length_penalty: GNMT length penalty alpha for `"beam"`.
        temperature: softmax temperature for `"sample"`.
        top_k: `None` or the number of most likely tokens kept when
            sampling.
        top_p: `None` or the nucleus probability kept when sampling.
        seed: `None` (a fresh seed per request) or an int making sampling
            deterministic.
        batch_chunk: rows decoded together; the batch is padded to a
            multiple of it.

    Serving signature:
        prompt: `(B,)` string.
        max_new_tokens: `(B,)` int32, the budget of each prompt.

    Returns (as a dict):
        continuations: `(B,)` string, the generated text after the prompt.

    Raises:
        ValueError: if `model` is not a causal LM, the tokenizer does not fit
            it, `prompt_length` leaves no room to generate, or a decoding
            option is invalid.

    Example:

    ```python
    import keras_attention as ka
    from keras_attention.data import fit_tokenizer
    from keras_attention.export import GeneratorPipeline
    tokenizer = fit_tokenizer(["to be or not to be"], kind="character")
    model = ka.models.causal_lm(
        vocabulary_size=tokenizer.vocabulary_size, sequence_length=16,
        num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)
    pipeline = GeneratorPipeline(model, tokenizer)
    pipeline(["to be"], [5])["continuations"]
    ```

    References:
        Holtzman et al., 2020, "The Curious Case of Neural Text
        Degeneration" (top-p sampling).
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt_length=None,
        start_token_id=None,
        strategy="greedy",
        beam_width=4,
        length_penalty=0.6,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
        batch_chunk=8,
    ):
        _check_builder(model, ("causal_lm",))
        self.tokenizer = _check_tokenizer(tokenizer, "tokenizer")
        arguments = model.arguments
        sequence_length = arguments["sequence_length"]
        if tokenizer.vocabulary_size > arguments["vocabulary_size"]:
            raise ValueError(
                "Received an invalid value for argument `tokenizer`, expected at "
                f"most the model's {arguments['vocabulary_size']} token ids. "
                f"Received: vocabulary_size={tokenizer.vocabulary_size}"
            )
        if prompt_length is None:
            prompt_length = max(sequence_length // 2, 1)
        prompt_length = validation.check_positive_int(prompt_length, "prompt_length")
        if prompt_length >= sequence_length:
            raise ValueError(
                "Received an invalid value for argument `prompt_length`, "
                "expected fewer tokens than the model's "
                f"sequence_length={sequence_length}, to leave room to "
                f"generate. Received: prompt_length={prompt_length}"
            )
        if start_token_id is not None:
            if (
                isinstance(start_token_id, bool)
                or not isinstance(start_token_id, (int, np.integer))
                or not 1 <= start_token_id < tokenizer.vocabulary_size
            ):
                raise ValueError(
                    "Received an invalid value for argument `start_token_id`, "
                    "expected None or a token id in "
                    f"[1, {tokenizer.vocabulary_size}). "
                    f"Received: start_token_id={start_token_id!r}"
                )
            start_token_id = int(start_token_id)
            if prompt_length < 2:
                raise ValueError(
                    "Received an invalid value for argument `prompt_length`, "
                    "expected at least 2 (the start token and one prompt "
                    f"token). Received: prompt_length={prompt_length}"
                )
        self.prompt_length = prompt_length
        self.start_token_id = start_token_id
        self._init_decoding(
            strategy, beam_width, length_penalty, temperature, top_k, top_p,
            seed, batch_chunk, vocabulary_size=arguments["vocabulary_size"],
        )
        self.model = model
        self.keras_model = model
        self._tokenizers = (tokenizer,)
        self.generator = CausalLMGenerator(model, end_token_id=tokenizer.end_token_id)

    def serving_signature(self):
        return [_string_spec("prompt"), tf.TensorSpec([None], tf.int32, name="max_new_tokens")]

    def prompt_ids(self, prompt):
        """`(B, P)` right-padded prompt ids (start token, last tokens)."""
        ids = self.tokenizer.tokenize_ragged(prompt)  # (B, None)
        keep = self.prompt_length - int(self.start_token_id is not None)
        ids = ids[:, -keep:]  # the last tokens, next to the continuation
        if self.start_token_id is not None:
            starts = tf.fill([ids.nrows(), 1], self.start_token_id)
            ids = tf.concat([starts, ids], axis=1)
        return ids.to_tensor(0, shape=[None, self.prompt_length])  # (B, P)

    def serving_fn(self, prompt, max_new_tokens):
        prompt_ids = self.prompt_ids(prompt)  # (B, P)
        length = self.model.arguments["sequence_length"]
        lengths = tf.reduce_sum(tf.cast(prompt_ids != 0, tf.int32), axis=1)  # (B,)
        budget = tf.broadcast_to(tf.cast(max_new_tokens, tf.int32), tf.shape(lengths))
        limits = lengths + tf.clip_by_value(budget, 0, length - lengths)  # (B,)
        tokens = tf.pad(prompt_ids, [[0, 0], [0, length - self.prompt_length]])
        tokens, _ = self._decode(
            tokens, lengths, limits, None, prompt_width=self.prompt_length
        )  # (B, L)
        columns = tf.range(length)[None, :]
        new = (columns >= lengths[:, None]) & (columns < limits[:, None])  # (B, L)
        continuation = tf.ragged.boolean_mask(tokens, new)  # (B, None)
        return {"continuations": self.tokenizer.detokenize(continuation)}


class FillMaskPipeline(ServingPipeline):
    """Raw strings with `[MASK]` markers -> the text with every mask filled.

    Each occurrence of `mask_marker` (case-insensitive) becomes one `[MASK]`
    token; the text around the markers is tokenized with `tokenizer`
    (truncated to its `sequence_length`: masks past the end are dropped).
    The masked language model predicts every masked position; the reserved
    tokens (`[PAD]`, `[UNK]`, `[START]`, `[END]`, `[MASK]`) are never
    predicted.

    Args:
        model: a `keras_attention.models.masked_lm` model (any model mapping
            `(B, T)` ids to `(B, T, V)` logits).
        tokenizer: the tokenizer the model was trained with.
        mask_marker: the text that marks a masked token in the input.

    Serving signature:
        text: `(B,)` string.

    Returns (as a dict):
        filled: `(B,)` string, the text with the most probable tokens.
        mask_tokens: `(B, M)` string, the predicted token of each mask in
            order (`M` the most masks in the batch; `""` pads).
        mask_probabilities: `(B, M)` float32, their probabilities (0 pads).

    Raises:
        ValueError: if the tokenizer does not fit the model or
            `mask_marker` is empty.

    Example:

    ```python
    import keras_attention as ka
    from keras_attention.data import fit_tokenizer
    from keras_attention.export import FillMaskPipeline
    tokenizer = fit_tokenizer(["the cat sat on the mat"] * 4,
                              vocabulary_size=40, sequence_length=8)
    model = ka.models.masked_lm(
        vocabulary_size=tokenizer.vocabulary_size, sequence_length=8,
        num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)
    pipeline = FillMaskPipeline(model, tokenizer)
    pipeline(["the [MASK] sat"])["mask_tokens"].shape  # (1, 1)
    ```

    References:
        Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding".
    """

    def __init__(self, model, tokenizer, mask_marker="[MASK]"):
        if not isinstance(model, keras.Model):
            raise ValueError(
                "Received an invalid value for argument `model`, expected a "
                f"keras.Model. Received: model={model!r}"
            )
        self.tokenizer = _check_tokenizer(tokenizer, "tokenizer")
        if not isinstance(mask_marker, str) or not mask_marker.strip():
            raise ValueError(
                "Received an invalid value for argument `mask_marker`, expected "
                f"a non-empty string. Received: mask_marker={mask_marker!r}"
            )
        output_shape = model.compute_output_shape((None, tokenizer.sequence_length))
        if tokenizer.vocabulary_size > output_shape[-1]:
            raise ValueError(
                "Received an invalid value for argument `tokenizer`, expected at "
                f"most the model's {output_shape[-1]} token ids. Received: "
                f"vocabulary_size={tokenizer.vocabulary_size}"
            )
        self.mask_marker = mask_marker
        self.model = model
        self.keras_model = model
        self._tokenizers = (tokenizer,)

    def serving_signature(self):
        return [_string_spec("text")]

    def token_ids(self, text):
        """`(B, T)` ids: the tokenized text with `[MASK]` at every marker."""
        tokenizer = self.tokenizer
        marker = self.mask_marker
        text = tf.strings.regex_replace(text, "(?i)" + _re_escape(marker), marker)
        pieces = tf.strings.split(text, sep=marker)  # (B, None) ragged strings
        piece_ids = tokenizer.tokenize_ragged(pieces.flat_values)  # (N, None)
        masks = tf.fill([tf.shape(pieces.flat_values)[0], 1], tokenizer.mask_token_id)
        piece_ids = tf.concat([piece_ids, masks], axis=1)  # each piece, then [MASK]
        ids = tf.RaggedTensor.from_row_lengths(
            piece_ids, pieces.row_lengths()
        ).merge_dims(1, 2)  # (B, None)
        ids = ids[:, :-1]  # no mask after the last piece
        start, end = int(tokenizer.add_start_token), int(tokenizer.add_end_token)
        ids = ids[:, : tokenizer.sequence_length - start - end]
        rows = ids.nrows()
        if start:
            ids = tf.concat([tf.fill([rows, 1], tokenizer.start_token_id), ids], axis=1)
        if end:
            ids = tf.concat([ids, tf.fill([rows, 1], tokenizer.end_token_id)], axis=1)
        return ids.to_tensor(0, shape=[None, tokenizer.sequence_length])  # (B, T)

    def serving_fn(self, text):
        ids = self.token_ids(text)  # (B, T)
        logits = tf.cast(self.model(ids, training=False), tf.float32)  # (B, T, V)
        reserved = len(tokenizers_lib.RESERVED_TOKENS)
        vocabulary = tf.range(tf.shape(logits)[-1])
        logits = tf.where(vocabulary < reserved, logits.dtype.min, logits)
        probabilities = tf.nn.softmax(logits, axis=-1)  # (B, T, V)
        best = tf.argmax(probabilities, axis=-1, output_type=tf.int32)  # (B, T)
        best_probability = tf.reduce_max(probabilities, axis=-1)  # (B, T)
        is_mask = ids == self.tokenizer.mask_token_id  # (B, T)
        filled = tf.where(is_mask, best, ids)
        vocabulary_tensor = tf.constant(self.tokenizer.get_vocabulary(), tf.string)
        mask_tokens = tf.ragged.boolean_mask(tf.gather(vocabulary_tensor, best), is_mask)
        mask_probabilities = tf.ragged.boolean_mask(best_probability, is_mask)
        return {
            "filled": self.tokenizer.detokenize(filled),
            "mask_tokens": mask_tokens.to_tensor(""),
            "mask_probabilities": mask_probabilities.to_tensor(0.0),
        }


def _re_escape(text):
    """Escape `text` for an RE2 pattern."""
    return "".join("\\" + c if not (c.isalnum() or c == " ") else c for c in text)
