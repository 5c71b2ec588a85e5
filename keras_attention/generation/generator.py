"""Compiled decoding loops over KV caches: greedy, sampling, beam search.

Shape letters: B batch, K beam width, N = B * K rows, P prompt width (the
padded prompt), L = P + max_new_tokens buffer (and cache) length, S source
length, V vocabulary size.

The whole generation -- encoder pass, prompt prefill, and every decoding
step -- runs in one function around a `keras.ops.while_loop`. On the
TensorFlow backend it is a `tf.function` compiled with XLA
(`jit_compile=True`), on JAX a `jax.jit` function taking the model weights
as arguments; either is traced once per combination of input shapes and
static options (strategy, `top_k`, beam width, whether `top_p` and caches
are used). Temperature, `top_p`, the length penalty, the seed, the prompt
contents and lengths are tensors, so changing them does not retrace.
`trace_count` counts the traces. Other backends (or `jit_compile=False` on
JAX) run the same `keras.ops.while_loop` without an outer compilation.
"""

import keras
import numpy as np
from keras import ops

from keras_attention.generation import logits_processing as lp
from keras_attention.generation.decoding_parts import DecodingParts
from keras_attention.utils import validation
from keras_attention.utils.validation import invalid_value, is_int

# Arguments of `_decode` that select the traced program (Python values).
_STATIC_ARGUMENTS = (
    "prompt_width", "strategy", "use_cache", "top_k", "use_top_p", "beam_width",
)


def check_decoding_arguments(
    vocabulary_size, temperature=1.0, top_k=None, top_p=None, seed=None,
    beam_width=1, length_penalty=0.0,
):
    """Validate the decoding options of the generators and serving pipelines.

    Args:
        vocabulary_size: the size `V` of the model's output vocabulary.
        temperature: finite float > 0.
        top_k: `None` or an int in `[1, V]`.
        top_p: `None` or a float in `(0, 1]`.
        seed: `None` or an int.
        beam_width: int >= 1.
        length_penalty: finite float >= 0.

    Returns:
        The arguments in the order above (without `vocabulary_size`), the
        numbers as Python floats and ints.

    Raises:
        ValueError: naming the first argument out of its range (NaN and
            infinity included) or of the wrong type.
    """
    temperature = validation.check_positive_float(temperature, "temperature")
    if top_k is not None and (not is_int(top_k) or not 1 <= top_k <= vocabulary_size):
        raise invalid_value(
            "top_k", f"None or an int in [1, vocabulary_size={vocabulary_size}]", top_k
        )
    if top_p is not None and (not validation.is_real(top_p) or not 0 < top_p <= 1):
        raise invalid_value("top_p", "None or a float in (0, 1]", top_p)
    if seed is not None and not is_int(seed):
        raise invalid_value("seed", "None or an int", seed)
    if not is_int(beam_width) or beam_width < 1:
        raise invalid_value("beam_width", "an int >= 1", beam_width)
    length_penalty = validation.check_non_negative_float(length_penalty, "length_penalty")
    return (
        temperature,
        None if top_k is None else int(top_k),
        None if top_p is None else float(top_p),
        None if seed is None else int(seed),
        int(beam_width),
        length_penalty,
    )


