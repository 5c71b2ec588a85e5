"""BERT-style masked language model builder."""

import keras

from keras_attention.layers.transformer import block_components
from keras_attention.layers.transformer.feed_forward import GATED_ACTIVATIONS
from keras_attention.models import model_parts as parts
from keras_attention.models.builder_model import BuilderModel
from keras_attention.models.builder_model import register_graph


@register_graph("masked_lm")
def _masked_lm_graph(
    vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
    intermediate_dim, dropout, activation, norm_first, layer_norm_epsilon,
    normalization, position_encoding, position_scheme, num_key_value_heads,
    attention_kernel="dot_product", attention_kernel_options=None,
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
    # The MLM head (BERT): dense + activation + norm, then the tied table.
    head_activation = "gelu" if activation in GATED_ACTIVATIONS else activation
    x = keras.layers.Dense(hidden_dim, activation=head_activation, name="mlm_dense")(x)
    x = block_components.make_norm(
        normalization, layer_norm_epsilon, None, "mlm_norm"
    )(x)  # (B, T, E)
    logits = embedding.token_embedding(x, reverse=True)  # (B, T, V)
    return token_ids, logits


def masked_lm(
    vocabulary_size,
    sequence_length,
    num_layers,
    hidden_dim,
    num_heads,
    intermediate_dim,
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
    name="masked_lm",
):
    """A BERT-style bidirectional encoder with a masked-language-model head.

    `token_ids -> TokenAndPositionEmbedding -> dropout -> num_layers x
    TransformerEncoderBlock -> Dense(hidden_dim, activation) -> norm ->
    logits` with the output projection tied to the token embedding table.
    Every position gets logits; train on data from `mlm_mask_tokens`
    (inputs with [MASK]/random/unchanged tokens, labels, and sample weights
    that are 1 only at the selected positions). Token id 0 is padding and is
    masked in every block.

    Shape letters: B batch, T length (at most `sequence_length`), V
    `vocabulary_size`.

    Args:
        vocabulary_size: number of token ids V (id 0 is padding).
        sequence_length: maximum sequence length.
        num_layers: number of encoder blocks.
        hidden_dim: model width; a multiple of `num_heads`.
        num_heads: number of attention heads.
        intermediate_dim: width of the feed-forward hidden layer.
        dropout: dropout rate after the embeddings and in the blocks, in
            `[0, 1)`.
        activation: activation of the feed-forward layers and of the MLM
            head's dense layer (GELU for a gated variant).
        norm_first: pre-LN blocks with a final norm when `True`, post-LN
            (BERT) when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_encoding: `"learned"` (BERT) or `"sinusoidal"`.
        position_scheme: `None`, `"rotary"`, `"relative"` or `"alibi"`.
        num_key_value_heads: key/value heads for grouped-query attention.
        attention_kernel: the blocks' attention: `"dot_product"` (exact),
            `"performer"`, `"local"`, `"big_bird"`, or `"linformer"` with
            its `sequence_length` option, as in `transformer_classifier`
            (BigBird's and Longformer's encoders were pre-trained this way).
        attention_kernel_options: optional dict of the kernel layer's own
            settings, passed to every block, e.g. `{"window_size": 32}` for
            `"local"`. `"big_bird"`'s `pattern_seed` (default 0) is that of
            the first block; block `i` uses `pattern_seed + i`.
        name: the model name.

    Returns:
        A `BuilderModel` (functional `keras.Model`) mapping
        `{"token_ids": (B, T) int}` to `(B, T, V)` logits.

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
    model = ka.models.masked_lm(vocabulary_size=30, sequence_length=8,
                                num_layers=1, hidden_dim=16, num_heads=2,
                                intermediate_dim=32)
    logits = model(np.array([[5, 3, 9, 0]]))  # (1, 4, 30)
    ```

    References:
        Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding", section 3.1.
    """
    parts.check_transformer_arguments(
        vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
        intermediate_dim, dropout, norm_first, layer_norm_epsilon,
        normalization, position_encoding, position_scheme, num_key_value_heads,
    )
    parts.check_activation_name(activation)
    attention_kernel_options = parts.check_attention_kernel(
        attention_kernel, position_scheme, attention_kernel_options
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
        attention_kernel=attention_kernel,
        attention_kernel_options=attention_kernel_options,
    )
    return BuilderModel("masked_lm", arguments, name=name)
