"""keras-tuner HyperModel of NTM / DNC sequence models."""

import keras
import keras_tuner

from keras_attention.layers.memory import DNC
from keras_attention.layers.memory import NTM
from keras_attention.training import BitErrorsPerSequence
from keras_attention.tuning.search_space import check_int_choices
from keras_attention.tuning.search_space import check_name_choices
from keras_attention.tuning.search_space import check_range
from keras_attention.tuning.search_space import choose
from keras_attention.tuning.search_space import choose_float
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int

CELLS = {"ntm": NTM, "dnc": DNC}


class MemoryHyperModel(keras_tuner.HyperModel):
    """Searches Neural Turing Machines and Differentiable Neural Computers.

    Each trial builds `inputs (B, T, input_dim) -> NTM or DNC
    (return_sequences=True, output_dim) -> logits (B, T, output_dim)` with
    a sampled memory cell, controller size, memory size `N` and width `W`,
    and read / write heads, and compiles it for the bit tasks of
    `keras_attention.data` (copy, repeat copy, associative recall, priority
    sort): sigmoid cross-entropy on logits weighted by the tasks' per-step
    sample weights, `BitErrorsPerSequence` (in `weighted_metrics`), and
    Adam with the sampled learning rate and global gradient-norm clipping
    (Collier and Beel 2018: 1e-3 and 50). The objective
    `"val_bit_errors_per_sequence"` (direction `"min"`) or `"val_loss"`
    needs validation data in `search`.

    Each search-space argument is one value (fixed) or a list of choices;
    `learning_rate` takes a number or a `(low, high)` range.

    Args:
        input_dim: int, width of the input vectors (`num_bits + 1` for
            copy).
        output_dim: int, number of output bits.
        cell: `"ntm"` and/or `"dnc"`.
        controller_units: LSTM controller sizes.
        memory_size: numbers N of memory slots.
        memory_width: widths W of a memory slot.
        num_read_heads: numbers of read heads.
        num_write_heads: numbers of write heads.
        learning_rate: Adam learning rate, or a `(low, high)` range (sampled
            on a log scale).
        global_clipnorm: positive float or `None`, gradient-norm clipping.
        name: optional name of the HyperModel.
        tunable: whether its hyper-parameters are tuned.

    Raises:
        ValueError: for an invalid size, choice or range.

    Example:

    ```python
    import keras_tuner
    from keras_attention.tuning import MemoryHyperModel
    hypermodel = MemoryHyperModel(input_dim=5, output_dim=4, cell="dnc",
                                  controller_units=8, memory_size=[4, 8],
                                  memory_width=4, num_read_heads=1)
    model = hypermodel.build(keras_tuner.HyperParameters())
    model.get_layer("dnc").memory_size  # 4, the first choice
    ```

    References:
        Graves et al., 2014, "Neural Turing Machines".
        Graves et al., 2016, "Hybrid computing using a neural network with
        dynamic external memory" (the DNC).
        Collier and Beel, 2018, "Implementing Neural Turing Machines".
    """

    def __init__(
        self,
        input_dim,
        output_dim,
        cell=("ntm", "dnc"),
        controller_units=(64, 100),
        memory_size=(16, 32, 64, 128),
        memory_width=(8, 16, 20),
        num_read_heads=(1, 2, 4),
        num_write_heads=1,
        learning_rate=(1e-4, 3e-3),
        global_clipnorm=50.0,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        self.input_dim = check_positive_int(input_dim, "input_dim")
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.cell = check_name_choices(cell, "cell", tuple(CELLS))
        self.controller_units = check_int_choices(controller_units, "controller_units")
        self.memory_size = check_int_choices(memory_size, "memory_size")
        self.memory_width = check_int_choices(memory_width, "memory_width")
        self.num_read_heads = check_int_choices(num_read_heads, "num_read_heads")
        self.num_write_heads = check_int_choices(num_write_heads, "num_write_heads")
        self.learning_rate = check_range(
            learning_rate, "learning_rate", 0.0, 1.0, high_inclusive=True, positive=True
        )
        self.global_clipnorm = check_positive_float(
            global_clipnorm, "global_clipnorm", allow_none=True
        )

    def build(self, hp):
        """A compiled NTM or DNC model for the hyper-parameters `hp`."""
        cell = choose(hp, "cell", self.cell)
        memory = CELLS[cell](
            controller_units=choose(hp, "controller_units", self.controller_units),
            memory_size=choose(hp, "memory_size", self.memory_size),
            memory_width=choose(hp, "memory_width", self.memory_width),
            num_read_heads=choose(hp, "num_read_heads", self.num_read_heads),
            num_write_heads=choose(hp, "num_write_heads", self.num_write_heads),
            output_dim=self.output_dim,
            return_sequences=True,
            name=cell,
        )
        inputs = keras.Input((None, self.input_dim), name="sequences")
        logits = memory(inputs)  # (B, T, output_dim)
        model = keras.Model(inputs, logits, name=f"{cell}_model")
        learning_rate = choose_float(hp, "learning_rate", self.learning_rate, "log")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=self.global_clipnorm),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            weighted_metrics=[BitErrorsPerSequence(from_logits=True)],
        )
        return model
