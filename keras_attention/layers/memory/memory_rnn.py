"""The time loop shared by the `NTM` and `DNC` layers."""

import inspect
import weakref

import keras
from keras import ops

# `keras.layers.RNN.inner_loop` calls this loop too; Keras has no public name for it.
from keras.src.backend import rnn as backend_rnn

from keras_attention.utils import validation

# `keras.layers.RNN` reads these by truthiness; a layer here takes bools only.
_RNN_FLAGS = (
    "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
    "zero_output_for_mask",
)

# JAX only: layer -> {loop options: its `jax.jit` loop}. Kept off the layer,
# so copies of a layer trace their own.
_JAX_LOOPS = weakref.WeakKeyDictionary()


class MemoryRNN(keras.layers.RNN):
    """`keras.layers.RNN` with the loop the memory layers need.

    Two things differ from `keras.layers.RNN.inner_loop`:

    - With `return_weightings=True` the loop keeps every step's output even
      when `return_sequences=False`: the weightings of every step live in
      the outputs.
    - Masks on backends other than TensorFlow. With a mask, a masked step
      outputs the previous step's output (zeros before the first unmasked
      step) and keeps the states, as in TensorFlow. Keras' JAX loop takes
      that previous output from the cell's *first state*, which for an
      LSTM is its output but for the memory cells is the controller state
      or the memory (another shape). There, the loop carries the previous
      output as an extra first state, and drops it afterwards, so masked
      `NTM` / `DNC` layers give the same results on every backend.
    - On JAX the loop runs as one `jax.jit` function of the cell's weights,
      traced once per layer, options and input signature. Keras' JAX loop
      is a `lax.scan` over a closure made anew at every call, so run op by
      op (`fit` with `jit_compile=False` or `run_eagerly=True`, an eager
      call) JAX compiled the scan, and in training its linearization, at
      every step: 2.2-2.9 s per step for a DNC with a 32-unit controller
      and an 8 x 8 memory at batch 32 and 7 time steps (0.03-0.05 s now),
      and in two 150-step runs XLA's compiler crashed the process (a
      segfault, jax 0.10.2). In a compiled step the inner function is
      inlined: compiled training runs the same program as before.

    Subclasses set `return_weightings`.
    """

    return_weightings = False

    def __init__(self, cell, **kwargs):
        for name in _RNN_FLAGS:
            if name in kwargs:
                validation.check_bool(kwargs[name], name)
        super().__init__(cell, **kwargs)

    def _initial_state(self, sequences, initial_state, dtypes):
        """The states a call starts from, checked, each cast to its dtype.

        `initial_state` (when given) must hold one `(batch, size)` tensor
        per entry of the cell's `state_size`; a stateful layer must be
        called with the batch size it was built with.
        """
        batch = sequences.shape[0]
        expected = self._expected_batch_size
        if self.stateful and None not in (batch, expected) and batch != expected:
            raise ValueError(
                f"A stateful {type(self).__name__} needs the batch size it was "
                f"built with. Expected: {expected}. Received: "
                f"sequences.shape={tuple(sequences.shape)}"
            )
        if initial_state is None:
            if self.stateful:
                initial_state = self.states
            else:
                initial_state = self.get_initial_state(ops.shape(sequences)[0])
        else:
            initial_state = keras.tree.flatten(initial_state)
            self._check_initial_state(initial_state, batch)
        return [ops.cast(s, dtype) for s, dtype in zip(initial_state, dtypes)]

    def _check_initial_state(self, states, batch):
        sizes = list(self.cell.state_size)
        expected = ", ".join(f"({batch}, {size})" for size in sizes)
        if len(states) != len(sizes):
            raise ValueError(
                "Received an invalid value for argument `initial_state`, "
                f"expected {len(sizes)} tensors of shapes {expected} (the "
                f"cell's state_size). Received: {len(states)} tensors"
            )
        for index, (state, size) in enumerate(zip(states, sizes)):
            shape = tuple(state.shape)
            if (
                len(shape) != 2
                or None not in (shape[1], size) and shape[1] != size
                or None not in (shape[0], batch) and shape[0] != batch
            ):
                raise ValueError(
                    "Received an invalid value for argument `initial_state`, "
                    f"expected initial_state[{index}] of shape ({batch}, {size}). "
                    f"Received: initial_state[{index}].shape={shape}"
                )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if keras.backend.backend() == "jax":
            return self._jax_loop(sequences, initial_state, mask, training)
        return self._loop(sequences, initial_state, mask, training)

    def _jax_loop(self, sequences, initial_state, mask, training):
        import jax

        variables = list(self.cell.variables)
        key = (
            bool(training), self.return_sequences, self.go_backwards,
            self.unroll, self.zero_output_for_mask, len(variables),
        )
        loops = _JAX_LOOPS.setdefault(self, {})
        if key not in loops:
            layer_ref = weakref.ref(self)  # the cache must not keep `self` alive

            def loop(values, sequences, initial_state, mask):
                # The cell reads `values` in place of its variables (the
                # outer train step's scope maps them to its own values).
                with keras.StatelessScope(state_mapping=zip(variables, values)):
                    return layer_ref()._loop(sequences, initial_state, mask, training)

            loops[key] = jax.jit(loop)
        values = [variable.value for variable in variables]
        return loops[key](values, sequences, initial_state, mask)

    def _loop(self, sequences, initial_state, mask, training):
        return_sequences = self.return_sequences
        self.return_sequences = return_sequences or self.return_weightings
        try:
            if (
                mask is None
                or self.zero_output_for_mask
                or keras.backend.backend() == "tensorflow"
            ):
                return super().inner_loop(sequences, initial_state, mask, training)
            return self._loop_carrying_the_output(
                sequences, initial_state, mask, training
            )
        finally:
            self.return_sequences = return_sequences

    def _loop_carrying_the_output(self, sequences, initial_state, mask, training):
        cell = self.cell
        kwargs = {}
        if "training" in inspect.signature(cell.call).parameters:
            kwargs["training"] = training

        def step(inputs, states):
            output, new_states = cell(inputs, list(states[1:]), **kwargs)
            # float32 carry: the masked-step `where` then keeps one dtype.
            return output, [ops.cast(output, "float32"), *keras.tree.flatten(new_states)]

        batch = ops.shape(sequences)[0]
        previous = ops.zeros((batch, cell.output_size), "float32")  # (B, output_size)
        last_output, outputs, states = backend_rnn(
            step,
            sequences,
            [previous, *keras.tree.flatten(initial_state)],
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=False,
            return_all_outputs=self.return_sequences,
        )
        return last_output, outputs, list(states[1:])
