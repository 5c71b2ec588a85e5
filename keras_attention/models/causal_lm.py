"""GPT-style decoder-only language model builder."""

import keras

from keras_attention.models import model_parts as parts
from keras_attention.models.builder_model import BuilderModel
from keras_attention.models.builder_model import register_graph
from keras_attention.utils.validation import check_bool


@register_graph("causal_lm")
def _causal_lm_graph(
    vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
    intermediate_dim, dropout, activation, norm_first, layer_norm_epsilon,
    normalization, position_encoding, position_scheme, num_key_value_heads,
    tie_output_embedding, attention_kernel="dot_product", attention_kernel_options=None,
):
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    embedding = parts.make_embedding(
        vocabulary_size, sequence_length, hidden_dim, position_encoding,
        scale_embeddings=False, name="embedding",
    )
    x = embedding(token_ids)  # (B, T, E), Keras mask: token_ids != 0
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    block_kwargs = parts.block_arguments(
        num_heads, intermediate_dim, num_key_value_heads, dropout, activation,
        norm_first, layer_norm_epsilon, normalization, position_scheme,
        attention_kernel, attention_kernel_options,
    )
    x = parts.decoder_stack(x, num_layers, block_kwargs)  # (B, T, E)
    logits = parts.output_logits(x, embedding, tie_output_embedding, vocabulary_size)
    return token_ids, logits


def causal_lm(
    vocabulary_size,
    sequence_length,
    num_layers,
    hidden_dim,
    num_heads,
    intermediate_dim,
    dropout=0.1,
    activation="gelu",
    norm_first=True,
    layer_norm_epsilon=1e-5,
    normalization="layer_norm",
    position_encoding="learned",
    position_scheme=None,
    num_key_value_heads=None,
    tie_output_embedding=True,
    attention_kernel="dot_product",
    attention_kernel_options=None,
    name="causal_lm",
):
    """A GPT-style decoder-only Transformer language model.

    `token_ids -> TokenAndPositionEmbedding -> dropout -> num_layers x
    TransformerDecoderBlock (causal self-attention, no cross-attention) ->
    final norm (pre-LN) -> logits`. The output projection reuses the token
    embedding table (`tie_output_embedding=True`, Press & Wolf 2017) or is a
    separate `Dense` layer named `"lm_head"`.

    Token id 0 is padding: the embedding starts a Keras mask that reaches
    every block, so padded keys are never attended (right-pad batches of
    different lengths). Train with next-token targets, e.g. inputs
    `ids[:, :-1]`, targets `ids[:, 1:]`, and a loss that ignores id 0 (such
    as `keras_attention.training.MaskedSparseCategoricalCrossentropy`).
    Generate with `keras_attention.generation.CausalLMGenerator`.

    Shape letters: B batch, T length (at most `sequence_length`), V
    `vocabulary_size`.

    Args:
        vocabulary_size: number of token ids V (id 0 is padding).
        sequence_length: maximum sequence length (learned position table
            size; also the longest generated sequence).
        num_layers: number of decoder blocks.
        hidden_dim: model width E; a multiple of `num_heads`.
        num_heads: number of attention heads.
        intermediate_dim: width of the feed-forward hidden layer.
        dropout: dropout rate after the embeddings, on each sub-layer output
            and on the attention weights, in `[0, 1)`.
        activation: feed-forward activation (see `FeedForward`).
        norm_first: pre-LN blocks plus a final norm (GPT-2) when `True`,
            post-LN blocks (the original Transformer) when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_encoding: `"learned"` or `"sinusoidal"` absolute positions.
        position_scheme: `None`, `"rotary"`, `"relative"` or `"alibi"`
            positions inside self-attention (added to the absolute ones).
        num_key_value_heads: key/value heads for grouped-query attention
            (`None`: one per query head).
        tie_output_embedding: whether the logits reuse the embedding table.
        attention_kernel: the blocks' causal self-attention: `"dot_product"`
            (exact), `"performer"` (FAVOR+ with prefix sums; position
            scheme `None` or `"rotary"`), `"local"` (a sliding window of
            128 earlier keys, as in Longformer / Mistral) or `"big_bird"`
            (blocks of 64: window, global and random earlier blocks; its
            `sequence_length` option defaults to `sequence_length`, so
            training, full passes and generation share one block pattern).
            Each keeps a KV cache, so `CausalLMGenerator` decodes with it.
        attention_kernel_options: optional dict of the kernel layer's own
            settings, passed to every block, e.g. `{"window_size": 32}`.
            `"big_bird"`'s `pattern_seed` (default 0) is that of the first
            block; block `i` uses `pattern_seed + i`.
        name: the model name.

    Returns:
        A `BuilderModel` (functional `keras.Model`) mapping
        `{"token_ids": (B, T) int}` to `(B, T, V)` logits.

    Raises:
        ValueError: on a non-positive size, `hidden_dim` not divisible by
            `num_heads`, a dropout rate outside `[0, 1)`, an unknown
            option, an `attention_kernel` without cached causal decoding or
            that does not take `position_scheme`, or kernel options its
            layer refuses.
        TypeError: on `attention_kernel_options` that are not a dict.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    model = ka.models.causal_lm(vocabulary_size=50, sequence_length=16,
                                num_layers=2, hidden_dim=16, num_heads=2,
                                intermediate_dim=32)
    logits = model(np.array([[5, 6, 7, 0]]))  # (1, 4, 50)
    ```

    References:
        Radford et al., 2019, "Language Models are Unsupervised Multitask
        Learners" (GPT-2, pre-LN decoder-only).
        Press & Wolf, 2017, "Using the Output Embedding to Improve Language
        Models" (tied output embedding).
    """
    parts.check_transformer_arguments(
        vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
        intermediate_dim, dropout, norm_first, layer_norm_epsilon,
        normalization, position_encoding, position_scheme, num_key_value_heads,
    )
    parts.check_activation_name(activation)
    check_bool(tie_output_embedding, "tie_output_embedding")
    attention_kernel_options = parts.check_attention_kernel(
        attention_kernel, position_scheme, attention_kernel_options,
        causal_decoding=True,
    )
    # BigBird's pattern depends on the length: fix it to the longest one, so
    # cached steps over any buffer follow the pattern the model trained with.
    attention_kernel_options = parts.with_sequence_length(
        attention_kernel, attention_kernel_options, sequence_length
    )
    arguments = dict(
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        dropout=dropout,
        activation=activation,
        norm_first=norm_first,
        layer_norm_epsilon=layer_norm_epsilon,
        normalization=normalization,
        position_encoding=position_encoding,
        position_scheme=position_scheme,
        num_key_value_heads=num_key_value_heads,
        tie_output_embedding=tie_output_embedding,
        attention_kernel=attention_kernel,
        attention_kernel_options=attention_kernel_options,
    )
    return BuilderModel("causal_lm", arguments, name=name)