def check_token_ids(ids, name, vocabulary_size, sequence_length, right_padded):
    """Validate an array of ids eagerly and return it as int32 NumPy.

    Raises:
        ValueError: if `ids` is not a rank-2 integer array, is longer than
            `sequence_length`, holds ids outside `[0, vocabulary_size)`, or
            (when `right_padded`) has a row that is empty or has padding (0)
            before a real token.
    """
    try:
        ids = np.asarray(keras.ops.convert_to_numpy(ids))
    except Exception as error:  # symbolic tensors cannot be checked
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            "concrete token ids (a NumPy array or an eager tensor). "
            f"Received: {type(ids).__name__}"
        ) from error
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer) or ids.shape[1] < 1:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            "non-empty rank-2 integer array (batch, length). Received: "
            f"{name}.shape={ids.shape}, dtype={ids.dtype}"
        )
    if ids.shape[1] > sequence_length:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected at "
            f"most sequence_length={sequence_length} tokens. Received: "
            f"{name}.shape={ids.shape}"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= vocabulary_size):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected ids "
            f"in [0, vocabulary_size={vocabulary_size}). Received: ids in "
            f"[{ids.min()}, {ids.max()}]"
        )
    if right_padded:
        real = ids != 0  # (B, P)
        lengths = real.sum(axis=1)  # (B,)
        leading = np.arange(ids.shape[1])[None, :] < lengths[:, None]  # (B, P)
        bad = (lengths == 0) | (real != leading).any(axis=1)  # (B,)
        if bad.any():
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected "
                "right-padded rows with at least one token (id 0 is padding "
                "and may only follow the real tokens). Received: invalid "
                f"rows {np.flatnonzero(bad).tolist()}"
            )
    return ids.astype("int32")


