"""The time loop shared by the `NTM` and `DNC` layers."""

import inspect

import keras
from keras import ops

# `keras.layers.RNN.inner_loop` calls this loop too; Keras has no public name for it.
from keras.src.backend import rnn as backend_rnn


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

    Subclasses set `return_weightings`.
    """

    return_weightings = False

    def inner_loop(self, sequences, initial_state, mask, training=False):
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
