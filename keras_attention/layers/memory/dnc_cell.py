"""The Differentiable Neural Computer as a Keras RNN cell."""

import keras
from keras import ops

from keras_attention.layers.memory import dnc_addressing as dnc
from keras_attention.layers.memory.addressing import content_weighting
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rank

_CONTROLLERS = ("lstm", "dense")


@keras.saving.register_keras_serializable(package="keras_attention")
class DNCCell(keras.layers.Layer):
    """Differentiable Neural Computer cell (one time step).

    A controller (an LSTM or a feed-forward layer) reads the step input and
    the previous read vectors, and emits an interface vector that drives an
    external memory of `memory_size` slots of `memory_width` numbers: write
    heads address memory by content and by dynamic allocation of free slots
    (usage, free gates, sort-based allocation); read heads address it by
    content and by following the temporal link matrix forward or backward in
    writing order. The output mixes the controller output with the new read
    vectors. Use it in `keras.layers.RNN`, or use the `DNC` layer (with a
    mask on JAX, use the layer: Keras' JAX loop takes a masked step's
    output from the cell's first state, which here is not the output; and
    run op by op on JAX, Keras' loop recompiles at every step, while the
    layer compiles its loop once).

    Shape letters: B batch, N = `memory_size` slots, W = `memory_width`,
    R = `num_read_heads`, K = `num_write_heads`, U = `controller_units`.
    All memory maths (usage, allocation, links, content addressing, reads
    and writes) runs in float32 under mixed precision; the controller and
    the projections run in the compute dtype. The cell does not autocast
    its states: each new state keeps the dtype of the state it received, so
    a float32 memory (as the `DNC` layer keeps it) stays float32 across
    steps, while `keras.layers.RNN` stores states in the compute dtype.

    With several write heads, each head keeps its own precedence weighting
    and link matrix, heads allocate in turn (each one sees the usage left as
    if the heads before it had written), and each read head has `2K + 1`
    read modes `[backward_1..K, content, forward_1..K]`. The state is, in
    order (each flattened to `(B, size)`): the controller's `h` and `c`
    (LSTM controller only), memory `N*W`, read vectors `R*W`, read
    weightings `R*N`, write weightings `K*N`, usage `N`, precedence `K*N`,
    link matrices `K*N*N`; all start at zero.

    Args:
        controller_units: positive int, size U of the controller output.
        memory_size: positive int, number N of memory slots.
        memory_width: positive int, size W of each memory slot.
        num_read_heads: positive int, number R of read heads.
        num_write_heads: positive int, number K of write heads.
        controller: `"lstm"` (an LSTM cell) or `"dense"` (a feed-forward
            tanh layer).
        output_dim: positive int or `None`. With an int, the output is
            `y_t = W_y [h_t; r_t^1..r_t^R] + b`, of size `output_dim`; with
            `None` it is the concatenation `[h_t; r_t^1..r_t^R]` itself, of
            size `U + R*W`.
        clip_value: positive float or `None`. The controller output and the
            cell output are clipped to `[-clip_value, clip_value]` (as in
            DeepMind's implementation); `None` disables clipping.
        return_weightings: bool. If `True`, the cell output is float32 and
            also carries, flattened and concatenated after `y_t`, the read
            weightings `(R, N)`, write weightings `(K, N)`, usage `(N,)` and
            link matrices `(K, N, N)` of the step, for inspection; use
            `split_output` to take them apart.
        epsilon: positive float guarding the cosine similarity of content
            addressing.
        kernel_initializer: initializer of the kernels of the controller,
            interface and output layers.
        bias_initializer: initializer of their biases.

    Call arguments:
        inputs: float tensor `(B, F)`, the step input.
        states: list of state tensors as described above, or `None` to start
            from `get_initial_state`.

    Returns:
        A tuple `(output, new_states)`: `output` is `(B, output_size)` in the
        compute dtype (float32 with `return_weightings=True`), `new_states` a
        list shaped like `state_size`, each in the dtype of its input state.

    Raises:
        ValueError: if an argument is out of range, `controller` is unknown,
            or the input is not of rank 2 with a known last axis; calling a
            built cell with another input width raises Keras's input
            compatibility `ValueError`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_attention.layers import DNCCell

    cell = DNCCell(controller_units=8, memory_size=6, memory_width=4,
                   num_read_heads=2, output_dim=3)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    y = rnn(np.ones((2, 5, 3), "float32"))  # (2, 5, 3)
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
        **kwargs,
    ):
        # States keep their own dtype (float32 memory under mixed precision):
        # the cell casts its inputs itself instead of autocasting them.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.controller_units = check_positive_int(
            controller_units, "controller_units"
        )
        self.memory_size = check_positive_int(memory_size, "memory_size")
        self.memory_width = check_positive_int(memory_width, "memory_width")
        self.num_read_heads = check_positive_int(num_read_heads, "num_read_heads")
        self.num_write_heads = check_positive_int(
            num_write_heads, "num_write_heads"
        )
        self.controller = check_one_of(controller, "controller", _CONTROLLERS)
        self.output_dim = check_positive_int(output_dim, "output_dim", allow_none=True)
        self.clip_value = check_positive_float(
            clip_value, "clip_value", allow_none=True
        )
        self.return_weightings = check_bool(return_weightings, "return_weightings")
        self.epsilon = check_positive_float(epsilon, "epsilon")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    # ------------------------------------------------------------------
    # Sizes.

    @property
    def interface_size(self):
        """Size of the interface vector emitted by the controller."""
        r, k, w = self.num_read_heads, self.num_write_heads, self.memory_width
        return (
            r * w  # read keys
            + r  # read strengths
            + 3 * k * w  # write keys, erase vectors, write vectors
            + 3 * k  # write strengths, allocation gates, write gates
            + r  # free gates
            + r * (2 * k + 1)  # read modes
        )

    @property
    def _memory_state_sizes(self):
        n, w = self.memory_size, self.memory_width
        r, k = self.num_read_heads, self.num_write_heads
        return [n * w, r * w, r * n, k * n, n, k * n, k * n * n]

    @property
    def state_size(self):
        controller = (
            [self.controller_units, self.controller_units]
            if self.controller == "lstm"
            else []
        )
        return controller + self._memory_state_sizes

    @property
    def _base_output_size(self):
        if self.output_dim is not None:
            return self.output_dim
        return self.controller_units + self.num_read_heads * self.memory_width

    @property
    def _weighting_sizes(self):
        n, r, k = self.memory_size, self.num_read_heads, self.num_write_heads
        return {
            "read_weightings": (r, n),
            "write_weightings": (k, n),
            "usage": (n,),
            "link": (k, n, n),
        }

    @property
    def output_size(self):
        size = self._base_output_size
        if self.return_weightings:
            for shape in self._weighting_sizes.values():
                size += _numel(shape)
        return size

    # ------------------------------------------------------------------

    def build(self, input_shape):
        check_rank(input_shape, "inputs", 2)
        if input_shape[-1] is None:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a "
                "known last axis (the input width). Received: "
                f"inputs.shape={tuple(input_shape)}"
            )
        batch, width = input_shape[0], input_shape[-1]
        reads = self.num_read_heads * self.memory_width
        common = dict(
            dtype=self.dtype_policy,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
        )
        if self.controller == "lstm":
            self.controller_layer = keras.layers.LSTMCell(
                self.controller_units, name="controller", **common
            )
        else:
            self.controller_layer = keras.layers.Dense(
                self.controller_units, activation="tanh", name="controller", **common
            )
        self.controller_layer.build((batch, width + reads))
        self.interface_layer = keras.layers.Dense(
            self.interface_size, name="interface", **common
        )
        self.interface_layer.build((batch, self.controller_units))
        if self.output_dim is not None:
            self.output_layer = keras.layers.Dense(
                self.output_dim, name="output", **common
            )
            self.output_layer.build((batch, self.controller_units + reads))
        self.input_spec = keras.InputSpec(ndim=2, axes={-1: width})
        self.built = True

    def get_initial_state(self, batch_size=None):
        """Zero states in the compute dtype, one `(batch_size, size)` each."""
        return [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for size in self.state_size
        ]

    def _split_interface(self, interface):
        """Cut the interface vector `(B, interface_size)` into named parts."""
        r, k, w = self.num_read_heads, self.num_write_heads, self.memory_width
        sizes = [
            ("read_keys", (r, w)),
            ("read_strengths", (r,)),
            ("write_keys", (k, w)),
            ("write_strengths", (k,)),
            ("erase_vectors", (k, w)),
            ("write_vectors", (k, w)),
            ("free_gates", (r,)),
            ("allocation_gates", (k,)),
            ("write_gates", (k,)),
            ("read_modes", (r, 2 * k + 1)),
        ]
        parts, start = {}, 0
        for name, shape in sizes:
            size = _numel(shape)
            part = interface[:, start : start + size]  # (B, size)
            parts[name] = ops.reshape(part, (-1,) + shape)  # (B, *shape)
            start += size
        return {
            "read_keys": parts["read_keys"],
            "read_strengths": dnc.oneplus(parts["read_strengths"]),
            "write_keys": parts["write_keys"],
            "write_strengths": dnc.oneplus(parts["write_strengths"]),
            "erase_vectors": ops.sigmoid(parts["erase_vectors"]),
            "write_vectors": parts["write_vectors"],
            "free_gates": ops.sigmoid(parts["free_gates"]),
            "allocation_gates": ops.sigmoid(parts["allocation_gates"]),
            "write_gates": ops.sigmoid(parts["write_gates"]),
            "read_modes": ops.softmax(parts["read_modes"], axis=-1),
        }

    def _clip(self, x):
        if self.clip_value is None:
            return x
        return ops.clip(x, -self.clip_value, self.clip_value)

    def call(self, inputs, states=None):
        if states is None:
            states = self.get_initial_state(ops.shape(inputs)[0])
        states = list(states)
        dtypes = [s.dtype for s in states]
        n, w = self.memory_size, self.memory_width
        r, k = self.num_read_heads, self.num_write_heads
        compute = self.compute_dtype

        # Controller on [x_t; r_{t-1}].
        if self.controller == "lstm":
            controller_states = [ops.cast(s, compute) for s in states[:2]]
            memory_states = states[2:]
        else:
            controller_states = []
            memory_states = states
        (memory, read_vectors, read_w, write_w, usage, precedence, link) = [
            ops.cast(s, "float32") for s in memory_states
        ]
        memory = ops.reshape(memory, (-1, n, w))  # (B, N, W)
        read_w = ops.reshape(read_w, (-1, r, n))  # (B, R, N)
        write_w = ops.reshape(write_w, (-1, k, n))  # (B, K, N)
        precedence = ops.reshape(precedence, (-1, k, n))  # (B, K, N)
        link = ops.reshape(link, (-1, k, n, n))  # (B, K, N, N)

        x = ops.cast(inputs, compute)
        controller_in = ops.concatenate([x, ops.cast(read_vectors, compute)], -1)
        if self.controller == "lstm":
            hidden, controller_states = self.controller_layer(
                controller_in, controller_states
            )
        else:
            hidden = self.controller_layer(controller_in)
        hidden = self._clip(hidden)  # (B, U)
        xi = self._split_interface(ops.cast(self.interface_layer(hidden), "float32"))

        # Dynamic memory allocation and the write.
        usage = dnc.usage_update(usage, write_w, xi["free_gates"], read_w)  # (B, N)
        allocation = dnc.write_allocation_weightings(
            usage, xi["allocation_gates"] * xi["write_gates"]
        )  # (B, K, N)
        write_content = content_weighting(
            memory, xi["write_keys"], xi["write_strengths"], self.epsilon
        )  # (B, K, N)
        new_write_w = dnc.write_weighting(
            allocation, write_content, xi["allocation_gates"], xi["write_gates"]
        )  # (B, K, N)
        memory = dnc.memory_update(
            memory, new_write_w, xi["erase_vectors"], xi["write_vectors"]
        )  # (B, N, W)

        # Temporal links and the read.
        link = dnc.link_update(link, precedence, new_write_w)  # (B, K, N, N)
        precedence = dnc.precedence_update(precedence, new_write_w)  # (B, K, N)
        forward = dnc.forward_weighting(link, read_w)  # (B, R, K, N)
        backward = dnc.backward_weighting(link, read_w)  # (B, R, K, N)
        read_content = content_weighting(
            memory, xi["read_keys"], xi["read_strengths"], self.epsilon
        )  # (B, R, N)
        new_read_w = dnc.read_weighting(
            xi["read_modes"], backward, read_content, forward
        )  # (B, R, N)
        reads = dnc.read_memory(memory, new_read_w)  # (B, R, W)
        reads = ops.reshape(reads, (-1, r * w))  # (B, R*W)

        # Output y_t from [h_t; r_t].
        output = ops.concatenate([hidden, ops.cast(reads, compute)], axis=-1)
        if self.output_dim is not None:
            output = self.output_layer(output)
        output = self._clip(output)  # (B, output_dim or U + R*W)
        if self.return_weightings:
            inspected = [
                ops.reshape(new_read_w, (-1, r * n)),  # (B, R*N)
                ops.reshape(new_write_w, (-1, k * n)),  # (B, K*N)
                usage,  # (B, N)
                ops.reshape(link, (-1, k * n * n)),  # (B, K*N*N)
            ]
            # float32, so the weightings keep their precision.
            output = ops.concatenate([ops.cast(output, "float32")] + inspected, -1)

        new_states = list(controller_states) + [
            ops.reshape(memory, (-1, n * w)),  # (B, N*W)
            reads,  # (B, R*W)
            ops.reshape(new_read_w, (-1, r * n)),  # (B, R*N)
            ops.reshape(new_write_w, (-1, k * n)),  # (B, K*N)
            usage,  # (B, N)
            ops.reshape(precedence, (-1, k * n)),  # (B, K*N)
            ops.reshape(link, (-1, k * n * n)),  # (B, K*N*N)
        ]
        new_states = [ops.cast(s, d) for s, d in zip(new_states, dtypes)]
        return output, new_states

    def split_output(self, output):
        """Split an output of `return_weightings=True` into named parts.

        Args:
            output: tensor `(..., output_size)`, e.g. `(B, output_size)` from
                the cell or `(B, T, output_size)` from an RNN.

        Returns:
            A dict with `"output"` `(..., output_dim)`, `"read_weightings"`
            `(..., R, N)`, `"write_weightings"` `(..., K, N)`, `"usage"`
            `(..., N)` and `"link"` `(..., K, N, N)`.
        """
        if not self.return_weightings:
            raise ValueError(
                "`split_output` needs a cell built with "
                "`return_weightings=True`. Received: return_weightings=False"
            )
        lead = tuple(ops.shape(output)[:-1])  # run-time sizes when traced
        if None in lead[1:]:
            # A symbolic (functional-API) output of unknown batch and length:
            # `ops.reshape` takes one `-1` only, `Reshape` keeps the batch.
            inner = tuple(-1 if d is None else d for d in lead[1:])

            def unflatten(part, shape):
                return keras.layers.Reshape(inner + shape)(part)

        else:
            lead = tuple(-1 if d is None else d for d in lead)

            def unflatten(part, shape):
                return ops.reshape(part, lead + shape)

        start = self._base_output_size
        parts = {"output": output[..., :start]}
        for name, shape in self._weighting_sizes.items():
            size = _numel(shape)
            part = output[..., start : start + size]
            parts[name] = unflatten(part, shape)  # (..., *shape)
            start += size
        return parts

    def compute_output_spec(self, inputs, states=None):
        batch = inputs.shape[0]
        dtype = "float32" if self.return_weightings else self.compute_dtype
        output = keras.KerasTensor((batch, self.output_size), dtype=dtype)
        if states is None:
            dtypes = [self.compute_dtype] * len(self.state_size)
        else:
            dtypes = [s.dtype for s in states]
        new_states = [
            keras.KerasTensor((batch, size), dtype=dtype)
            for size, dtype in zip(self.state_size, dtypes)
        ]
        return output, new_states

    def get_config(self):
        config = super().get_config()
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


def _numel(shape):
    size = 1
    for d in shape:
        size *= d
    return size
