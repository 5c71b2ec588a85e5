"""Generation with a `transformer_translator` model."""

import numbers

import numpy as np

from keras_attention.generation.decoding_parts import check_model
from keras_attention.generation.generator import Generator
from keras_attention.generation.generator import check_token_ids


class Seq2SeqGenerator(Generator):
    """Translates source sequences with a `transformer_translator` model.

    The encoder runs once per call; each decoder block's cross-attention
    keys/values are projected once and kept in a cache, and the target is
    decoded over the self-attention KV caches inside one compiled loop (see
    `greedy_search`, `sample` and `beam_search`). A second call with the
    same shapes reuses the compiled loop (`trace_count` does not grow).

    `inputs` is either the `(B, S)` source ids (padding 0 anywhere is
    masked), in which case every target starts with `start_token_id`, or a
    dict `{"source_ids": (B, S), "target_ids": (B, P)}` whose right-padded
    target prefixes are continued. Token id 0 is never generated. Results
    are `(B, P + max_new_tokens)` target arrays: the prefix (the start
    token), the continuation, and 0 after the end token.

    Args:
        model: a model built by `keras_attention.models.transformer_translator`.
        start_token_id: the id that starts every target sequence.
        end_token_id: `None`, an id or a sequence of ids that end a row.
        jit_compile: whether the TensorFlow loop is compiled with XLA.

    Raises:
        ValueError: if `model` is not a `transformer_translator` model or a
            token id is not a valid non-padding target id.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    model = ka.models.transformer_translator(
        vocabulary_size=20, sequence_length=8, num_layers=1, hidden_dim=8,
        num_heads=2, intermediate_dim=16)
    generator = ka.generation.Seq2SeqGenerator(model, start_token_id=1,
                                               end_token_id=2)
    source = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    tokens, scores = generator.beam_search(source, max_new_tokens=4,
                                           beam_width=2)
    tokens.shape  # (2, 5)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", section 6.1
        (beam search, beam 4, length penalty 0.6).
        Wu et al., 2016, "Google's Neural Machine Translation System",
        section 7.
    """

    def __init__(self, model, start_token_id, end_token_id=None, jit_compile=True):
        check_model(model, "transformer_translator")
        super().__init__(model, end_token_id=end_token_id, jit_compile=jit_compile)
        vocabulary = self.parts.vocabulary_size
        if (
            not isinstance(start_token_id, numbers.Integral)
            or isinstance(start_token_id, bool)
            or not 1 <= start_token_id < vocabulary
        ):
            raise ValueError(
                "Received an invalid value for argument `start_token_id`, "
                f"expected an id in [1, vocabulary_size={vocabulary}). "
                f"Received: start_token_id={start_token_id!r}"
            )
        self.start_token_id = int(start_token_id)

    def _prepare_inputs(self, inputs):
        prompt = None
        if isinstance(inputs, dict):
            if "source_ids" not in inputs or not set(inputs) <= {"source_ids", "target_ids"}:
                raise ValueError(
                    "Received an invalid value for argument `inputs`, expected "
                    "source ids or a dict with the key 'source_ids' (and "
                    f"optionally 'target_ids'). Received: keys {sorted(inputs)}"
                )
            prompt = inputs.get("target_ids")
            inputs = inputs["source_ids"]
        source = check_token_ids(
            inputs, "source_ids", self.parts.source_vocabulary_size,
            self.parts.sequence_length, right_padded=False,
        )
        if prompt is None:
            prompt = np.full((source.shape[0], 1), self.start_token_id, "int32")
        prompt = check_token_ids(
            prompt, "target_ids", self.parts.vocabulary_size,
            self.parts.sequence_length, right_padded=True,
        )
        if prompt.shape[0] != source.shape[0]:
            raise ValueError(
                "Received incompatible arguments `source_ids` and "
                "`target_ids`, expected the same batch size. Received: "
                f"source_ids.shape={source.shape}, target_ids.shape={prompt.shape}"
            )
        return prompt, source
