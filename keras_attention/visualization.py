"""Attention heat maps: collect the attention weights of a model, plot them.

`attention_scores` runs a model built by `keras_attention.models` layer by
layer (inference mode: no dropout) and returns the attention weights of
every attention sub-layer, keyed `"<block name>/<kind>"`, e.g.
`"encoder_block_0/self_attention"` or `"decoder_block_1/cross_attention"`.
Layers of a kernel that forms no token-by-token weights (Performer,
Linformer: `returns_attention_scores = False`) are run but have no entry;
`attention_layer_names` lists the entries a model has. `plot_attention`
draws one `(T, S)` map, one head or all heads side by
side, with the tokens on the axes, into a PNG file (matplotlib's Agg
renderer: no display needed). `plot_model_attention` does both for one
example and one layer.

Shape letters: B batch, H heads, T query length, S key length.
"""

import os

import numpy as np

from keras_attention.utils import validation

__all__ = [
    "attention_layer_names", "attention_scores", "plot_attention", "plot_model_attention",
]

_BUILDERS = ("transformer_translator", "transformer_classifier", "masked_lm", "causal_lm")


def _to_numpy(tensor):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _run_encoder(model, token_ids, embedding_name, scores):
    """Embedding + encoder blocks (+ final norm); fills `scores`."""
    import keras

    arguments = model.arguments
    mask = keras.ops.not_equal(token_ids, 0)  # (B, S)
    x = model.get_layer(embedding_name)(token_ids)  # (B, S, E)
    for i in range(arguments["num_layers"]):
        name = f"encoder_block_{i}"
        block = model.get_layer(name)
        if not _returns_scores(block.self_attention):
            x = block(x, padding_mask=mask, training=False)
            continue
        x, weights = block(
            x, padding_mask=mask, return_attention_scores=True, training=False
        )
        scores[f"{name}/self_attention"] = _to_numpy(weights)  # (B, H, S, S)
    if arguments["norm_first"]:
        x = model.get_layer("encoder_final_norm")(x)
    return x, mask


def _run_decoder(model, token_ids, embedding_name, num_layers, scores, encoded=None):
    """Embedding + decoder blocks; fills `scores`."""
    import keras

    mask = keras.ops.not_equal(token_ids, 0)  # (B, T)
    y = model.get_layer(embedding_name)(token_ids)  # (B, T, E)
    for i in range(num_layers):
        name = f"decoder_block_{i}"
        block = model.get_layer(name)
        args, kwargs = (y,), dict(decoder_padding_mask=mask, training=False)
        if encoded is not None:
            args, kwargs["encoder_padding_mask"] = (y, encoded[0]), encoded[1]
        cross = getattr(block, "cross_attention", None)
        if not _returns_scores(block.self_attention) and not (
            cross is not None and _returns_scores(cross)
        ):
            y = block(*args, **kwargs)
            continue
        # The block returns the weights of the sub-layers that form them.
        y, weights = block(*args, return_attention_scores=True, **kwargs)
        for kind, value in weights.items():
            scores[f"{name}/{kind}"] = _to_numpy(value)  # (B, H, T, T or S)


def _returns_scores(attention):
    """Whether an attention layer forms token-by-token weights to return."""
    return getattr(attention, "returns_attention_scores", True)


def _check_builder(model):
    builder = getattr(model, "builder", None)
    if builder not in _BUILDERS:
        raise ValueError(
            "Received an invalid value for argument `model`, expected a model "
            "built by keras_attention.models (one of "
            f"{list(_BUILDERS)}). Received: {getattr(model, 'name', model)!r} "
            f"(builder={builder!r})"
        )
    return builder


def attention_layer_names(model):
    """The keys `attention_scores(model, ...)` returns, without running it.

    Attention layers of a kernel that forms no token-by-token weights
    (`PerformerAttention`, `LinformerAttention`) are left out, so the list
    is empty for a classifier with a Performer kernel, and holds the
    decoder's layers for a translator with a Performer encoder.

    Args:
        model: a model built by `keras_attention.models`.

    Returns:
        list of `"<block>/<kind>"` names, in layer order.

    Raises:
        ValueError: if `model` was not built by one of those builders.

    Example:

    ```python
    import keras_attention as ka
    from keras_attention.visualization import attention_layer_names
    model = ka.models.transformer_classifier(
        vocabulary_size=20, sequence_length=6, num_classes=2, num_layers=2,
        hidden_dim=8, num_heads=2, intermediate_dim=16)
    attention_layer_names(model)
    # ['encoder_block_0/self_attention', 'encoder_block_1/self_attention']
    ```
    """
    _check_builder(model)
    names = []
    for layer in model.layers:
        if not layer.name.startswith(("encoder_block_", "decoder_block_")):
            continue
        if _returns_scores(layer.self_attention):
            names.append(f"{layer.name}/self_attention")
        cross = getattr(layer, "cross_attention", None)
        if cross is not None and _returns_scores(cross):
            names.append(f"{layer.name}/cross_attention")
    return names


