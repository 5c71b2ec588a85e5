"""Encoder-decoder Transformer builder (Vaswani et al. 2017)."""

import keras

from keras_attention.models import model_parts as parts
from keras_attention.models.builder_model import BuilderModel
from keras_attention.models.builder_model import register_graph
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int


@register_graph("transformer_translator")
def _translator_graph(
    vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
    intermediate_dim, num_decoder_layers, target_vocabulary_size, dropout,
    activation, norm_first, layer_norm_epsilon, normalization,
    position_encoding, position_scheme, num_key_value_heads,
    share_embeddings, tie_output_embedding, scale_embeddings,
    attention_kernel="dot_product", attention_kernel_options=None,
    decoder_attention_kernel="dot_product", decoder_attention_kernel_options=None,
):
    source_ids = keras.Input(shape=(None,), dtype="int32", name="source_ids")
    target_ids = keras.Input(shape=(None,), dtype="int32", name="target_ids")
    target_vocabulary_size = target_vocabulary_size or vocabulary_size

    def embedding(size, name):
        return parts.make_embedding(
            size, sequence_length, hidden_dim, position_encoding,
            scale_embeddings, name,
        )

    if share_embeddings:
        source_embedding = target_embedding = embedding(vocabulary_size, "embedding")
    else:
        source_embedding = embedding(vocabulary_size, "source_embedding")
        target_embedding = embedding(target_vocabulary_size, "target_embedding")
    block_kwargs = parts.block_arguments(
        num_heads, intermediate_dim, num_key_value_heads, dropout, activation,
        norm_first, layer_norm_epsilon, normalization, position_scheme,
        attention_kernel, attention_kernel_options,
    )
    # The decoder's own kernel attends the target; its cross-attention stays
    # exact (a cross-attention cache for decoding; sources need no pattern).
    decoder_kwargs = {
        **block_kwargs,
        "attention_kernel": decoder_attention_kernel,
        "attention_kernel_options": decoder_attention_kernel_options,
        "cross_attention_kernel": "dot_product",
    }

    x = source_embedding(source_ids)  # (B, S, E), mask: source_ids != 0
    x = keras.layers.Dropout(dropout, name="source_dropout")(x)
    encoded = parts.encoder_stack(x, num_layers, block_kwargs)  # (B, S, E)

    y = target_embedding(target_ids)  # (B, T, E), mask: target_ids != 0
    y = keras.layers.Dropout(dropout, name="target_dropout")(y)
    y = parts.decoder_stack(
        y, num_decoder_layers or num_layers, decoder_kwargs, encoded
    )  # (B, T, E)
    logits = parts.output_logits(
        y, target_embedding, tie_output_embedding, target_vocabulary_size
    )  # (B, T, V)
    return {"source_ids": source_ids, "target_ids": target_ids}, logits


