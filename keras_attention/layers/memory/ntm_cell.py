"""The Neural Turing Machine as a Keras RNN cell."""

import keras
import numpy as np
from keras import ops

from keras_attention.layers.memory import addressing
from keras_attention.utils import validation

_CONTROLLERS = ("lstm", "dense")
_MEMORY_INITS = ("constant", "learned", "random")
_CONSTANT_MEMORY_VALUE = 1e-6
_RANDOM_MEMORY_STDDEV = 0.5
# Initial weighting logits: 0 on slot 0 and this value elsewhere, so every
# head starts focused on the first slot (softmax puts >= 0.99 on it for up
# to 200 slots). A uniform start could never break the symmetry of the
# constant memory.
_OFF_FOCUS_LOGIT = -10.0
# Initial bias of every head's +1 shift logit (the -1 and 0 logits start at
# the bias initializer's value): softmax (0.21, 0.21, 0.58) for shift_range
# 1. See "Initial shift bias" in NTMCell's docstring.
_FORWARD_SHIFT_BIAS = 1.0


def _first_slot_logits(shape, dtype=None):
    logits = np.full(shape, _OFF_FOCUS_LOGIT, dtype="float32")
    logits[..., 0] = 0.0
    return ops.convert_to_tensor(logits, dtype=dtype or "float32")


def _rows(value, batch_size):
    """`value` flattened to one row and repeated for each of `batch_size`
    rows, `(B, size)`. A new tensor, not a broadcast view: PyTorch cannot
    copy a view with repeated rows into a stateful RNN's state variables."""
    row = ops.reshape(value, (1, -1))
    return ops.zeros((batch_size, row.shape[-1]), dtype=row.dtype) + row


