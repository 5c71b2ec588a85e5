"""The Neural Turing Machine as a Keras RNN layer."""

import keras
from keras import ops

from keras_attention.layers.memory.memory_rnn import MemoryRNN
from keras_attention.layers.memory.ntm_cell import NTMCell
from keras_attention.utils import validation

_CELL_ARGS = (
    "controller_units",
    "memory_size",
    "memory_width",
    "num_read_heads",
    "num_write_heads",
    "shift_range",
    "controller",
    "memory_init",
    "clip_value",
    "output_dim",
    "epsilon",
    "seed",
)


def _cell_property(name):
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's `{name}`.")


@keras.saving.register_keras_serializable(package="keras_attention")
class NTM(MemoryRNN):
    """Neural Turing Machine layer: `keras.layers.RNN` over an `NTMCell`.

    Runs an `NTMCell` over a sequence, with everything `keras.layers.RNN`
    offers (`return_sequences`, `return_state`, `go_backwards`, `stateful`,
    `unroll`, masking). Unlike a plain `keras.layers.RNN(NTMCell(...))`, the
    memory, read vectors and weightings stay float32 between time steps under
    mixed precision (a plain RNN casts every state to the compute dtype), and
    `reset_state()` of a stateful layer restores the cell's initial memory
    and weightings instead of zeros.

    With `return_weightings=True` the layer also returns the read and write
    weightings of every step, for plots like Graves et al.'s figures 6-8.

    Training: as in Graves et al. and Collier and Beel, sum the
    cross-entropy over the output steps and bits of each sequence and
    average over the batch (`BinaryCrossentropy(reduction="sum")` with
    `loss_weights=output_dim / batch_size`), with Adam and a global
    gradient-norm clip of 50; see `examples/ntm_copy.py`. A loss averaged
    over every step instead weighs short sequences as much as long ones,
    and on copy we measured no convergence within 10,000 steps that way.

    Args:
        controller_units: positive int, size of the controller output
            (100, as in Graves et al.'s copy experiments, by default).
        memory_size: positive int, N, the number of memory slots (128).
        memory_width: positive int, W, the size of each slot (20).
        num_read_heads: positive int, R, the number of read heads.
        num_write_heads: positive int, K, the number of write heads.
        shift_range: non-negative int; shift offsets are
            `-shift_range..+shift_range`, with `2 * shift_range + 1 <=
            memory_size`.
        controller: `"lstm"` (default) or `"dense"`.
        memory_init: `"constant"` (1e-6, default), `"learned"` or `"random"`.
        clip_value: positive float or `None`, the clipping bound of the
            controller output, head parameters and output logits.
        output_dim: positive int or `None`, the size of the linear output
            (logits); `None` outputs the controller output and read vectors.
        return_weightings: bool, also return the read weightings
            `(B, T, R, N)` and write weightings `(B, T, K, N)` (float32),
            which are all-step sequences even when `return_sequences=False`.
        epsilon: small positive float guarding the cosine norms and the
            sharpening logarithm.
        seed: int or `None`, seed of the `"random"` memory initialisation.
        kernel_initializer: initializer of the input kernels.
        recurrent_initializer: initializer of the LSTM recurrent kernel.
        bias_initializer: initializer of the biases.
        return_sequences: bool, return the output of every step rather than
            the last one.
        return_state: bool, also return the final states (see `NTMCell`).
        go_backwards: bool, process the sequence in reverse.
        stateful: bool, carry the final states of a batch over as the initial
            states of the next one (static batch size required).
        unroll: bool, unroll the time loop (short sequences only).
        zero_output_for_mask: bool, output zeros at masked steps instead of
            repeating the previous output (with `return_sequences`).

    Call arguments:
        sequences: float tensor `(B, T, I)`.
        initial_state: optional list of initial states (see `NTMCell`).
        mask: optional boolean tensor `(B, T)`; masked steps keep the
            previous states and output (implicit Keras masks are used).
        training: Python bool.

    Returns:
        The outputs, `(B, T, O)` with `return_sequences` else `(B, O)`, in the
        compute dtype; followed by the read and write weightings when
        `return_weightings`; followed by the final states when
        `return_state` (memory states in float32).

    Raises:
        ValueError: on invalid constructor arguments (see `NTMCell`) or when
            the input is not `(B, T, I)` with a known `I`.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import NTM

    ntm = NTM(16, memory_size=8, memory_width=4, output_dim=3,
              return_sequences=True, return_weightings=True)
    y, reads, writes = ntm(np.random.rand(2, 5, 6).astype("float32"))
    tuple(y.shape), tuple(reads.shape)  # ((2, 5, 3), (2, 5, 1, 8))
    ```

    References:
        - Graves, Wayne and Danihelka, 2014. [Neural Turing Machines](
          https://arxiv.org/abs/1410.5401).
        - Collier and Beel, 2018. [Implementing Neural Turing Machines](
          https://arxiv.org/abs/1807.08518).
    """

    def __init__(
        self,
        controller_units=100,
        memory_size=128,
        memory_width=20,
        num_read_heads=1,
        num_write_heads=1,
        shift_range=1,
        controller="lstm",
        memory_init="constant",
        clip_value=20.0,
        output_dim=None,
        return_weightings=False,
        epsilon=1e-6,
        seed=None,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        validation.check_bool(return_weightings, "return_weightings")
        cell = NTMCell(
            controller_units,
            memory_size,
            memory_width,
            num_read_heads=num_read_heads,
            num_write_heads=num_write_heads,
            shift_range=shift_range,
            controller=controller,
            memory_init=memory_init,
            clip_value=clip_value,
            output_dim=output_dim,
            return_weightings=return_weightings,
            epsilon=epsilon,
            seed=seed,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dtype=kwargs.get("dtype"),
            name="ntm_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        self.return_weightings = return_weightings

    # Constructor arguments as public attributes, read from the cell.
    controller_units = _cell_property("controller_units")
    memory_size = _cell_property("memory_size")
    memory_width = _cell_property("memory_width")
    num_read_heads = _cell_property("num_read_heads")
    num_write_heads = _cell_property("num_write_heads")
    shift_range = _cell_property("shift_range")
    controller = _cell_property("controller")
    memory_init = _cell_property("memory_init")
    clip_value = _cell_property("clip_value")
    output_dim = _cell_property("output_dim")
    epsilon = _cell_property("epsilon")
    seed = _cell_property("seed")
    kernel_initializer = _cell_property("kernel_initializer")
    recurrent_initializer = _cell_property("recurrent_initializer")
    bias_initializer = _cell_property("bias_initializer")

    # ----------------------------------------------------------------- shapes
    def build(self, sequences_shape, initial_state_shape=None):
        validation.check_rank(sequences_shape, "sequences", 3)
        if sequences_shape[-1] is None:
            raise ValueError(
                "Received an invalid value for argument `sequences`, expected "
                "a known last axis (the input width). Received: "
                f"sequences.shape={tuple(sequences_shape)}"
            )
        super().build(sequences_shape, initial_state_shape)

    def _main_output_size(self):
        size = self.cell.output_size
        if self.return_weightings:
            size -= self.cell.num_heads * self.cell.memory_size
        return size

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length = sequences_shape[0], sequences_shape[1]
        cell = self.cell
        size = self._main_output_size()
        if self.return_sequences:
            outputs = [(batch, length, size)]
        else:
            outputs = [(batch, size)]
        if self.return_weightings:
            outputs.append((batch, length, cell.num_read_heads, cell.memory_size))
            outputs.append((batch, length, cell.num_write_heads, cell.memory_size))
        if self.return_state:
            outputs.extend((batch, s) for s in cell.state_size)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def compute_output_spec(self, sequences, initial_state=None, mask=None, training=False):
        shapes = self.compute_output_shape(sequences.shape)
        if len(shapes) and not isinstance(shapes[0], (tuple, list)):
            return keras.KerasTensor(shapes, dtype=self.compute_dtype)
        dtypes = [self.compute_dtype]
        if self.return_weightings:
            dtypes += ["float32", "float32"]
        if self.return_state:
            dtypes += self.cell.state_dtypes
        return tuple(
            keras.KerasTensor(shape, dtype=dtype) for shape, dtype in zip(shapes, dtypes)
        )

    def compute_mask(self, _, mask):
        mask = keras.tree.flatten(mask)[0] if mask is not None else None
        output_mask = mask if self.return_sequences else None
        masks = [output_mask]
        if self.return_weightings:
            masks += [mask, mask]
        if self.return_state:
            masks += [None] * len(self.cell.state_size)
        return masks[0] if len(masks) == 1 else masks

    # ------------------------------------------------------------------ state
    def get_initial_state(self, batch_size):
        if not self.cell.built:
            raise ValueError(
                "Received an invalid call to `get_initial_state`: the NTM's "
                "initial read vectors and weightings are weights, made when "
                "the layer is built. Call the layer or `build(sequences_shape)` "
                "first. Received: an unbuilt layer"
            )
        return list(self.cell.get_initial_state(batch_size=batch_size))

    def reset_state(self):
        """Restore the states of a stateful layer to the cell's initial
        states (initial memory and weightings, zero controller state)."""
        if self.states is None:
            return
        initial = self.get_initial_state(self._expected_batch_size or 1)
        for variable, value in zip(self.states, initial):
            variable.assign(ops.cast(value, variable.dtype))

    # ------------------------------------------------------------------- call
    def call(self, sequences, initial_state=None, mask=None, training=False):
        dtypes = self.cell.state_dtypes
        initial_state = self._initial_state(sequences, initial_state, dtypes)
        last_output, outputs, states = self.inner_loop(
            sequences=sequences,
            initial_state=initial_state,
            mask=mask,
            training=training,
        )
        if self.stateful:
            for variable, state in zip(self.states, states):
                variable.assign(ops.cast(state, variable.dtype))
        states = [ops.cast(s, dtype) for s, dtype in zip(states, dtypes)]
        output = outputs if self.return_sequences else last_output
        output = ops.cast(output, self.compute_dtype)
        results = [output]
        if self.return_weightings:
            cell = self.cell
            n, r = cell.memory_size, cell.num_read_heads
            size = self._main_output_size()
            main = output[..., :size]  # (B, T, O) or (B, O)
            weightings = ops.cast(outputs[..., size:], "float32")  # (B, T, H * N)
            weightings = ops.reshape(
                weightings, (-1, ops.shape(outputs)[1], cell.num_heads, n)
            )  # (B, T, H, N)
            results = [main, weightings[:, :, :r], weightings[:, :, r:]]
        if self.return_state:
            results.extend(states)
        return results[0] if len(results) == 1 else tuple(results)

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = keras.layers.Layer.get_config(self)
        cell_config = self.cell.get_config()
        for key in (*_CELL_ARGS, "return_weightings"):
            config[key] = cell_config[key]
        for key in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
            config[key] = cell_config[key]
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