def attention_scores(model, inputs):
    """Attention weights of every attention layer of a built model.

    Works on the models of `keras_attention.models`
    (`transformer_translator`, `transformer_classifier`, `masked_lm`,
    `causal_lm`), which name their blocks `encoder_block_{i}` /
    `decoder_block_{i}`. The blocks run in inference mode with the padding
    masks the model itself uses (token id 0 is padding), so the weights are
    those of `model(inputs)`: each real query row sums to 1 over the real
    keys, padded keys get 0, decoder self-attention is causal.

    Args:
        model: a model built by `keras_attention.models`.
        inputs: the model's inputs: `{"source_ids": (B, S), "target_ids":
            (B, T)}` for a translator, `(B, T)` token ids otherwise.

    Returns:
        dict `"<block>/<kind>"` -> float NumPy array `(B, H, T, S)`, kinds
        `"self_attention"` and (translator decoder) `"cross_attention"`, in
        layer order (the keys of `attention_layer_names`: layers of a
        Performer or Linformer kernel have none).

    Raises:
        ValueError: if `model` was not built by one of those builders, or a
            translator gets no `source_ids` / `target_ids`.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    from keras_attention.visualization import attention_scores
    model = ka.models.transformer_classifier(
        vocabulary_size=20, sequence_length=6, num_classes=2, num_layers=1,
        hidden_dim=8, num_heads=2, intermediate_dim=16)
    scores = attention_scores(model, np.array([[2, 5, 6, 0]]))
    scores["encoder_block_0/self_attention"].shape  # (1, 2, 4, 4)
    ```
    """
    import keras

    builder = _check_builder(model)
    arguments = model.arguments
    scores = {}
    if builder == "transformer_translator":
        if not isinstance(inputs, dict) or not {"source_ids", "target_ids"} <= set(inputs):
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a "
                "dict with 'source_ids' and 'target_ids' for a translator. "
                f"Received: {type(inputs).__name__}"
            )
        shared = arguments["share_embeddings"]
        source = keras.ops.convert_to_tensor(inputs["source_ids"], "int32")
        target = keras.ops.convert_to_tensor(inputs["target_ids"], "int32")
        encoded = _run_encoder(
            model, source, "embedding" if shared else "source_embedding", scores
        )
        _run_decoder(
            model, target, "embedding" if shared else "target_embedding",
            arguments["num_decoder_layers"] or arguments["num_layers"], scores,
            encoded,
        )
        return scores
    if isinstance(inputs, dict):
        inputs = inputs["token_ids"]
    token_ids = keras.ops.convert_to_tensor(inputs, "int32")
    if builder == "causal_lm":
        _run_decoder(model, token_ids, "embedding", arguments["num_layers"], scores)
    else:
        _run_encoder(model, token_ids, "embedding", scores)
    return scores


def _check_head(head, num_heads):
    if head is None or head == "mean":
        return head
    if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not (
        0 <= head < num_heads
    ):
        raise ValueError(
            "Received an invalid value for argument `head`, expected None (all "
            f"heads), 'mean' or an int in [0, {num_heads}). Received: head={head!r}"
        )
    return int(head)


