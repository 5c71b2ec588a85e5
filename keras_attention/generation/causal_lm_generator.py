"""Generation with a `causal_lm` model."""

from keras_attention.generation.decoding_parts import check_model
from keras_attention.generation.generator import Generator
from keras_attention.generation.generator import check_token_ids


class CausalLMGenerator(Generator):
    """Generates continuations of prompts with a `causal_lm` model.

    Decoding runs over the self-attention KV caches of the model's decoder
    blocks inside one compiled loop (see `greedy_search`, `sample` and
    `beam_search`): the prompt is prefilled in one pass, then each step
    feeds a single token. A second call with the same shapes reuses the
    compiled loop (`trace_count` does not grow).

    Prompts are `(B, P)` token ids, right-padded with 0: rows may have
    different lengths, and each row starts generating right after its own
    prompt (`max_new_tokens` tokens at most) while the others are still
    reading theirs. Token id 0 is padding and is never generated. Results
    are `(B, P + max_new_tokens)` arrays: the prompt, the continuation, and
    0 after the end token.

    Args:
        model: a model built by `keras_attention.models.causal_lm`.
        end_token_id: `None`, an id or a sequence of ids that end a row.
        jit_compile: whether the TensorFlow loop is compiled with XLA.

    Raises:
        ValueError: if `model` is not a `causal_lm` model or
            `end_token_id` is not a valid non-padding id.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    model = ka.models.causal_lm(vocabulary_size=20, sequence_length=8,
                                num_layers=1, hidden_dim=8, num_heads=2,
                                intermediate_dim=16)
    generator = ka.generation.CausalLMGenerator(model, end_token_id=2)
    prompts = np.array([[5, 6, 7], [4, 0, 0]])  # right-padded
    generator.greedy_search(prompts, max_new_tokens=3).shape  # (2, 6)
    ```

    References:
        Wu et al., 2016, "Google's Neural Machine Translation System"
        (beam search with length penalty).
        Holtzman et al., 2020, "The Curious Case of Neural Text
        Degeneration" (top-p sampling).
    """

    def __init__(self, model, end_token_id=None, jit_compile=True):
        check_model(model, "causal_lm")
        super().__init__(model, end_token_id=end_token_id, jit_compile=jit_compile)

    def _prepare_inputs(self, inputs):
        if isinstance(inputs, dict):
            if set(inputs) != {"token_ids"}:
                raise ValueError(
                    "Received an invalid value for argument `inputs`, expected "
                    "token ids or a dict with the key 'token_ids'. Received: "
                    f"keys {sorted(inputs)}"
                )
            inputs = inputs["token_ids"]
        prompt = check_token_ids(
            inputs, "inputs", self.parts.vocabulary_size,
            self.parts.sequence_length, right_padded=True,
        )
        return prompt, None