class Generator:
    """Base class of the generators; see `CausalLMGenerator`.

    Args:
        model: the model to decode with.
        end_token_id: `None`, or an id (or sequence of ids) that ends a
            sequence.
        jit_compile: whether the TensorFlow loop is compiled with XLA.
    """

    def __init__(self, model, end_token_id=None, jit_compile=True):
        self.model = model
        self.parts = DecodingParts(model)
        vocabulary = self.parts.vocabulary_size
        if end_token_id is None:
            ends = ()
        elif is_int(end_token_id):
            ends = (int(end_token_id),)
        elif isinstance(end_token_id, (list, tuple)) and end_token_id:
            ends = tuple(end_token_id)
        else:
            ends = (None,)  # rejected below
        for token in ends:
            if not is_int(token) or not 1 <= token < vocabulary:
                raise invalid_value(
                    "end_token_id",
                    f"None or ids in [1, vocabulary_size={vocabulary})",
                    end_token_id,
                )
        self.end_token_id = end_token_id
        self._end_ids = ends
        if not isinstance(jit_compile, bool):
            raise invalid_value("jit_compile", "a bool", jit_compile)
        self.jit_compile = jit_compile
        self.trace_count = 0
        self._seed_generator = keras.random.SeedGenerator(0)
        self._function = None

    # ------------------------------------------------------------------ #
    # Public decoding methods
    # ------------------------------------------------------------------ #
    def greedy_search(self, inputs, max_new_tokens=None, use_cache=True):
        """Pick the most likely token at every step.

        Args:
            inputs: the prompt (see the class docstring).
            max_new_tokens: tokens to generate after each row's prompt;
                defaults to filling `sequence_length`.
            use_cache: decode over KV caches (`True`) or recompute the whole
                prefix at every step (`False`, for reference).

        Returns:
            `(B, L)` int32 NumPy token ids: each prompt followed by its
            continuation, 0 after an end token or the row's last token.
        """
        return self._generate(inputs, max_new_tokens, "greedy", use_cache)

    def sample(
        self,
        inputs,
        max_new_tokens=None,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
        use_cache=True,
    ):
        """Sample each token from the (filtered) model distribution.

        Logits are divided by `temperature`, then restricted to the `top_k`
        most likely tokens and to the nucleus of probability `top_p`, then
        sampled. The same `seed` gives the same tokens.

        Args:
            inputs: the prompt (see the class docstring).
            max_new_tokens: tokens to generate after each row's prompt.
            temperature: positive float; below 1 sharpens, above 1 flattens.
            top_k: `None` or an int in `[1, vocabulary_size]`.
            top_p: `None` or a float in `(0, 1]`.
            seed: `None` or an int.
            use_cache: decode over KV caches.

        Returns:
            `(B, L)` int32 NumPy token ids.
        """
        temperature, top_k, top_p, seed, _, _ = check_decoding_arguments(
            self.parts.vocabulary_size, temperature=temperature, top_k=top_k,
            top_p=top_p, seed=seed,
        )
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        return self._generate(
            inputs, max_new_tokens, "sample", use_cache, temperature=temperature,
            top_k=top_k, top_p=top_p, seed=seed,
        )

    def beam_search(
        self,
        inputs,
        max_new_tokens=None,
        beam_width=4,
        length_penalty=0.6,
        return_all_beams=False,
        use_cache=True,
    ):
        """Beam search ranked by the GNMT length-penalised log-probability.

        Keeps the `beam_width` best hypotheses per row. A hypothesis `Y`
        scores `log P(Y | prompt) / lp(Y)` with `lp(Y) = ((5 + |Y|) / 6) ^
        length_penalty`, `|Y|` the number of generated tokens (including the
        end token). Finished hypotheses stay in the beam with their score,
        competing with longer unfinished ones; the loop ends when every
        hypothesis of every row is finished or at its length limit.

        Args:
            inputs: the prompt (see the class docstring).
            max_new_tokens: tokens to generate after each row's prompt.
            beam_width: int >= 1; `1` is greedy search.
            length_penalty: alpha >= 0 (0.6 in the Transformer paper).
            return_all_beams: return every beam, best first, instead of the
                best one.
            use_cache: decode over KV caches.

        Returns:
            `(token_ids, scores)`: `(B, L)` int32 ids and `(B,)` float32
            scores of the best beams, or `(B, K, L)` and `(B, K)` with
            `return_all_beams=True`.
        """
        *_, beam_width, length_penalty = check_decoding_arguments(
            self.parts.vocabulary_size, beam_width=beam_width,
            length_penalty=length_penalty,
        )
        if not isinstance(return_all_beams, bool):
            raise invalid_value("return_all_beams", "a bool", return_all_beams)
        tokens, scores = self._generate(
            inputs, max_new_tokens, "beam", use_cache, beam_width=beam_width,
            length_penalty=length_penalty,
        )
        order = np.argsort(-scores, axis=1, kind="stable")  # (B, K), best first
        tokens = np.take_along_axis(tokens, order[:, :, None], axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        if return_all_beams:
            return tokens, scores
        return tokens[:, 0], scores[:, 0]

    # ------------------------------------------------------------------ #
    # Subclass hooks
    # ------------------------------------------------------------------ #
    def _prepare_inputs(self, inputs):
        """`(prompt (B, P) int32, source (B, S) int32 or None)`, validated."""
        raise NotImplementedError

    # ------------------------------------------------------------------ #
    # Driver
    # ------------------------------------------------------------------ #
    def _generate(
        self, inputs, max_new_tokens, strategy, use_cache, temperature=1.0,
        top_k=None, top_p=None, seed=0, beam_width=1, length_penalty=0.0,
    ):
        if not isinstance(use_cache, bool):
            raise invalid_value("use_cache", "a bool", use_cache)
        prompt, source = self._prepare_inputs(inputs)
        batch, width = prompt.shape
        room = self.parts.sequence_length - width
        if max_new_tokens is None:
            max_new_tokens = room
        if not is_int(max_new_tokens) or not 1 <= max_new_tokens <= room:
            raise invalid_value(
                "max_new_tokens",
                f"an int in [1, sequence_length - prompt length = "
                f"{self.parts.sequence_length} - {width} = {room}]",
                max_new_tokens,
            )
        lengths = (prompt != 0).sum(axis=1).astype("int32")  # (B,)
        tokens = np.zeros((batch, width + max_new_tokens), "int32")  # (B, L)
        tokens[:, :width] = prompt
        seed_state = np.array([seed, 0])
        arguments = dict(
            tokens=ops.convert_to_tensor(tokens, "int32"),
            lengths=ops.convert_to_tensor(lengths, "int32"),
            limits=ops.convert_to_tensor(lengths + max_new_tokens, "int32"),
            source=None if source is None else ops.convert_to_tensor(source, "int32"),
            temperature=ops.convert_to_tensor(temperature, "float32"),
            top_p=ops.convert_to_tensor(1.0 if top_p is None else top_p, "float32"),
            alpha=ops.convert_to_tensor(length_penalty, "float32"),
            seed=ops.convert_to_tensor(seed_state, self._seed_generator.state.dtype),
        )
        outputs = self._compiled()(
            **arguments,
            prompt_width=width,
            strategy=strategy,
            use_cache=use_cache,
            top_k=top_k,
            use_top_p=top_p is not None,
            beam_width=beam_width,
        )
        return keras.tree.map_structure(ops.convert_to_numpy, outputs)

    def _compiled(self):
        if self._function is None:
            backend = keras.backend.backend()
            if backend == "tensorflow":
                import tensorflow as tf

                self._function = tf.function(self._decode, jit_compile=self.jit_compile)
            elif backend == "jax" and self.jit_compile:
                self._function = self._jax_function()
            else:
                self._function = self._decode
        return self._function

    def _jax_function(self):
        """`jax.jit` of `_decode` with the model weights passed as inputs.

        The weights are arguments, not constants captured at trace time, so
        the compiled loop stays valid when the model trains further.
        """
        import jax

        variables = list(self.model.variables)

        def stateless(values, **kwargs):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return self._decode(**kwargs)

        jitted = jax.jit(stateless, static_argnames=_STATIC_ARGUMENTS)

        def call(**kwargs):
            return jitted([v.value for v in variables], **kwargs)

        return call

    # ------------------------------------------------------------------ #
    # The traced function
    # ------------------------------------------------------------------ #
    def _decode(
        self, tokens, lengths, limits, source, temperature, top_p, alpha, seed,
        prompt_width, strategy, use_cache, top_k, use_top_p, beam_width,
    ):
        self.trace_count += 1
        context = None
        if source is not None:
            encoder_output, source_mask = self.parts.encode(source)  # (B, S, E)
        if strategy == "beam":
            tokens = ops.repeat(tokens, beam_width, axis=0)  # (N, L)
            if source is not None:
                encoder_output = ops.repeat(encoder_output, beam_width, axis=0)
                source_mask = ops.repeat(source_mask, beam_width, axis=0)
        if source is not None:
            cross = self.parts.cross_attention_caches(encoder_output) if use_cache else None
            context = (encoder_output, source_mask, cross)
        caches = []
        if use_cache:
            caches = self._prefill(tokens, prompt_width, context)

        head = self.parts.output_head()
        matrices = []
        if use_cache and keras.backend.backend() == "tensorflow":
            matrices = self.parts.matrix_kernels()

        def next_logits(tokens, index, caches):
            with self.parts.matrix_kernel_scope(matrices):
                return self._next_logits(
                    tokens, index, caches, context, head, use_cache
                )

        start = ops.maximum(ops.min(lengths), 1)
        if strategy == "beam":
            return self._beam_loop(
                next_logits, tokens, caches, start, lengths, limits, alpha, beam_width
            )
        return self._search_loop(
            next_logits, tokens, caches, start, lengths, limits, strategy,
            temperature, top_k, use_top_p, top_p, seed,
        )

    def empty_caches(self, rows, length, prompt_width):
        """The empty decoding caches a cached search starts from: every
        decoder block's self-attention cache (see the attention layer's
        `get_initial_cache`) for `rows` sequences of `length` positions
        whose prompts are padded to `prompt_width`.

        The search prefills positions `0 .. prompt_width - 1`, then decodes
        again from the shortest prompt's last position (position 0 at the
        earliest), i.e. up to `prompt_width - 1` positions before the newest
        one written; the caches are asked for that `rewind` (only
        `LocalAttention`'s rolling cache grows with it).

        Example:

        ```python
        import keras_attention as ka
        model = ka.models.causal_lm(vocabulary_size=50, sequence_length=16,
                                    hidden_dim=16, num_heads=2, num_layers=1,
                                    intermediate_dim=32)
        generator = ka.generation.CausalLMGenerator(model)
        key_cache, value_cache = generator.empty_caches(2, 16, prompt_width=4)[0]
        tuple(key_cache.shape)  # (2, 16, 2, 8)
        ```
        """
        if not is_int(prompt_width) or prompt_width < 1:
            raise invalid_value("prompt_width", "a positive int", prompt_width)
        return self.parts.empty_caches(rows, length, rewind=int(prompt_width) - 1)

    def _prefill(self, tokens, prompt_width, context):
        """Caches holding the keys/values of the padded prompt positions."""
        rows, length = tokens.shape
        caches = self.empty_caches(rows, length, prompt_width)
        prompt = tokens[:, :prompt_width]  # (N, P)
        _, caches = self.parts.decode_cached(
            prompt, 0, caches, ops.not_equal(tokens, 0), context
        )
        return caches

    def _next_logits(self, tokens, index, caches, context, head, use_cache):
        """Float32 `(N, V)` logits for position `index`, and the caches."""
        rows, length = tokens.shape
        position = index - 1
        padding_mask = ops.not_equal(tokens, 0)  # (N, L)
        if use_cache:
            ids = ops.slice(tokens, (0, position), (rows, 1))  # (N, 1)
            hidden, caches = self.parts.decode_cached(
                ids, position, caches, padding_mask, context
            )  # (N, 1, E)
        else:
            hidden = self.parts.decode_full(tokens, padding_mask, context)  # (N, L, E)
            hidden = ops.slice(
                hidden, (0, position, 0), (rows, 1, hidden.shape[-1])
            )  # (N, 1, E)
        return self.parts.logits(hidden, head)[:, 0, :], caches  # (N, V)

    @staticmethod
    def _exclude_padding(scores):
        """Token id 0 (padding) can never be chosen."""
        is_pad = ops.equal(ops.arange(scores.shape[-1]), 0)  # (V,)
        return ops.where(is_pad, lp.NEG, scores)

    def _is_end(self, token_ids):
        if not self._end_ids:
            return ops.zeros_like(token_ids, dtype="bool")
        ends = ops.convert_to_tensor(self._end_ids, dtype=token_ids.dtype)
        return ops.any(ops.equal(token_ids[..., None], ends), axis=-1)

    def _categorical(self, logits, seed):
        """One sample per row, from a loop-carried seed state."""
        generator = self._seed_generator
        with keras.StatelessScope(state_mapping=[(generator.state, seed)]) as scope:
            sample = keras.random.categorical(logits, 1, seed=generator)[:, 0]  # (N,)
            seed = scope.get_current_value(generator.state)
        return sample, seed

    def _search_loop(
        self, next_logits, tokens, caches, start, lengths, limits, strategy,
        temperature, top_k, use_top_p, top_p, seed,
    ):
        rows, length = tokens.shape

        def cond(index, tokens, caches, finished, seed):
            pending = ops.logical_and(ops.logical_not(finished), index < limits)
            return ops.logical_and(index < length, ops.any(pending))

        def body(index, tokens, caches, finished, seed):
            logits, caches = next_logits(tokens, index, caches)  # (N, V)
            if strategy == "greedy":
                chosen = ops.argmax(self._exclude_padding(logits), axis=-1)  # (N,)
            else:
                # Padding is excluded after the division, so that no
                # temperature can lift it back among the candidates.
                logits = self._exclude_padding(logits / temperature)
                if top_k is not None:
                    logits = lp.top_k_logits(logits, top_k)
                if use_top_p:
                    logits = lp.top_p_logits(logits, top_p)
                chosen, seed = self._categorical(logits, seed)
            chosen = ops.cast(chosen, "int32")
            column = ops.slice(tokens, (0, index), (rows, 1))[:, 0]  # (N,)
            in_prompt = index < lengths  # (N,)
            active = ops.logical_and(ops.logical_not(finished), index < limits)
            chosen = ops.where(in_prompt, column, ops.where(active, chosen, 0))
            generated = ops.logical_and(active, ops.logical_not(in_prompt))
            finished = ops.logical_or(
                finished, ops.logical_and(generated, self._is_end(chosen))
            )
            tokens = ops.slice_update(tokens, (0, index), chosen[:, None])  # (N, L)
            return index + 1, tokens, caches, finished, seed

        finished = ops.zeros((rows,), dtype="bool")
        _, tokens, _, _, _ = ops.while_loop(
            cond, body, (start, tokens, caches, finished, seed)
        )
        return tokens

    def _beam_loop(
        self, next_logits, tokens, caches, start, lengths, limits, alpha, beams
    ):
        rows, length = tokens.shape
        batch = rows // beams
        first_beam = ops.equal(ops.arange(beams), 0)[None, :]  # (1, K)
        scores = ops.where(
            ops.broadcast_to(first_beam, (batch, beams)), 0.0, lp.NEG
        )  # (B, K) log-probabilities of the generated tokens
        generated = ops.zeros((batch, beams), "int32")  # (B, K) |Y|
        finished = ops.zeros((batch, beams), "bool")  # (B, K)
        row_offset = ops.arange(batch, dtype="int32")[:, None] * beams  # (B, 1)

        def cond(index, tokens, caches, scores, generated, finished):
            pending = ops.logical_and(
                ops.logical_not(finished), (index < limits)[:, None]
            )
            return ops.logical_and(index < length, ops.any(pending))

        def body(index, tokens, caches, scores, generated, finished):
            logits, caches = next_logits(tokens, index, caches)  # (N, V)
            vocabulary = logits.shape[-1]
            log_probs = ops.reshape(
                self._exclude_padding(ops.log_softmax(logits, axis=-1)),
                (batch, beams, vocabulary),
            )  # (B, K, V), the model's log-probabilities
            vocab_ids = ops.arange(vocabulary, dtype="int32")  # (V,)
            in_prompt = (index < lengths)[:, None, None]  # (B, 1, 1)
            frozen = ops.logical_or(finished, (index >= limits)[:, None])  # (B, K)
            column = ops.reshape(
                ops.slice(tokens, (0, index), (rows, 1)), (batch, beams)
            )[:, :1]  # (B, 1), the prompt token (same in every beam)
            forced = ops.where(
                ops.equal(vocab_ids[None, None, :], column[:, :, None]), 0.0, lp.NEG
            )  # (B, 1, V)
            pad_only = ops.where(ops.equal(vocab_ids, 0), 0.0, lp.NEG)  # (V,)
            step = ops.where(
                in_prompt,
                forced,
                ops.where(frozen[:, :, None], pad_only, log_probs),
            )  # (B, K, V)
            total = scores[:, :, None] + step  # (B, K, V)
            grows = ops.logical_and(
                ops.logical_not(frozen), ops.logical_not(in_prompt[:, :, 0])
            )  # (B, K)
            new_length = generated + ops.cast(grows, "int32")  # (B, K)
            ranked = total / lp.length_penalty(new_length, alpha)[:, :, None]
            _, best = ops.top_k(
                ops.reshape(ranked, (batch, beams * vocabulary)), beams
            )  # (B, K) flat candidate indices
            best = ops.cast(best, "int32")
            parent = best // vocabulary  # (B, K)
            token = best % vocabulary  # (B, K)
            scores = ops.take_along_axis(
                ops.reshape(total, (batch, beams * vocabulary)), best, axis=1
            )
            grew = ops.take_along_axis(grows, parent, axis=1)  # (B, K)
            generated = ops.take_along_axis(new_length, parent, axis=1)
            finished = ops.logical_or(
                ops.take_along_axis(finished, parent, axis=1),
                ops.logical_and(grew, self._is_end(token)),
            )
            source_rows = ops.reshape(row_offset + parent, (rows,))  # (N,)
            tokens = ops.take(tokens, source_rows, axis=0)  # (N, L)
            tokens = ops.slice_update(
                tokens, (0, index), ops.reshape(token, (rows, 1))
            )
            caches = [
                tuple(ops.take(c, source_rows, axis=0) for c in cache)
                for cache in caches
            ]
            return index + 1, tokens, caches, scores, generated, finished

        _, tokens, _, scores, generated, _ = ops.while_loop(
            cond, body, (start, tokens, caches, scores, generated, finished)
        )
        normalized = scores / lp.length_penalty(generated, alpha)  # (B, K)
        return ops.reshape(tokens, (batch, beams, length)), normalized
