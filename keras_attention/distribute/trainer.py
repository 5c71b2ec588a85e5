"""A custom training loop over `strategy.run` that works under every strategy.

Keras 3 `model.fit` fails under `MultiWorkerMirroredStrategy` ("Attempt to
convert a value ({...: PerReplica:{...}}) with an unsupported type",
tensorflow#72388, keras#20585). `DistributedTrainer` trains the same
models, with the same losses, metrics, optimizers and learning-rate
schedules, under the default, mirrored, multi-worker and TPU strategies,
and makes training fault tolerant: it checkpoints the model, the optimizer
state and its position (epoch and step) and resumes from the last
checkpoint when restarted.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_attention.distribute.checkpointing import chief_write_dir
from keras_attention.distribute.datasets import distribute_global_batches
from keras_attention.distribute.strategies import is_chief
from keras_attention.utils.validation import check_positive_int

_SUM = tf.distribute.ReduceOp.SUM


class _FunctionLoss(keras.losses.Loss):
    """A loss function `fn(y_true, y_pred)` as a `keras.losses.Loss`."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _as_loss(loss):
    if isinstance(loss, keras.losses.Loss):
        return loss
    if isinstance(loss, str) or callable(loss):
        loss = keras.losses.get(loss)
        return loss if isinstance(loss, keras.losses.Loss) else _FunctionLoss(loss)
    raise ValueError(
        "Received an invalid value for argument `loss`, expected a "
        "keras.losses.Loss, a loss name or a function (or a model compiled "
        f"with one). Received: loss={loss!r}"
    )


def _shallow_copy(obj):
    # `copy.copy` would pickle a Keras object through its saving code.
    clone = object.__new__(type(obj))
    clone.__dict__.update(obj.__dict__)
    return clone


def loss_sum_and_weight(loss, y_true, y_pred, sample_weight=None):
    """Split a Keras loss into its weighted sum and its normaliser.

    A reduced Keras loss is `sum / weight`: for `"sum_over_batch_size"` the
    weight is the number of (unmasked) loss elements, for
    `"mean_with_sample_weight"` (e.g. `MaskedSparseCategoricalCrossentropy`,
    whose weight counts the non-padding tokens) the sum of the weights. Each
    replica sees a slice of the global batch, so the global loss is
    `sum of the replicas' sums / sum of their weights`; this function
    returns the two parts, computed by the loss's own `__call__` (padding,
    Keras masks and sample weights are handled exactly as in `fit`).

    Args:
        loss: a `keras.losses.Loss` with a reducing `reduction`.
        y_true: targets.
        y_pred: predictions (may carry a Keras mask).
        sample_weight: optional sample weights.

    Returns:
        `(total, weight)` scalars; `weight` is `None` for `reduction="sum"`
        (nothing to normalise).

    Raises:
        ValueError: if the loss does not reduce (`reduction="none"`).

    Example:

    ```python
    import numpy as np
    from keras_attention.distribute.trainer import loss_sum_and_weight
    from keras_attention.training import MaskedSparseCategoricalCrossentropy
    total, weight = loss_sum_and_weight(
        MaskedSparseCategoricalCrossentropy(pad_id=0),
        np.array([[3, 1, 0]]), np.zeros((1, 3, 4), "float32"))
    float(weight)  # 2.0: two non-padding tokens
    ```
    """
    reduction = loss.reduction
    if reduction in (None, "none"):
        raise ValueError(
            "Received an invalid value for argument `loss`, expected a loss "
            "that reduces to a scalar (reduction 'sum_over_batch_size', "
            "'mean', 'mean_with_sample_weight' or 'sum'). Received: "
            f"loss.reduction={reduction!r}"
        )
    values = []

    def keep_values(a, b):
        values.append(loss.call(a, b))
        return values[-1]

    summed = _shallow_copy(loss)
    summed.reduction = "sum"
    summed.call = keep_values
    total = summed(y_true, y_pred, sample_weight)
    if reduction == "sum":
        return total, None
    counted = _shallow_copy(loss)
    counted.reduction = "sum"
    counted.call = lambda a, b: ops.ones_like(values[-1])
    # "mean_with_sample_weight" divides by the sum of the weights, the other
    # mean reductions by the element count (masked elements excluded).
    weights = sample_weight if reduction == "mean_with_sample_weight" else None
    return total, counted(y_true, y_pred, weights)


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _metric_in_scope(metric):
    if isinstance(metric, keras.metrics.Metric):
        return keras.metrics.deserialize(keras.metrics.serialize(metric))
    if isinstance(metric, str) or callable(metric):
        fn = keras.metrics.get(metric)
        if isinstance(fn, keras.metrics.Metric):
            return fn
        return keras.metrics.MeanMetricWrapper(fn, name=getattr(fn, "__name__", str(metric)))
    raise ValueError(
        "Received an invalid value for argument `metrics`, expected a list of "
        f"keras.metrics.Metric objects, names or functions. Received: {metric!r}"
    )


