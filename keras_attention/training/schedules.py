"""Learning-rate schedules."""

import keras
from keras import ops

from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then inverse square-root decay (Vaswani et al. 2017).

    The learning rate of the paper (section 5.3, eq. 3):

        lr = scale * hidden_dim^-0.5
                   * min(step_num^-0.5, step_num * warmup_steps^-1.5)

    It grows linearly for the first `warmup_steps` updates, peaks at
    `scale * (hidden_dim * warmup_steps)^-0.5` and then decays as
    `step_num^-0.5`.

    Step numbering: Keras calls the schedule with `optimizer.iterations`,
    which is 0 for the first update, while the paper's `step_num` is 1 for
    the first update. The schedule uses `step_num = step + 1`, so the
    learning rate is never 0 (no wasted first step, no division by zero) and
    update `k` (1-based) gets exactly the paper's rate; the peak is at
    `step = warmup_steps - 1`, i.e. the `warmup_steps`-th update.

    Use it with the paper's Adam settings, `keras.optimizers.Adam(
    TransformerSchedule(512), beta_1=0.9, beta_2=0.98, epsilon=1e-9)`.

    Args:
        hidden_dim: int, the model width `d_model`.
        warmup_steps: int, number of warm-up updates (4000 in the paper).
        scale: float, a constant factor on the whole schedule (1.0 in the
            paper; tensor2tensor's `learning_rate` hyper-parameter).

    Call arguments:
        step: scalar integer or float tensor, the 0-based update index
            (`optimizer.iterations`).

    Returns:
        A float32 scalar tensor, the learning rate.

    Raises:
        ValueError: if `hidden_dim` or `warmup_steps` is not a positive
            integer, or `scale` is not a positive float.

    Example:

    ```python
    import keras
    from keras_attention.training import TransformerSchedule
    schedule = TransformerSchedule(hidden_dim=512, warmup_steps=4000)
    float(schedule(3999))  # peak: 512**-0.5 * 4000**-0.5 ~ 6.99e-4
    optimizer = keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
          section 5.3.
    """

    def __init__(self, hidden_dim, warmup_steps=4000, scale=1.0):
        super().__init__()
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.warmup_steps = check_positive_int(warmup_steps, "warmup_steps")
        self.scale = check_positive_float(scale, "scale")

    def __call__(self, step):
        step_num = ops.cast(step, "float32") + 1.0
        factor = self.scale * float(self.hidden_dim) ** -0.5
        slope = float(self.warmup_steps) ** -1.5
        return factor * ops.minimum(ops.rsqrt(step_num), step_num * slope)

    def get_config(self):
        return {
            "hidden_dim": self.hidden_dim,
            "warmup_steps": self.warmup_steps,
            "scale": self.scale,
        }
