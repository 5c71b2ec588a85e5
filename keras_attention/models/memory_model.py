"""Memory-augmented sequence model builder (NTM or DNC)."""

import keras

from keras_attention.layers.memory import DNC
from keras_attention.layers.memory import NTM
from keras_attention.models.builder_model import BuilderModel
from keras_attention.models.builder_model import register_graph
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int

MEMORIES = ("ntm", "dnc")


@register_graph("memory_model")
def _memory_graph(
    input_dim, output_dim, memory, controller_units, memory_size, memory_width,
    num_read_heads, num_write_heads, controller, clip_value,
):
    inputs = keras.Input(shape=(None, input_dim), name="inputs")
    common = dict(
        memory_size=memory_size,
        memory_width=memory_width,
        num_read_heads=num_read_heads,
        num_write_heads=num_write_heads,
        controller=controller,
        clip_value=clip_value,
        output_dim=output_dim,
        return_sequences=True,
        name="memory",
    )
    if memory == "ntm":
        layer = NTM(controller_units, **common)
    else:
        layer = DNC(controller_units=controller_units, **common)
    logits = layer(inputs)  # (B, T, output_dim)
    return inputs, logits


def memory_model(
    input_dim,
    output_dim,
    memory="ntm",
    controller_units=100,
    memory_size=128,
    memory_width=20,
    num_read_heads=1,
    num_write_heads=1,
    controller="lstm",
    clip_value=20.0,
    name="memory_model",
):
    """A sequence-to-sequence model around a Neural Turing Machine or DNC.

    `inputs (B, T, input_dim) -> NTM or DNC (return_sequences) -> logits
    (B, T, output_dim)`, one output per input step, as in the copy,
    repeat-copy and associative-recall tasks of Graves et al. Train the
    logits with a sigmoid cross-entropy for bit vectors (`from_logits=True`)
    or a softmax cross-entropy for symbols. The defaults are the NTM
    reimplementation of Collier & Beel (LSTM controller of 100 units, memory
    128 x 20, outputs clipped to +-20).

    Shape letters: B batch, T time steps.

    Args:
        input_dim: size of each input vector.
        output_dim: size of each output (logit) vector.
        memory: `"ntm"` or `"dnc"`.
        controller_units: size of the controller output.
        memory_size: number of memory slots N.
        memory_width: size of each slot W.
        num_read_heads: number of read heads.
        num_write_heads: number of write heads.
        controller: `"lstm"` or `"dense"`.
        clip_value: positive float or `None`, the clipping bound of the
            controller output and the logits.
        name: the model name.

    Returns:
        A `BuilderModel` (functional `keras.Model`) mapping
        `{"inputs": (B, T, input_dim)}` to `(B, T, output_dim)` logits.

    Raises:
        ValueError: on a non-positive size, an unknown `memory` or
            `controller`, or other arguments the memory layer rejects.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    model = ka.models.memory_model(input_dim=4, output_dim=3,
                                   controller_units=8, memory_size=6,
                                   memory_width=4)
    logits = model(np.zeros((2, 5, 4), "float32"))  # (2, 5, 3)
    ```

    References:
        Graves et al., 2014, "Neural Turing Machines".
        Graves et al., 2016, "Hybrid computing using a neural network with
        dynamic external memory" (DNC).
        Collier & Beel, 2018, "Implementing Neural Turing Machines".
    """
    check_positive_int(input_dim, "input_dim")
    check_positive_int(output_dim, "output_dim")
    check_one_of(memory, "memory", MEMORIES)
    for value, argument in (
        (controller_units, "controller_units"),
        (memory_size, "memory_size"),
        (memory_width, "memory_width"),
        (num_read_heads, "num_read_heads"),
        (num_write_heads, "num_write_heads"),
    ):
        check_positive_int(value, argument)
    check_positive_float(clip_value, "clip_value", allow_none=True)
    arguments = dict(
        input_dim=input_dim,
        output_dim=output_dim,
        memory=memory,
        controller_units=controller_units,
        memory_size=memory_size,
        memory_width=memory_width,
        num_read_heads=num_read_heads,
        num_write_heads=num_write_heads,
        controller=controller,
        clip_value=clip_value,
    )
    return BuilderModel("memory_model", arguments, name=name)