def plot_attention(
    weights, path, query_tokens=None, key_tokens=None, head=None, title=None
):
    """Write attention weights as a heat map PNG, tokens on the axes.

    Rows are queries (`query_tokens` on the y axis), columns keys
    (`key_tokens` on the x axis); darker cells get more weight.

    Args:
        weights: `(T, S)` weights of one head, or `(H, T, S)` of several.
        path: the PNG file to write (parent directories are created).
        query_tokens: `None` or `T` strings labelling the rows.
        key_tokens: `None` or `S` strings labelling the columns.
        head: for `(H, T, S)` weights: `None` plots every head side by side,
            an int one head, `"mean"` the average over heads.
        title: figure title.

    Returns:
        the matplotlib `Figure` (already saved; inspect or discard it).

    Raises:
        ValueError: for weights that are not of rank 2 or 3, token lists of
            the wrong length, or an invalid `head`.

    Example:

    ```python
    import os, tempfile
    import numpy as np
    from keras_attention.visualization import plot_attention
    path = os.path.join(tempfile.mkdtemp(), "map.png")
    figure = plot_attention(np.eye(3), path, ["a", "b", "c"], ["x", "y", "z"])
    os.path.getsize(path) > 0  # True
    ```
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    weights = np.asarray(weights, dtype="float32")
    if weights.ndim not in (2, 3):
        raise ValueError(
            "Received an invalid value for argument `weights`, expected a "
            "(T, S) or (H, T, S) array. Received: "
            f"weights.shape={weights.shape}"
        )
    if weights.ndim == 2:
        weights = weights[None]  # (1, T, S)
        head = None
    head = _check_head(head, weights.shape[0])
    if head == "mean":
        maps, labels = weights.mean(axis=0, keepdims=True), ["mean over heads"]
    elif head is None:
        maps = weights
        labels = [f"head {h}" for h in range(len(weights))] if len(weights) > 1 else [""]
    else:
        maps, labels = weights[head : head + 1], [f"head {head}"]
    queries, keys = weights.shape[1:]
    for name, tokens, size in (
        ("query_tokens", query_tokens, queries),
        ("key_tokens", key_tokens, keys),
    ):
        if tokens is not None and len(tokens) != size:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected "
                f"{size} tokens (the weights are {queries} x {keys}). "
                f"Received: {len(tokens)} tokens"
            )
    cell = 0.35
    width = max(3.0, cell * keys + 1.5)
    height = max(2.5, cell * queries + 1.5)
    figure = Figure(figsize=(width * len(maps), height))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(maps), squeeze=False)[0]
    for ax, matrix, label in zip(axes, maps, labels):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(matrix.max(), 1e-6))
        ax.set_xticks(range(keys))
        ax.set_yticks(range(queries))
        if key_tokens is not None:
            ax.set_xticklabels([str(t) for t in key_tokens], rotation=90)
        if query_tokens is not None:
            ax.set_yticklabels([str(t) for t in query_tokens])
        ax.set_xlabel("keys")
        ax.set_ylabel("queries")
        if label:
            ax.set_title(label)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        figure.suptitle(title)
        figure.tight_layout(rect=(0, 0, 1, 0.94))
    else:
        figure.tight_layout()
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=100)
    return figure


def plot_model_attention(
    model,
    inputs,
    path,
    layer=None,
    head=None,
    index=0,
    query_tokens=None,
    key_tokens=None,
    title=None,
):
    """Heat map of one attention layer of a model on one example.

    Computes `attention_scores(model, inputs)`, takes `layer` for example
    `index`, crops the padding (to the lengths of `query_tokens` /
    `key_tokens` when given, else to the non-padding ids) and calls
    `plot_attention`.

    Args:
        model: a model built by `keras_attention.models`.
        inputs: its inputs (see `attention_scores`).
        path: the PNG file to write.
        layer: a key of `attention_scores` (e.g.
            `"decoder_block_0/cross_attention"`), or an int indexing them
            in layer order (-1: the last); `None` takes the last layer.
        head: `None` (all heads), an int or `"mean"`.
        index: which example of the batch to plot.
        query_tokens: `None` or the token strings of the queries.
        key_tokens: `None` or the token strings of the keys.
        title: figure title (default: the layer name).

    Returns:
        `(layer name, Figure)`.

    Raises:
        ValueError: for an unknown `layer`, a model without attention
            weights (every layer Performer or Linformer), an `index` outside
            the batch,
            or the errors of `attention_scores` and `plot_attention`.

    Example:

    ```python
    import os, tempfile
    import numpy as np
    import keras_attention as ka
    from keras_attention.visualization import plot_model_attention
    model = ka.models.causal_lm(vocabulary_size=20, sequence_length=8,
                                num_layers=1, hidden_dim=8, num_heads=2,
                                intermediate_dim=16)
    path = os.path.join(tempfile.mkdtemp(), "lm.png")
    name, _ = plot_model_attention(model, np.array([[5, 6, 7]]), path, head=0)
    name  # 'decoder_block_0/self_attention'
    ```
    """
    scores = attention_scores(model, inputs)
    names = list(scores)
    if not names:
        raise ValueError(
            "Received an invalid value for argument `model`, expected a model "
            "with an attention layer that forms attention weights; its "
            f"attention kernel ({model.arguments.get('attention_kernel')!r}) "
            "forms none token by token. Received: "
            f"{getattr(model, 'name', model)!r}"
        )
    if layer is None:
        layer = -1
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(names) <= layer < len(names):
            raise ValueError(
                "Received an invalid value for argument `layer`, expected a "
                f"name in {names} or an index in [-{len(names)}, {len(names)}). "
                f"Received: layer={layer}"
            )
        layer = names[layer]
    if layer not in scores:
        raise ValueError(
            "Received an invalid value for argument `layer`, expected one of "
            f"{names} or an index. Received: layer={layer!r}"
        )
    weights = scores[layer]  # (B, H, T, S)
    validation.check_non_negative_int(index, "index")
    if index >= weights.shape[0]:
        raise ValueError(
            "Received an invalid value for argument `index`, expected an "
            f"example of the batch of {weights.shape[0]}. Received: index={index}"
        )
    if isinstance(inputs, dict) and "source_ids" in inputs:
        query_ids = np.asarray(inputs["target_ids"])[index]
        key_ids = np.asarray(
            inputs["source_ids"] if layer.endswith("cross_attention") or
            layer.startswith("encoder") else inputs["target_ids"]
        )[index]
        if layer.startswith("encoder"):
            query_ids = key_ids
    else:
        ids = np.asarray(inputs["token_ids"] if isinstance(inputs, dict) else inputs)
        query_ids = key_ids = ids[index]
    rows = len(query_tokens) if query_tokens is not None else int((query_ids != 0).sum())
    cols = len(key_tokens) if key_tokens is not None else int((key_ids != 0).sum())
    weights = weights[index][:, :rows, :cols]  # (H, T, S)
    figure = plot_attention(
        weights, path, query_tokens, key_tokens, head=head,
        title=title if title is not None else layer,
    )
    return layer, figure