class DistributedTrainer:
    """Train a Keras model with a custom loop over `strategy.run`.

    A drop-in for `model.fit` / `model.evaluate` that also works under
    `MultiWorkerMirroredStrategy`, where Keras 3's `fit` fails
    (tensorflow#72388). Each step:

    1. every replica runs the model on its slice of the global batch
       (`distribute_global_batches`) and computes its part of the loss,
       `sum_r / W` with `W` the global loss weight (all-reduced: the number
       of non-padding tokens for `MaskedSparseCategoricalCrossentropy`, the
       number of examples for a per-example loss), so the replicas' parts
       add up to exactly the loss of the whole global batch on one device
       (Keras `fit` averages the replicas' own means instead, which differs
       when replicas hold different numbers of tokens);
    2. the gradients are all-reduced (summed) in one collective;
    3. `optimizer.apply` runs once on the aggregated gradients, so clipping
       (`clipnorm`, `global_clipnorm`) sees the global gradient, and the
       learning-rate schedule follows `optimizer.iterations`;
    4. metrics accumulate per replica and are summed when read.

    Fault tolerance: with `checkpoint_dir`, a `tf.train.CheckpointManager`
    saves the model (with the random state of its dropout layers), the
    optimizer (moments, iteration count) and the position in training
    (epoch, step within the epoch) every `save_every_steps` steps and at
    every epoch end (metric accumulators are not saved: after a resume the
    epoch's metrics cover the steps since the restart). `fit` first restores
    the latest checkpoint, then skips the batches the checkpoint already
    trained on and continues: a job killed at any point and restarted with
    the same arguments ends with the same weights as an uninterrupted run,
    when its data order is deterministic (pass `data` as a function of the
    epoch for per-epoch shuffling) and its ops are deterministic.

    Multi-worker: only the chief keeps checkpoints and exports; the other
    workers take part in every save (as the TensorFlow guide requires) but
    write to temporary directories that are deleted at once. All workers
    restore from `checkpoint_dir`, so it must be on storage every worker can
    read (a shared file system, GCS). Only the chief shows progress.

    Args:
        model: a built `keras.Model` created under `strategy.scope()` (see
            `build_and_compile`).
        optimizer: a Keras optimizer created under `strategy.scope()`;
            `None` uses `model.optimizer`.
        loss: a `keras.losses.Loss` (or name or function); `None` uses
            `model.loss`.
        metrics: list of metrics (objects, names or functions); copies are
            created under the strategy's scope.
        strategy: the `tf.distribute.Strategy`; `None` for the current one.
        checkpoint_dir: directory of the training checkpoints, or `None` for
            no checkpointing.
        save_every_steps: positive int or `None`; also checkpoint every this
            many optimizer steps (not only at epoch ends).
        max_to_keep: positive int, number of checkpoints kept.

    Raises:
        ValueError: if the model is not built, there is no optimizer or
            loss, the optimizer was created under another strategy, or an
            argument is invalid.

    Example:

    ```python
    import keras, numpy as np, tensorflow as tf
    from keras_attention.distribute import DistributedTrainer, get_strategy
    strategy = get_strategy("default")
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensor_slices(
        (np.ones((8, 3), "float32"), np.zeros((8, 2), "float32"))
    ).batch(4, drop_remainder=True)
    trainer = DistributedTrainer(model, strategy=strategy)
    history = trainer.fit(data, epochs=2, verbose=0)
    len(history.history["loss"])  # 2
    ```
    """

    def __init__(
        self,
        model,
        optimizer=None,
        loss=None,
        metrics=(),
        strategy=None,
        checkpoint_dir=None,
        save_every_steps=None,
        max_to_keep=3,
    ):
        if not isinstance(model, keras.Model) or not model.built:
            raise ValueError(
                "Received an invalid value for argument `model`, expected a "
                "built keras.Model (create it under `strategy.scope()`, e.g. "
                f"with `build_and_compile`). Received: model={model!r}"
            )
        self.model = model
        self.strategy = strategy or tf.distribute.get_strategy()
        self.optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
        if not isinstance(self.optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "Received an invalid value for argument `optimizer`, expected a "
                "Keras optimizer (or a compiled model). Received: "
                f"optimizer={self.optimizer!r}"
            )
        created_under = getattr(self.optimizer, "_distribution_strategy", self.strategy)
        if created_under is not self.strategy:
            raise ValueError(
                "Received an invalid value for argument `optimizer`, expected an "
                "optimizer created under `strategy.scope()` (it was created "
                f"under {type(created_under).__name__}, training runs under "
                f"{type(self.strategy).__name__}). Create it inside the scope or "
                "use `build_and_compile`."
            )
        loss = loss if loss is not None else getattr(model, "loss", None)
        self.loss = _as_loss(loss)
        self.checkpoint_dir = checkpoint_dir
        self.save_every_steps = check_positive_int(
            save_every_steps, "save_every_steps", allow_none=True
        )
        self.max_to_keep = check_positive_int(max_to_keep, "max_to_keep")
        self.is_chief = is_chief(self.strategy)
        with self.strategy.scope():
            self.metrics = [_metric_in_scope(m) for m in (metrics or ())]
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self._step_in_epoch = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="step_in_epoch"
            )
        # Random-number states (e.g. of Dropout's seed generators) are model
        # variables that the model's object graph does not reach: save every
        # model variable explicitly, so a resumed run draws the same masks.
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            model_variables=[_tf_variable(v) for v in self.model.variables],
            optimizer=self.optimizer,
            epoch=self._epoch,
            step_in_epoch=self._step_in_epoch,
        )
        self._manager = None
        if checkpoint_dir is not None and self.is_chief:
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, checkpoint_dir, max_to_keep=self.max_to_keep
            )
        self._train_function = None
        self._eval_function = None
        self._grad_indices = None

    # ------------------------------------------------------------------
    # Position in training.

    @property
    def epoch(self):
        """Number of completed epochs (restored with the checkpoint)."""
        return int(self._epoch.numpy())

    @property
    def step_in_epoch(self):
        """Steps done in the current epoch (restored with the checkpoint)."""
        return int(self._step_in_epoch.numpy())

    @property
    def global_step(self):
        """Optimizer updates so far, `optimizer.iterations`."""
        return int(self.optimizer.iterations.numpy())

    # ------------------------------------------------------------------
    # Checkpoints and export.

    def latest_checkpoint(self):
        """Path of the latest checkpoint in `checkpoint_dir`, or `None`."""
        if self.checkpoint_dir is None:
            return None
        return tf.train.latest_checkpoint(self.checkpoint_dir)

    def restore(self, path=None):
        """Restore model, optimizer and position from a checkpoint.

        Args:
            path: a checkpoint path; `None` takes the latest one in
                `checkpoint_dir`.

        Returns:
            The restored path, or `None` when there was none.
        """
        path = path or self.latest_checkpoint()
        if path is None:
            return None
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save_checkpoint(self):
        """Save a checkpoint numbered by the global step (all workers call it).

        Returns:
            The chief's checkpoint path, or `None` on other workers and
            without `checkpoint_dir`.
        """
        if self.checkpoint_dir is None:
            return None
        if self.is_chief:
            return self._manager.save(checkpoint_number=self.global_step)
        with chief_write_dir(self.checkpoint_dir, self.strategy) as temporary:
            tf.train.CheckpointManager(self.checkpoint, temporary, max_to_keep=1).save(
                checkpoint_number=self.global_step
            )
        return None

    def save_model(self, filepath):
        """Save the model as a `.keras` file; only the chief's file is kept.

        Args:
            filepath: path ending in `.keras`.

        Returns:
            `filepath` on the chief, `None` on other workers.
        """
        directory, name = os.path.split(str(filepath))
        with chief_write_dir(directory or ".", self.strategy) as target:
            self.model.save(os.path.join(target, name))
        return filepath if self.is_chief else None

    def export(self, export_dir, version=1, pipeline=None, overwrite=False):
        """Export for TF Serving with `export_for_serving`; chief only.

        Writes `export_dir/<version>/` (SavedModel + `.keras` file). Other
        workers export into a temporary directory that is deleted.

        Args:
            export_dir: the model root, e.g. `"saved_models/translator"`.
            version: positive int, the version directory.
            pipeline: optional serving pipeline around the model (e.g. a
                `keras_attention.export.TranslatorPipeline` taking raw
                strings); `None` serves the model on its own inputs.
            overwrite: whether to replace an existing version.

        Returns:
            The version directory on the chief, `None` on other workers.
        """
        from keras_attention.export import export_for_serving

        with chief_write_dir(export_dir, self.strategy) as target:
            path = export_for_serving(
                pipeline if pipeline is not None else self.model,
                target, version=version, overwrite=overwrite,
            )
        return path if self.is_chief else None

    # ------------------------------------------------------------------
    # Steps.

    def _replica_loss(self, y, y_pred, sample_weight, context):
        """This replica's share: its loss sum over the global loss weight."""
        total, weight = loss_sum_and_weight(self.loss, y, y_pred, sample_weight)
        if weight is None:  # reduction="sum": the shares add up as they are
            return total
        return ops.divide_no_nan(total, context.all_reduce(_SUM, weight))

    def _train_replica(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        context = tf.distribute.get_replica_context()
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            loss = self._replica_loss(y, y_pred, sample_weight, context)
            if self.model.losses:
                # Regularisation once over all replicas.
                loss = loss + ops.sum(self.model.losses) / context.num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        self._grad_indices = [i for i, g in enumerate(gradients) if g is not None]
        if not self._grad_indices:
            raise ValueError("No gradients: the loss does not depend on any trainable variable.")
        reduced = context.all_reduce(
            _SUM, [loss] + [gradients[i] for i in self._grad_indices]
        )
        for metric in self.metrics:
            metric.update_state(y, y_pred, sample_weight)
        return reduced

    def _make_train_function(self):
        strategy = self.strategy

        @tf.function
        def train_function(batch):
            reduced = strategy.run(self._train_replica, args=(batch,))
            # After the all-reduce every replica holds the same sums: take
            # this worker's first copy and update the variables once.
            reduced = [strategy.experimental_local_results(v)[0] for v in reduced]
            variables = self.model.trainable_variables
            self.optimizer.apply(
                reduced[1:], [variables[i] for i in self._grad_indices]
            )
            return reduced[0]

        return train_function

    def _eval_replica(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        context = tf.distribute.get_replica_context()
        y_pred = self.model(x, training=False)
        loss = self._replica_loss(y, y_pred, sample_weight, context)
        for metric in self.metrics:
            metric.update_state(y, y_pred, sample_weight)
        return context.all_reduce(_SUM, loss)

    def _make_eval_function(self):
        strategy = self.strategy

        @tf.function
        def eval_function(batch):
            loss = strategy.run(self._eval_replica, args=(batch,))
            return strategy.experimental_local_results(loss)[0]

        return eval_function

    # ------------------------------------------------------------------
    # Loops.

    @staticmethod
    def _num_steps(dataset, steps):
        if steps is not None:
            return check_positive_int(steps, "steps_per_epoch")
        cardinality = int(dataset.cardinality().numpy())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            raise ValueError(
                "Received an invalid value for argument `steps_per_epoch`, "
                "expected a positive integer for an infinite dataset. "
                "Received: steps_per_epoch=None"
            )
        return None if cardinality < 0 else cardinality

    @staticmethod
    def _batches(iterator, steps, start):
        """`(step, distributed batch)` until `steps` or the end of the data."""
        step = start
        while steps is None or step < steps:
            optional = iterator.get_next_as_optional()
            if not optional.has_value():
                return
            yield step, optional.get_value()
            step += 1

    def _metric_logs(self, prefix=""):
        logs = {}
        for metric in self.metrics:
            result = metric.result()
            if isinstance(result, dict):
                logs.update({prefix + k: float(v) for k, v in result.items()})
            else:
                logs[prefix + metric.name] = float(result)
        return logs

    def _verbosity(self, verbose):
        if not self.is_chief:
            return 0
        return 1 if verbose == "auto" else verbose

    def fit(
        self,
        data,
        epochs=1,
        steps_per_epoch=None,
        validation_data=None,
        validation_steps=None,
        callbacks=None,
        verbose="auto",
    ):
        """Train for `epochs` epochs, resuming from the latest checkpoint.

        Args:
            data: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
                global batches with a static batch size (batched with
                `drop_remainder=True`; divisible by the number of replicas),
                or a function `epoch -> dataset` (for per-epoch shuffling
                that stays reproducible after a restart). Each epoch reads
                the dataset from its start.
            epochs: total number of epochs (a resumed run does the rest).
            steps_per_epoch: steps per epoch; `None` reads the whole dataset.
            validation_data: optional dataset evaluated after each epoch.
            validation_steps: steps of validation; `None` for all.
            callbacks: list of `keras.callbacks.Callback`; batch logs hold
                the step's global `loss`, epoch logs the mean loss and the
                metrics of the epoch (since the restart, after a resume).
            verbose: `"auto"`/1 (progress bar), 2 (a line per epoch) or 0;
                non-chief workers are silent.

        Returns:
            A `keras.callbacks.History` of the epochs run by this call.

        Raises:
            ValueError: for a dataset without a static batch size, a global
                batch not divisible by the replicas, or an infinite dataset
                without `steps_per_epoch`.
        """
        check_positive_int(epochs, "epochs")
        verbose = self._verbosity(verbose)
        self.restore()
        if self._train_function is None:
            self._train_function = self._make_train_function()
        history = keras.callbacks.History()
        callback_list = keras.callbacks.CallbackList(
            [*(callbacks or ()), history], model=self.model, epochs=epochs, verbose=verbose
        )
        self.model.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(self.epoch, epochs):
            dataset = data(epoch) if callable(data) else data
            steps = self._num_steps(dataset, steps_per_epoch)
            start = self.step_in_epoch
            if start:
                dataset = dataset.skip(start)
            iterator = iter(distribute_global_batches(self.strategy, dataset))
            for metric in self.metrics:
                metric.reset_state()
            callback_list.on_epoch_begin(epoch)
            progbar = None
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
                progbar = keras.utils.Progbar(
                    steps, verbose=verbose, stateful_metrics=[m.name for m in self.metrics]
                )
                if start:
                    progbar.update(start)
            losses = []
            for step, batch in self._batches(iterator, steps, start):
                callback_list.on_train_batch_begin(step)
                step_loss = float(self._train_function(batch))
                losses.append(step_loss)
                self._step_in_epoch.assign(step + 1)
                logs = {"loss": step_loss, **self._metric_logs()}
                last = steps is not None and step + 1 == steps  # saved below
                if (self.save_every_steps and not last
                        and self.global_step % self.save_every_steps == 0):
                    self.save_checkpoint()
                callback_list.on_train_batch_end(step, logs)
                if progbar is not None:
                    progbar.update(step + 1, list(logs.items()), finalize=False)
                if self.model.stop_training:
                    break
            logs = {"loss": float(np.mean(losses)) if losses else float("nan")}
            logs.update(self._metric_logs())
            if validation_data is not None:
                val_logs = self.evaluate(validation_data, steps=validation_steps, verbose=0)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            self._epoch.assign(epoch + 1)
            self._step_in_epoch.assign(0)
            self.save_checkpoint()
            if progbar is not None:
                progbar.update(start + len(losses), list(logs.items()), finalize=True)
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end()
        return history

    def evaluate(self, data, steps=None, verbose=0):
        """Loss and metrics over `data` (global batches, like `fit`).

        Args:
            data: a `tf.data.Dataset` of global batches with a static batch
                size.
            steps: number of batches; `None` for all.
            verbose: 1 shows a progress bar on the chief.

        Returns:
            Dict with `"loss"` (the mean of the batches' global losses) and
            each metric's result over all batches.
        """
        verbose = self._verbosity(verbose)
        if self._eval_function is None:
            self._eval_function = self._make_eval_function()
        steps = self._num_steps(data, steps)
        iterator = iter(distribute_global_batches(self.strategy, data))
        for metric in self.metrics:
            metric.reset_state()
        progbar = keras.utils.Progbar(steps, verbose=verbose) if verbose else None
        losses = []
        for step, batch in self._batches(iterator, steps, 0):
            losses.append(float(self._eval_function(batch)))
            if progbar is not None:
                progbar.update(step + 1)
        return {"loss": float(np.mean(losses)) if losses else float("nan"),
                **self._metric_logs()}
