"""Transformer encoder sequence classifier builder."""

import keras

from keras_attention.layers.attention import AttentionPooling
from keras_attention.models import model_parts as parts
from keras_attention.models.builder_model import BuilderModel
from keras_attention.models.builder_model import register_graph
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_int

POOLINGS = ("cls", "mean", "attention")


@register_graph("transformer_classifier")
def _classifier_graph(
    vocabulary_size, sequence_length, num_classes, num_layers, hidden_dim,
    num_heads, intermediate_dim, pooling, dropout, activation, norm_first,
    layer_norm_epsilon, normalization, position_encoding, position_scheme,
    num_key_value_heads, attention_kernel="dot_product", attention_kernel_options=None,
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
    x = parts.encoder_stack(x, num_layers, block_kwargs)  # (B, T, E)
    if pooling == "cls":
        pooled = parts.FirstTokenPooling(name="pooling")(x)  # (B, E)
    elif pooling == "mean":
        pooled = keras.layers.GlobalAveragePooling1D(name="pooling")(x)  # (B, E)
    else:
        pooled = AttentionPooling(num_heads=num_heads, name="pooling")(x)  # (B, E)
    pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    logits = keras.layers.Dense(num_classes, name="classifier")(pooled)  # (B, C)
    return token_ids, logits


def transformer_classifier(
    vocabulary_size,
    sequence_length,
    num_classes,
    num_layers,
    hidden_dim,
    num_heads,
    intermediate_dim,
    pooling="cls",
    dropout=0.1,
    activation="gelu",
    norm_first=False,
    layer_norm_epsilon=1e-5,
    normalization="layer_norm",
    position_encoding="learned",
    position_scheme=None,
    num_key_value_heads=None,
    attention_kernel="dot_product",
    attention_kernel_options=None,
    name="transformer_classifier",
):
    """A Transformer encoder that classifies token sequences.

    `token_ids -> TokenAndPositionEmbedding -> dropout -> num_layers x
    TransformerEncoderBlock -> pooling -> dropout -> Dense(num_classes)`.
    Token id 0 is padding: the Keras mask reaches every block and the
    pooling, so padded positions change neither attention nor the pooled
    vector. Pooling:

    - `"cls"`: the hidden state of the first token (BERT's [CLS]); put a
      classification token id first in every sequence.
    - `"mean"`: the average over real (unmasked) tokens.
    - `"attention"`: `AttentionPooling` with a learned query per head.

    Shape letters: B batch, T length (at most `sequence_length`), C
    `num_classes`.

    Args:
        vocabulary_size: number of token ids (id 0 is padding).
        sequence_length: maximum sequence length.
        num_classes: number of output logits C.
        num_layers: number of encoder blocks.
        hidden_dim: model width; a multiple of `num_heads`.
        num_heads: number of attention heads.
        intermediate_dim: width of the feed-forward hidden layer.
        pooling: `"cls"`, `"mean"` or `"attention"`.
        dropout: dropout rate after the embeddings, in the blocks and before
            the classifier, in `[0, 1)`.
        activation: feed-forward activation.
        norm_first: pre-LN blocks with a final norm when `True`, post-LN
            when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_encoding: `"learned"` or `"sinusoidal"`.
        position_scheme: `None`, `"rotary"`, `"relative"` or `"alibi"`.
        num_key_value_heads: key/value heads for grouped-query attention.
        attention_kernel: the blocks' attention: `"dot_product"` (exact,
            `MultiHeadAttention`), `"performer"` (random-feature linear
            attention; with `position_scheme` `None` or `"rotary"`),
            `"local"` (a sliding window of 128 keys per side) or
            `"big_bird"` (blocks of 64: local, global and random), with
            their layers' default options, or `"linformer"` (with its
            `sequence_length` option: its projections need a static key
            length).
        attention_kernel_options: optional dict of the kernel layer's own
            settings, passed to every block (`TransformerEncoderBlock`),
            e.g. `{"window_size": 32}` for `"local"` or
            `{"sequence_length": 512, "projection_dim": 128}` for
            `"linformer"`. `"big_bird"`'s `pattern_seed` (default 0) is
            that of the first block; block `i` uses `pattern_seed + i`, so
            every layer draws its own random blocks.
        name: the model name.

    Returns:
        A `BuilderModel` (functional `keras.Model`) mapping
        `{"token_ids": (B, T) int}` to `(B, C)` logits.

    Raises:
        ValueError: on a non-positive size, `hidden_dim` not divisible by
            `num_heads`, a dropout rate outside `[0, 1)`, an unknown
            option, an `attention_kernel` the builder cannot use or that
            does not take `position_scheme`, or kernel options its layer
            refuses.
        TypeError: on `attention_kernel_options` that are not a dict.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    model = ka.models.transformer_classifier(
        vocabulary_size=30, sequence_length=8, num_classes=3, num_layers=1,
        hidden_dim=16, num_heads=2, intermediate_dim=32, pooling="mean")
    logits = model(np.array([[2, 7, 9, 0]]))  # (1, 3)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need".
        Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding" ([CLS] pooling).
    """
    parts.check_transformer_arguments(
        vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
        intermediate_dim, dropout, norm_first, layer_norm_epsilon,
        normalization, position_encoding, position_scheme, num_key_value_heads,
    )
    check_positive_int(num_classes, "num_classes")
    check_one_of(pooling, "pooling", POOLINGS)
    parts.check_activation_name(activation)
    attention_kernel_options = parts.check_attention_kernel(
        attention_kernel, position_scheme, attention_kernel_options
    )
    arguments = dict(
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        num_classes=num_classes,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        pooling=pooling,
        dropout=dropout,
        activation=activation,
        norm_first=norm_first,
        layer_norm_epsilon=layer_norm_epsilon,
        normalization=normalization,
        position_encoding=position_encoding,
        position_scheme=position_scheme,
        num_key_value_heads=num_key_value_heads,
        attention_kernel=attention_kernel,
        attention_kernel_options=attention_kernel_options,
    )
    return BuilderModel("transformer_classifier", arguments, name=name)
