"""The Differentiable Neural Computer as a Keras RNN layer."""

import keras

from keras_attention.layers.memory.dnc_cell import DNCCell
from keras_attention.utils.validation import check_rank


@keras.saving.register_keras_serializable(package="keras_attention")
class DNC(keras.layers.RNN):
    """Differentiable Neural Computer layer: a `DNCCell` run over time.

    A `keras.layers.RNN` around a `DNCCell` built from the same
    hyper-parameters, with the usual RNN options (`return_sequences`,
    `return_state`, `go_backwards`, `stateful`, masking). The defaults are
    DeepMind's repeat-copy configuration: an LSTM controller of 64 units,
    16 slots of width 16, 4 read heads and 1 write head.

    Under mixed precision the recurrent memory state (memory, read vectors,
    weightings, usage, precedence, links) is carried in float32 between
    steps and all memory maths runs in float32; the controller and the
    projections run in the compute dtype. States returned with
    `return_state=True` (and kept between batches with `stateful=True`) are
    cast to the compute dtype, as in every Keras RNN.

    Shape letters: B batch, T time steps, F input width, N = `memory_size`,
    R = `num_read_heads`, K = `num_write_heads`.

    Args:
        controller_units: positive int, size of the controller output.
        memory_size: positive int, number N of memory slots.
        memory_width: positive int, size W of each memory slot.
        num_read_heads: positive int, number R of read heads.
        num_write_heads: positive int, number K of write heads.
        controller: `"lstm"` or `"dense"` (feed-forward tanh layer).
        output_dim: positive int or `None`. With an int the output is a
            learned projection of `[h_t; r_t]` to `output_dim`; with `None`
            it is `[h_t; r_t]` (size `controller_units + R * W`).
        clip_value: positive float or `None`: clip the controller output and
            the output to `[-clip_value, clip_value]`.
        return_weightings: bool. If `True`, the layer also returns a dict of
            the read weightings `(.., R, N)`, write weightings `(.., K, N)`,
            usage `(.., N)` and link matrices `(.., K, N, N)` (for every step
            with `return_sequences=True`, else for the last step).
        epsilon: positive float guarding the cosine similarity of content
            addressing.
        kernel_initializer: initializer of the kernels of the controller,
            interface and output layers.
        bias_initializer: initializer of their biases.
        return_sequences: bool, return the output of every step rather than
            the last one.
        return_state: bool, also return the final states.
        go_backwards: bool, process the sequence backwards.
        stateful: bool, carry the final states of a batch over as the initial
            states of the next batch (needs a fixed batch size).
        unroll: bool, unroll the time loop (short sequences only).
        zero_output_for_mask: bool, output zeros rather than the previous
            output at masked steps (with `return_sequences=True`).

    Call arguments:
        sequences: float tensor `(B, T, F)`.
        initial_state: optional list of state tensors (see `DNCCell`).
        mask: optional boolean tensor `(B, T)`; masked steps leave the
            states unchanged.
        training: bool or `None`.

    Returns:
        `output` `(B, T, Y)` or `(B, Y)` with `Y` = `output_dim` (or
        `controller_units + R * W`). With `return_weightings=True`, a tuple
        `(output, weightings)` with `weightings` the dict above. With
        `return_state=True` the final states follow.

    Raises:
        ValueError: for out-of-range arguments or an unknown `controller`
            (see `DNCCell`), and for inputs not of rank 3.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import DNC

    dnc = DNC(controller_units=8, memory_size=6, memory_width=4,
              num_read_heads=2, output_dim=3, return_sequences=True)
    y = dnc(np.ones((2, 5, 3), "float32"))  # (2, 5, 3)
    ```

    References:
        Graves et al., 2016, "Hybrid computing using a neural network with
        dynamic external memory", Nature 538 (Methods).
    """

    def __init__(
        self,
        controller_units=64,
        memory_size=16,
        memory_width=16,
        num_read_heads=4,
        num_write_heads=1,
        controller="lstm",
        output_dim=None,
        clip_value=20.0,
        return_weightings=False,
        epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        **kwargs,
    ):
        cell = DNCCell(
            controller_units=controller_units,
            memory_size=memory_size,
            memory_width=memory_width,
            num_read_heads=num_read_heads,
            num_write_heads=num_write_heads,
            controller=controller,
            output_dim=output_dim,
            clip_value=clip_value,
            return_weightings=return_weightings,
            epsilon=epsilon,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="dnc_cell",
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
        self.controller_units = cell.controller_units
        self.memory_size = cell.memory_size
        self.memory_width = cell.memory_width
        self.num_read_heads = cell.num_read_heads
        self.num_write_heads = cell.num_write_heads
        self.controller = cell.controller
        self.output_dim = cell.output_dim
        self.clip_value = cell.clip_value
        self.return_weightings = cell.return_weightings
        self.epsilon = cell.epsilon
        self.kernel_initializer = cell.kernel_initializer
        self.bias_initializer = cell.bias_initializer

    def build(self, sequences_shape, initial_state_shape=None):
        check_rank(sequences_shape, "sequences", 3)
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        # `RNN.call` casts the initial states to the compute dtype; carry
        # them in float32 through the time loop instead (the cell keeps each
        # state's dtype), so memory, usage and links never round to float16.
        initial_state = [keras.ops.cast(s, "float32") for s in initial_state]
        return super().inner_loop(sequences, initial_state, mask, training)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        result = super().call(
            sequences, initial_state=initial_state, mask=mask, training=training
        )
        if not self.return_weightings:
            return result
        if self.return_state:
            output, states = result[0], list(result[1:])
        else:
            output, states = result, []
        parts = self.cell.split_output(output)
        output = parts.pop("output")
        return (output, parts, *states)

    def _output_shapes(self, sequences_shape):
        batch, length = sequences_shape[0], sequences_shape[1]
        lead = (batch, length) if self.return_sequences else (batch,)
        cell = self.cell
        output = lead + (cell._base_output_size,)
        weightings = {
            name: lead + shape for name, shape in cell._weighting_sizes.items()
        }
        states = [(batch, size) for size in cell.state_size]
        return output, weightings, states

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        output, weightings, states = self._output_shapes(sequences_shape)
        if not self.return_weightings:
            return (output, *states) if self.return_state else output
        if self.return_state:
            return (output, weightings, *states)
        return output, weightings

    def compute_output_spec(self, sequences, initial_state=None, mask=None,
                            training=False):
        shapes = self.compute_output_shape(tuple(sequences.shape))
        return keras.tree.map_shape_structure(
            lambda s: keras.KerasTensor(s, dtype=self.compute_dtype), shapes
        )

    def compute_mask(self, sequences, mask=None):
        if mask is not None:
            mask = keras.tree.flatten(mask)[0]
        output_mask = mask if self.return_sequences else None
        states = [None] * len(self.cell.state_size) if self.return_state else []
        if not self.return_weightings:
            return [output_mask] + states if self.return_state else output_mask
        weightings = {name: output_mask for name in self.cell._weighting_sizes}
        return [output_mask, weightings] + states

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        config.update(
            {
                "controller_units": self.controller_units,
                "memory_size": self.memory_size,
                "memory_width": self.memory_width,
                "num_read_heads": self.num_read_heads,
                "num_write_heads": self.num_write_heads,
                "controller": self.controller,
                "output_dim": self.output_dim,
                "clip_value": self.clip_value,
                "return_weightings": self.return_weightings,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
