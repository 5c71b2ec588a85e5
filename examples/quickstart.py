"""Quickstart: build, train, save and reload a small attention classifier.

The model is assembled from `keras_attention` layers with the functional API
and trained on a generated task that needs attention over the whole sequence
("is the token 7 somewhere before the token 3?"), so it runs offline in about
a minute on two CPU cores.

Run:

    python examples/quickstart.py                 # default run
    python examples/quickstart.py --smoke         # a few seconds
    python examples/quickstart.py --export-dir saved_models/quickstart
    python examples/quickstart.py --strategy mirrored   # every GPU (or logical CPU)
"""

import argparse
import os

import keras
import numpy as np

import keras_attention as ka
from keras_attention.distribute import STRATEGY_NAMES
from keras_attention.distribute import check_fit_strategy
from keras_attention.distribute import build_and_compile
from keras_attention.distribute import get_strategy

VOCAB = 16
LENGTH = 24


def make_data(num_examples, seed):
    """Token ids (1..VOCAB-1, 0 = padding) and labels: does a 7 precede a 3?"""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(LENGTH // 2, LENGTH + 1, size=num_examples)
    ids = rng.integers(1, VOCAB, size=(num_examples, LENGTH))
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    labels = np.zeros(num_examples, dtype="int32")
    for i, row in enumerate(ids):
        row = row[: lengths[i]]
        sevens = np.flatnonzero(row == 7)
        threes = np.flatnonzero(row == 3)
        labels[i] = int(len(sevens) > 0 and len(threes) > 0 and sevens[0] < threes[-1])
    return ids.astype("int32"), labels


def build_model(hidden_dim=32, num_heads=4):
    """Token ids -> embeddings -> 2 self-attention layers -> pooling -> logits."""
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = ka.layers.TokenAndPositionEmbedding(
        vocabulary_size=VOCAB,
        sequence_length=LENGTH,
        embedding_dim=hidden_dim,
        mask_zero=True,
        name="embedding",
    )(token_ids)
    for i in range(2):
        attended = ka.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=hidden_dim // num_heads, name=f"attention_{i}"
        )(x, x)
        x = keras.layers.LayerNormalization(name=f"norm_{i}")(x + attended)
    pooled = ka.layers.AttentionPooling(num_heads=num_heads, name="pooling")(x)
    logits = keras.layers.Dense(2, name="logits")(pooled)
    return keras.Model(token_ids, logits, name="quickstart_classifier")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--examples", type=int, default=8000)
    parser.add_argument("--smoke", action="store_true", help="tiny run")
    parser.add_argument("--export-dir", default="saved_models/quickstart")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=STRATEGY_NAMES, default="default",
                        help="tf.distribute strategy to build and train under")
    args = parser.parse_args(argv)
    try:
        check_fit_strategy(args.strategy)
    except ValueError as error:
        parser.error(str(error))
    if args.smoke:
        args.epochs, args.examples = 1, 256

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = make_data(args.examples, seed=args.seed)
    x_val, y_val = make_data(max(args.examples // 8, 64), seed=args.seed + 1)

    strategy = get_strategy(args.strategy)
    print(f"strategy: {type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))")
    model = build_and_compile(strategy, build_model, dict(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    ))
    model.summary()
    model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
        batch_size=64, verbose=2,
    )
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy: {accuracy:.4f}")

    os.makedirs(args.export_dir, exist_ok=True)
    path = os.path.join(args.export_dir, "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    same = np.allclose(
        model.predict(x_val[:8], verbose=0), reloaded.predict(x_val[:8], verbose=0),
        atol=1e-5,
    )
    predictions = np.argmax(reloaded.predict(x_val[:8], verbose=0), axis=-1)
    print(f"saved {path}; reloaded outputs identical: {same}")
    print(f"reloaded predictions {predictions.tolist()} labels {y_val[:8].tolist()}")
    return accuracy


if __name__ == "__main__":
    main()