@keras.saving.register_keras_serializable(package="keras_attention")
class NTMCell(keras.layers.Layer):
    """Neural Turing Machine cell: a controller with an addressable memory.

    At every step the controller (an LSTM or a feed-forward layer) reads the
    input concatenated with the previous read vectors. One linear layer maps
    its output to the parameters of every head: a key (`tanh`), a key
    strength (`softplus`), an interpolation gate (`sigmoid`), a shift
    distribution over the offsets `-shift_range..+shift_range` (`softmax`)
    and a sharpening exponent (`1 + softplus`); write heads also emit an
    erase vector (`sigmoid`) and an add vector (`tanh`). Each head's
    weighting is content addressing, interpolated with its previous
    weighting, circularly shifted and sharpened (see
    `keras_attention.layers.memory.addressing`). Read heads read the memory
    as it was before this step's write; the output is computed from the
    controller output and the new read vectors, which are also fed back at
    the next step. All memory maths runs in float32, whatever the dtype
    policy.

    The cell follows the Keras RNN-cell contract (`state_size`,
    `output_size`, `get_initial_state`, `call(inputs, states) -> (output,
    new_states)`), so `keras.layers.RNN(NTMCell(...))` works with
    `return_sequences`, masking and `stateful` (masking on the TensorFlow
    backend: Keras' JAX loop takes a masked step's output from the first
    state, which here is not the output; the `NTM` layer masks on every
    backend). The `NTM` layer wraps it and also keeps the memory states in
    float32 under mixed precision; on JAX, run op by op (`jit_compile=False`),
    it compiles its loop once where Keras' loop recompiles at every step. Called
    with `states=None` the cell starts from its initial state (one step).

    The states are flat, rank 2: `[h, c]` (LSTM controller only), the memory
    `(B, N * W)`, the read vectors `(B, R * W)` and the weightings of the
    read heads then the write heads `(B, (R + K) * N)`, where R is
    `num_read_heads` and K `num_write_heads`. The initial read vectors and
    the initial weightings (focused on slot 0) are trainable weights of the
    cell, never assigned in `call`.

    Initial shift bias: the bias of every head's `+1` shift logit starts at
    1 above the others (shift distribution about 0.21, 0.21, 0.58 over
    `-1, 0, +1` when the controller output is 0), so heads start drifting
    forward over the memory, the iteration location addressing is for
    (Graves et al., section 3.3.2). With the symmetric start (uniform over
    the offsets) the heads diffuse both ways and training can settle in a
    stationary head instead: on copy, seed 2 of 3 (LSTM-100, memory 128 x
    20, batch 32, Adam 1e-3, clip 50) had its write head on slot 0 with
    weighting 0.99 at every step by step 750, writing every vector into one
    slot, and learned like a plain LSTM (30.8 wrong bits per sequence at
    step 1,000, 14.3 after 10,000). With the forward bias the same seed had
    its write and read heads stepping one slot per step (weighting >= 0.99)
    at step 1,000, and seeds 0, 1, 2 all went under 0.1 wrong bits per
    sequence on 640 evaluation sequences, at steps 2,000, 1,500 and 3,500
    (`benchmarks/memory_tasks.py`; before: 3,000, 3,500 and never), and
    seeds 3 and 4 at 3,000 and 1,500. The
    bias is trainable: heads that must stay or move backwards learn to.
    Other remedies we tried on that seed did not help by step 1,000: the
    bias on the write head alone (31.2 wrong bits), learned random initial
    read vectors (30.8), and Collier and Beel's near-uniform learned initial
    weightings (32.1, with the write head still uniform).

    Size: with an LSTM controller of 100 units, one read and one write head,
    memory 128 x 20, `shift_range=1`, the 8-bit copy task (9 input channels:
    8 bits and a delimiter) and `output_dim=8`, the cell has 62,536
    parameters: LSTM `4 * (100 * (9 + 20) + 100 * 100 + 100) = 52,000`,
    head parameters `(100 + 1) * (2 * (20 + 6) + 2 * 20) = 9,292`, output
    `(100 + 20 + 1) * 8 = 968`, initial read vector 20 and initial weighting
    logits `2 * 128 = 256`. Graves et al. (2014, table 3) report 67,561 for
    this setting without giving the breakdown; the paper does not specify
    its LSTM variant (Graves' LSTMs usually carry peephole weights), the
    input encoding, which tensors feed the output layer, nor which initial
    states are learned, and each of these changes the count by hundreds to
    thousands of weights. The memory itself holds no weights with the
    default constant initialisation.

    Args:
        controller_units: positive int, size of the controller output
            (100, as in Graves et al.'s copy experiments, by default).
        memory_size: positive int, N, the number of memory slots (128).
        memory_width: positive int, W, the size of each slot (20).
        num_read_heads: positive int, R, the number of read heads.
        num_write_heads: positive int, K, the number of write heads.
        shift_range: non-negative int; the shift offsets are
            `-shift_range..+shift_range`, and `2 * shift_range + 1` may not
            exceed `memory_size`.
        controller: `"lstm"` (default) or `"dense"` (feed-forward, `relu`).
        memory_init: how the memory starts each sequence: `"constant"`
            (every entry 1e-6, the default, the fastest to train in Collier
            and Beel 2018), `"learned"` (a trainable `(N, W)` weight starting
            at 1e-6) or `"random"` (a fresh truncated normal draw, standard
            deviation 0.5, per sequence).
        clip_value: positive float or `None`. The controller output, the head
            parameters and the output logits are clipped to
            `[-clip_value, clip_value]`; `None` disables clipping.
        output_dim: positive int or `None`. When set, the output is a linear
            projection of the controller output and the read vectors to this
            size (logits); when `None` the output is their concatenation, of
            size `controller_units + R * W`.
        return_weightings: bool. When `True` the cell output is float32 and
            the read weightings `(R * N)` and the write weightings `(K * N)`
            of the step are appended to it (the `NTM` layer splits them off
            again).
        epsilon: small positive float guarding the cosine similarity norms
            and the sharpening logarithm.
        seed: int or `None`, the seed of the `"random"` memory
            initialisation.
        kernel_initializer: initializer of the input kernels.
        recurrent_initializer: initializer of the LSTM controller's
            recurrent kernel.
        bias_initializer: initializer of the biases.

    Call arguments:
        inputs: float tensor `(B, I)`, one time step.
        states: list of state tensors as described above, or `None` to start
            from `get_initial_state`.
        training: Python bool, passed to the controller.

    Returns:
        `(output, new_states)`: the output `(B, output_size)` in the compute
        dtype and the list of new states, each in the dtype of the incoming
        state (memory states created by `get_initial_state` are float32).

    Raises:
        ValueError: on invalid constructor arguments (non-positive sizes or
            head counts, a `shift_range` whose offsets do not fit in the
            memory, an unknown `controller` or `memory_init`), when the input
            is not rank 2 with a known last axis, or when its width differs
            from the width the cell was built with.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_attention.layers import NTMCell

    cell = NTMCell(16, memory_size=8, memory_width=4, output_dim=3)
    layer = keras.layers.RNN(cell, return_sequences=True)
    y = layer(np.random.rand(2, 5, 6).astype("float32"))
    tuple(y.shape)  # (2, 5, 3)
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
        **kwargs,
    ):
        # The memory states stay float32 under mixed precision: with
        # `autocast=False`, `__call__` does not cast the floating arguments
        # (the states) to the compute dtype; `call` casts the inputs itself.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.controller_units = validation.check_positive_int(controller_units, "controller_units")
        self.memory_size = validation.check_positive_int(memory_size, "memory_size")
        self.memory_width = validation.check_positive_int(
            memory_width, "memory_width"
        )
        self.num_read_heads = validation.check_positive_int(
            num_read_heads, "num_read_heads"
        )
        self.num_write_heads = validation.check_positive_int(
            num_write_heads, "num_write_heads"
        )
        self.shift_range = validation.check_non_negative_int(
            shift_range, "shift_range"
        )
        if 2 * self.shift_range + 1 > self.memory_size:
            raise ValueError(
                "Received an invalid value for argument `shift_range`, expected "
                "2 * shift_range + 1 <= memory_size so that every shift offset "
                f"is a distinct slot (memory_size={self.memory_size}). "
                f"Received: shift_range={shift_range}"
            )
        self.controller = validation.check_one_of(controller, "controller", _CONTROLLERS)
        self.memory_init = validation.check_one_of(
            memory_init, "memory_init", _MEMORY_INITS
        )
        self.clip_value = validation.check_positive_float(
            clip_value, "clip_value", allow_none=True
        )
        self.output_dim = validation.check_positive_int(
            output_dim, "output_dim", allow_none=True
        )
        self.return_weightings = validation.check_bool(
            return_weightings, "return_weightings"
        )
        self.epsilon = validation.check_positive_float(epsilon, "epsilon")
        if seed is not None:
            validation.check_non_negative_int(seed, "seed")
        self.seed = seed
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        if self.memory_init == "random":
            self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    # ------------------------------------------------------------------ sizes
    @property
    def num_heads(self):
        return self.num_read_heads + self.num_write_heads

    @property
    def num_shifts(self):
        return 2 * self.shift_range + 1

    @property
    def _addressing_size(self):
        # key W, strength 1, gate 1, shifts S, gamma 1.
        return self.memory_width + self.num_shifts + 3

    @property
    def _head_parameter_size(self):
        return (
            self.num_heads * self._addressing_size
            + 2 * self.num_write_heads * self.memory_width
        )

    @property
    def _read_size(self):
        return self.num_read_heads * self.memory_width

    @property
    def state_size(self):
        sizes = [
            self.memory_size * self.memory_width,
            self._read_size,
            self.num_heads * self.memory_size,
        ]
        if self.controller == "lstm":
            return [self.controller_units, self.controller_units, *sizes]
        return sizes

    @property
    def state_dtypes(self):
        """Dtype of each state: the controller's in the compute dtype, the
        memory, read vectors and weightings in float32."""
        memory = ["float32", "float32", "float32"]
        if self.controller == "lstm":
            return [self.compute_dtype, self.compute_dtype, *memory]
        return memory

    @property
    def output_size(self):
        size = self.output_dim or (self.controller_units + self._read_size)
        if self.return_weightings:
            size += self.num_heads * self.memory_size
        return size

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        validation.check_rank(input_shape, "inputs", 2)
        if input_shape[-1] is None:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a "
                "known last axis (the input width). Received: "
                f"inputs.shape={tuple(input_shape)}"
            )
        self.input_dim = int(input_shape[-1])
        controller_input = (None, self.input_dim + self._read_size)
        if self.controller == "lstm":
            self.controller_layer = keras.layers.LSTMCell(
                self.controller_units,
                kernel_initializer=self.kernel_initializer,
                recurrent_initializer=self.recurrent_initializer,
                bias_initializer=self.bias_initializer,
                dtype=self.dtype_policy,
                name="controller",
            )
        else:
            self.controller_layer = keras.layers.Dense(
                self.controller_units,
                activation="relu",
                kernel_initializer=self.kernel_initializer,
                bias_initializer=self.bias_initializer,
                dtype=self.dtype_policy,
                name="controller",
            )
        self.controller_layer.build(controller_input)
        self.head_parameters = keras.layers.Dense(
            self._head_parameter_size,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="head_parameters",
        )
        self.head_parameters.build((None, self.controller_units))
        forward = np.zeros(self._head_parameter_size, "float32")
        plus_one = self.memory_width + 2 + self.shift_range + 1  # offset +1
        forward[plus_one : self.num_heads * self._addressing_size : self._addressing_size] = (
            _FORWARD_SHIFT_BIAS if self.shift_range > 0 else 0.0
        )
        self.head_parameters.bias.assign(
            self.head_parameters.bias + ops.convert_to_tensor(forward, self.head_parameters.bias.dtype)
        )
        if self.output_dim is not None:
            self.output_projection = keras.layers.Dense(
                self.output_dim,
                kernel_initializer=self.kernel_initializer,
                bias_initializer=self.bias_initializer,
                dtype=self.dtype_policy,
                name="output_projection",
            )
            self.output_projection.build((None, self.controller_units + self._read_size))
        # Memory-maths weights are read in float32 (autocast=False).
        self.initial_read = self.add_weight(
            shape=(self.num_read_heads, self.memory_width),
            initializer="zeros",
            autocast=False,
            name="initial_read",
        )
        self.initial_weighting_logits = self.add_weight(
            shape=(self.num_heads, self.memory_size),
            initializer=_first_slot_logits,
            autocast=False,
            name="initial_weighting_logits",
        )
        if self.memory_init == "learned":
            self.initial_memory = self.add_weight(
                shape=(self.memory_size, self.memory_width),
                initializer=keras.initializers.Constant(_CONSTANT_MEMORY_VALUE),
                autocast=False,
                name="initial_memory",
            )
        self.built = True

    # ---------------------------------------------------------- initial state
    def get_initial_state(self, batch_size=None):
        """Initial states for a batch: zero controller state, the initial
        memory, the (learned) initial read vectors and the (learned) initial
        weightings focused on slot 0.

        Args:
            batch_size: int or scalar tensor.

        Returns:
            List of tensors matching `state_size` and `state_dtypes`.
        """
        n, w = self.memory_size, self.memory_width
        if self.memory_init == "constant":
            memory = ops.full((batch_size, n * w), _CONSTANT_MEMORY_VALUE, "float32")
        elif self.memory_init == "learned":
            memory = _rows(ops.cast(self.initial_memory, "float32"), batch_size)  # (B, N * W)
        else:
            memory = keras.random.truncated_normal(
                (batch_size, n * w),
                stddev=_RANDOM_MEMORY_STDDEV,
                dtype="float32",
                seed=self.seed_generator,
            )
        reads = _rows(ops.cast(self.initial_read, "float32"), batch_size)  # (B, R * W)
        weightings = ops.softmax(
            ops.cast(self.initial_weighting_logits, "float32"), axis=-1
        )  # (H, N)
        weightings = _rows(weightings, batch_size)  # (B, H * N)
        states = [memory, reads, weightings]
        if self.controller == "lstm":
            zeros = ops.zeros((batch_size, self.controller_units), dtype=self.compute_dtype)
            states = [zeros, ops.zeros_like(zeros), *states]
        return states

    # ------------------------------------------------------------------- call
    def _clip(self, x):
        if self.clip_value is None:
            return x
        return ops.clip(x, -self.clip_value, self.clip_value)

    def call(self, inputs, states=None, training=None):
        validation.check_last_dim(inputs.shape, "inputs", self.input_dim)
        inputs = ops.cast(inputs, self.compute_dtype)
        if states is None:
            states = self.get_initial_state(ops.shape(inputs)[0])
        states = list(states)
        incoming_dtypes = [s.dtype for s in states]
        n, w = self.memory_size, self.memory_width
        r, k, h = self.num_read_heads, self.num_write_heads, self.num_heads
        if self.controller == "lstm":
            controller_state = [ops.cast(s, self.compute_dtype) for s in states[:2]]
            memory, reads, weightings = states[2:]
        else:
            controller_state = []
            memory, reads, weightings = states
        memory = ops.reshape(ops.cast(memory, "float32"), (-1, n, w))  # (B, N, W)
        previous = ops.reshape(
            ops.cast(weightings, "float32"), (-1, h, n)
        )  # (B, H, N)

        # Controller on [x_t, r_{t-1}].
        controller_in = ops.concatenate(
            [inputs, ops.cast(reads, self.compute_dtype)], axis=-1
        )  # (B, I + R * W)
        if self.controller == "lstm":
            hidden, controller_state = self.controller_layer(
                controller_in, controller_state, training=training
            )
        else:
            hidden = self.controller_layer(controller_in)
        hidden = self._clip(hidden)  # (B, U)

        # Head parameters, float32 from here on.
        params = self._clip(
            ops.cast(self.head_parameters(hidden), "float32")
        )  # (B, P)
        split = h * self._addressing_size
        addressing_params = ops.reshape(
            params[:, :split], (-1, h, self._addressing_size)
        )  # (B, H, W + S + 3)
        keys = ops.tanh(addressing_params[:, :, :w])  # (B, H, W)
        strengths = addressing.key_strength(addressing_params[:, :, w])  # (B, H)
        gates = ops.sigmoid(addressing_params[:, :, w + 1])  # (B, H)
        shifts = ops.softmax(
            addressing_params[:, :, w + 2 : w + 2 + self.num_shifts], axis=-1
        )  # (B, H, S)
        gammas = addressing.sharpening_exponent(addressing_params[:, :, -1])  # (B, H)
        erase = ops.sigmoid(
            ops.reshape(params[:, split : split + k * w], (-1, k, w))
        )  # (B, K, W)
        add = ops.tanh(ops.reshape(params[:, split + k * w :], (-1, k, w)))  # (B, K, W)

        new_weightings = addressing.address(
            memory, previous, keys, strengths, gates, shifts, gammas, self.epsilon
        )  # (B, H, N)
        read_weightings = new_weightings[:, :r]  # (B, R, N)
        write_weightings = new_weightings[:, r:]  # (B, K, N)
        new_reads = ops.reshape(
            addressing.read_memory(memory, read_weightings), (-1, r * w)
        )  # (B, R * W)
        new_memory = addressing.write_memory(
            memory, write_weightings, erase, add
        )  # (B, N, W)

        features = ops.concatenate(
            [hidden, ops.cast(new_reads, self.compute_dtype)], axis=-1
        )  # (B, U + R * W)
        if self.output_dim is not None:
            output = self._clip(self.output_projection(features))  # (B, O)
        else:
            output = features
        if self.return_weightings:
            # float32, so the weightings keep their precision (as the DNC's).
            output = ops.concatenate(
                [
                    ops.cast(output, "float32"),
                    ops.cast(ops.reshape(new_weightings, (-1, h * n)), "float32"),
                ],
                axis=-1,
            )  # (B, output_size)

        new_states = [
            ops.reshape(new_memory, (-1, n * w)),  # (B, N * W)
            new_reads,
            ops.reshape(new_weightings, (-1, h * n)),  # (B, H * N)
        ]
        if self.controller == "lstm":
            new_states = [*controller_state, *new_states]
        new_states = [
            ops.cast(s, dtype) for s, dtype in zip(new_states, incoming_dtypes)
        ]
        return output, new_states

    # ------------------------------------------------------------ shape/specs
    def compute_output_shape(self, input_shape, states_shape=None):
        batch = input_shape[0]
        return (batch, self.output_size), [(batch, s) for s in self.state_size]

    def compute_output_spec(self, inputs, states=None, training=None):
        batch = inputs.shape[0]
        dtype = "float32" if self.return_weightings else self.compute_dtype
        output = keras.KerasTensor((batch, self.output_size), dtype=dtype)
        if states is None:
            dtypes = self.state_dtypes
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
                "shift_range": self.shift_range,
                "controller": self.controller,
                "memory_init": self.memory_init,
                "clip_value": self.clip_value,
                "output_dim": self.output_dim,
                "return_weightings": self.return_weightings,
                "epsilon": self.epsilon,
                "seed": self.seed,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