def transformer_translator(
    vocabulary_size,
    sequence_length,
    num_layers,
    hidden_dim,
    num_heads,
    intermediate_dim,
    num_decoder_layers=None,
    target_vocabulary_size=None,
    dropout=0.1,
    activation="relu",
    norm_first=False,
    layer_norm_epsilon=1e-6,
    normalization="layer_norm",
    position_encoding="sinusoidal",
    position_scheme=None,
    num_key_value_heads=None,
    share_embeddings=False,
    tie_output_embedding=True,
    scale_embeddings=True,
    attention_kernel="dot_product",
    attention_kernel_options=None,
    decoder_attention_kernel="dot_product",
    decoder_attention_kernel_options=None,
    name="transformer_translator",
):
    """The encoder-decoder Transformer of "Attention Is All You Need".

    The encoder embeds `source_ids` (token + position, scaled by
    `sqrt(hidden_dim)`, dropout) and runs `num_layers`
    `TransformerEncoderBlock`s; the decoder embeds `target_ids` (the target
    shifted right, starting with a start token) and runs
    `num_decoder_layers` `TransformerDecoderBlock`s with causal
    self-attention and cross-attention over the encoder output; the logits
    reuse the target embedding table (`tie_output_embedding`). With
    `share_embeddings=True` the source and target share one vocabulary and
    one embedding layer, so the whole model holds a single embedding matrix,
    as in the paper (section 3.4).

    Token id 0 is padding on both sides: the embeddings start Keras masks
    that reach every block and the cross-attention, so right-padded batches
    need no extra inputs. Decode with
    `keras_attention.generation.Seq2SeqGenerator`.

    What `model.count_params()` counts: the embedding table(s) (one with
    `share_embeddings`; the output projection adds nothing when tied, a
    `hidden_dim x V` kernel plus bias when not), learned position tables
    (`position_encoding="learned"`; sinusoidal positions have no weights),
    four biased projections per attention layer, the two feed-forward
    layers, two (encoder) or three (decoder) normalization layers per block,
    and the final normalizations of a pre-LN model. The paper's base
    configuration (6 + 6 layers, hidden 512, 8 heads, intermediate 2048,
    shared vocabulary 37000, tied, sinusoidal) has 63.1M parameters (paper:
    65M), the big one (hidden 1024, 16 heads, intermediate 4096) 214.2M
    (paper: 213M).

    Shape letters: B batch, S source length, T target length (each at most
    `sequence_length`), V target vocabulary size.

    Args:
        vocabulary_size: number of source token ids (and target ids unless
            `target_vocabulary_size` is given); id 0 is padding.
        sequence_length: maximum source and target length.
        num_layers: number of encoder blocks (and decoder blocks unless
            `num_decoder_layers` is given).
        hidden_dim: model width E (d_model); a multiple of `num_heads`.
        num_heads: number of attention heads.
        intermediate_dim: width of the feed-forward hidden layer (d_ff).
        num_decoder_layers: number of decoder blocks; defaults to
            `num_layers`.
        target_vocabulary_size: number of target token ids; defaults to
            `vocabulary_size`.
        dropout: dropout rate after the embeddings, on each sub-layer output
            and on the attention weights (the paper's P_drop), in `[0, 1)`.
        activation: feed-forward activation (`"relu"` in the paper).
        norm_first: pre-LN blocks with final norms when `True`, the paper's
            post-LN when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_encoding: `"sinusoidal"` (the paper's) or `"learned"`.
        position_scheme: `None`, `"rotary"`, `"relative"` or `"alibi"`
            positions inside self-attention.
        num_key_value_heads: key/value heads for grouped-query attention.
        share_embeddings: whether source and target share one embedding
            layer (requires equal vocabularies).
        tie_output_embedding: whether the logits reuse the target embedding
            table.
        scale_embeddings: whether token embeddings are multiplied by
            `sqrt(hidden_dim)` (paper section 3.4).
        attention_kernel: the encoder's self-attention: `"dot_product"`
            (exact), `"performer"` (random-feature linear attention; with
            `position_scheme` `None` or `"rotary"`), `"local"` (a sliding
            window of 128 keys per side) or `"big_bird"` (blocks of 64:
            local, global and random), each with its layer's default
            options. `"linformer"` needs its `sequence_length` option (a
            static key length); give `"big_bird"` one too when the model
            will serve sources of any length (an export): it pads them to
            it.
        attention_kernel_options: optional dict of the encoder kernel
            layer's own settings, passed to every encoder block, e.g.
            `{"window_size": 32}` for `"local"`. `"big_bird"`'s
            `pattern_seed` (default 0) is that of the first block; block `i`
            uses `pattern_seed + i`.
        decoder_attention_kernel: the decoder's causal self-attention, one
            of the kernels with cached decoding: `"dot_product"` (default),
            `"performer"`, `"local"` or `"big_bird"` (its `sequence_length`
            option defaults to `sequence_length`, so generation follows the
            pattern the model trained with). The cross-attention stays
            exact (`cross_attention_kernel="dot_product"`), with its
            cross-attention cache, so `Seq2SeqGenerator` decodes any of
            them.
        decoder_attention_kernel_options: optional dict of the decoder
            kernel layer's own settings, passed to every decoder block
            (`"big_bird"`: block `i` uses `pattern_seed + i`).
        name: the model name.

    Returns:
        A `BuilderModel` (functional `keras.Model`) mapping
        `{"source_ids": (B, S) int, "target_ids": (B, T) int}` to
        `(B, T, V)` logits.

    Raises:
        ValueError: on a non-positive size, `hidden_dim` not divisible by
            `num_heads`, a dropout rate outside `[0, 1)`, an unknown option,
            `share_embeddings=True` with different vocabulary sizes, or an
            `attention_kernel` the builder cannot use or that does not take
            `position_scheme`, a `decoder_attention_kernel` without cached
            decoding, or kernel options its layer refuses.
        TypeError: on kernel options that are not a dict.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    model = ka.models.transformer_translator(
        vocabulary_size=30, sequence_length=12, num_layers=1, hidden_dim=16,
        num_heads=2, intermediate_dim=32, share_embeddings=True)
    logits = model({"source_ids": np.array([[4, 5, 6, 0]]),
                    "target_ids": np.array([[1, 6, 5]])})  # (1, 3, 30)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", sections 3 and 6.
        Press & Wolf, 2017, "Using the Output Embedding to Improve Language
        Models".
    """
    parts.check_transformer_arguments(
        vocabulary_size, sequence_length, num_layers, hidden_dim, num_heads,
        intermediate_dim, dropout, norm_first, layer_norm_epsilon,
        normalization, position_encoding, position_scheme, num_key_value_heads,
    )
    check_positive_int(num_decoder_layers, "num_decoder_layers", allow_none=True)
    check_positive_int(target_vocabulary_size, "target_vocabulary_size", allow_none=True)
    parts.check_activation_name(activation)
    check_bool(share_embeddings, "share_embeddings")
    check_bool(tie_output_embedding, "tie_output_embedding")
    check_bool(scale_embeddings, "scale_embeddings")
    attention_kernel_options = parts.check_attention_kernel(
        attention_kernel, position_scheme, attention_kernel_options
    )
    decoder_attention_kernel_options = parts.check_attention_kernel(
        decoder_attention_kernel, position_scheme, decoder_attention_kernel_options,
        causal_decoding=True, argument="decoder_attention_kernel",
    )
    decoder_attention_kernel_options = parts.with_sequence_length(
        decoder_attention_kernel, decoder_attention_kernel_options, sequence_length
    )
    if (
        share_embeddings
        and target_vocabulary_size is not None
        and target_vocabulary_size != vocabulary_size
    ):
        raise ValueError(
            "Received an invalid value for argument `target_vocabulary_size`, "
            "expected the source `vocabulary_size` "
            f"({vocabulary_size}) when `share_embeddings=True`. Received: "
            f"target_vocabulary_size={target_vocabulary_size}"
        )
    arguments = dict(
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        num_decoder_layers=num_decoder_layers,
        target_vocabulary_size=target_vocabulary_size,
        dropout=dropout,
        activation=activation,
        norm_first=norm_first,
        layer_norm_epsilon=layer_norm_epsilon,
        normalization=normalization,
        position_encoding=position_encoding,
        position_scheme=position_scheme,
        num_key_value_heads=num_key_value_heads,
        share_embeddings=share_embeddings,
        tie_output_embedding=tie_output_embedding,
        scale_embeddings=scale_embeddings,
        attention_kernel=attention_kernel,
        attention_kernel_options=attention_kernel_options,
        decoder_attention_kernel=decoder_attention_kernel,
        decoder_attention_kernel_options=decoder_attention_kernel_options,
    )
    return BuilderModel("transformer_translator", arguments, name=name)
