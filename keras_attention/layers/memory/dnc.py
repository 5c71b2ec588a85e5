"""The Differentiable Neural Computer as a Keras RNN layer."""

import keras

from keras_attention.layers.memory.dnc_cell import DNCCell
from keras_attention.layers.memory.memory_rnn import MemoryRNN
from keras_attention.utils.validation import check_rank


@keras.saving.register_keras_serializable(package="keras_attention")
class DNC(MemoryRNN):
    """Differentiable Neural Computer layer: a `DNCCell` run over time.

    A `keras.layers.RNN` around a `DNCCell` built from the same
    hyper-parameters, with the usual RNN options (`return_sequences`,
    `return_state`, `go_backwards`, `stateful`, masking). The defaults are
    DeepMind's repeat-copy configuration: an LSTM controller of 64 units,
    16 slots of width 16, 4 read heads and 1 write head.

    Under mixed precision every recurrent state (controller state, memory,
    read vectors, weightings, usage, precedence, links) is carried in
    float32 between steps, also across batches with `stateful=True`, and
    all memory maths runs in float32; the controller and the projections
    run in the compute dtype. States returned with `return_state=True` are
    float32, so they can be fed back as `initial_state` without loss.

    With `return_weightings=True` the layer returns, like `NTM`, a flat
    tuple `(output, read_weightings, write_weightings, usage, link)` whose
    weightings are float32 and cover every step even when
    `return_sequences=False`, for plots of memory use over time.

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
        return_weightings: bool. If `True`, the layer also returns the read
            weightings `(B, T, R, N)`, write weightings `(B, T, K, N)`, usage
            `(B, T, N)` and link matrices `(B, T, K, N, N)` of every step.
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
        `controller_units + R * W`), in the compute dtype. With
        `return_weightings=True`, the tuple `(output, read_weightings,
        write_weightings, usage, link)` (float32 weightings). With
        `return_state=True` the final float32 states follow (see `DNCCell`
        for their order and sizes).

    Raises:
        ValueError: for out-of-range arguments or an unknown `controller`
            (see `DNCCell`), for inputs not of rank 3, and for a stateful
            layer called with another batch size.

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

    def call(self, sequences, initial_state=None, mask=None, training=False):
        # Every state is carried in float32 (the cell keeps each state's
        # dtype), so memory, usage and links never round to float16.
        dtypes = ["float32"] * len(self.cell.state_size)
        initial_state = self._initial_state(sequences, initial_state, dtypes)
        last_output, outputs, states = self.inner_loop(
            sequences=sequences,
            initial_state=initial_state,
            mask=mask,
            training=training,
        )
        if self.stateful:
            for variable, state in zip(self.states, states):
                variable.assign(state)
        output = outputs if self.return_sequences else last_output
        results = []
        if self.return_weightings:
            parts = self.cell.split_output(outputs)  # (B, T, ...) float32 each
            if not self.return_sequences:
                parts["output"] = self.cell.split_output(last_output)["output"]
            results.append(keras.ops.cast(parts["output"], self.compute_dtype))
            results.extend(parts[name] for name in self.cell._weighting_sizes)
        else:
            results.append(keras.ops.cast(output, self.compute_dtype))
        if self.return_state:
            results.extend(states)
        return results[0] if len(results) == 1 else tuple(results)

    def _output_shapes(self, sequences_shape):
        batch, length = sequences_shape[0], sequences_shape[1]
        cell = self.cell
        size = cell._base_output_size
        output = (batch, length, size) if self.return_sequences else (batch, size)
        shapes, dtypes = [output], [self.compute_dtype]
        if self.return_weightings:
            for shape in cell._weighting_sizes.values():
                shapes.append((batch, length) + shape)
                dtypes.append("float32")
        if self.return_state:
            for size in cell.state_size:
                shapes.append((batch, size))
                dtypes.append("float32")
        return shapes, dtypes

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        shapes, _ = self._output_shapes(sequences_shape)
        return shapes[0] if len(shapes) == 1 else tuple(shapes)

    def compute_output_spec(
        self, sequences, initial_state=None, mask=None, training=False
    ):
        shapes, dtypes = self._output_shapes(tuple(sequences.shape))
        specs = [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]
        return specs[0] if len(specs) == 1 else tuple(specs)

    def compute_mask(self, sequences, mask=None):
        if mask is not None:
            mask = keras.tree.flatten(mask)[0]
        masks = [mask if self.return_sequences else None]
        if self.return_weightings:
            masks += [mask] * len(self.cell._weighting_sizes)
        if self.return_state:
            masks += [None] * len(self.cell.state_size)
        return masks[0] if len(masks) == 1 else masks

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
