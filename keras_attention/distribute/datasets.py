"""Splitting globally batched datasets over replicas and workers."""

import tensorflow as tf

from keras_attention.distribute.strategies import check_global_batch_size


def global_batch_size_of(dataset):
    """The static leading dimension shared by every tensor of a batched dataset.

    Args:
        dataset: a batched `tf.data.Dataset`.

    Returns:
        int, the global batch size.

    Raises:
        ValueError: if the batch dimension is unknown (batch with
            `drop_remainder=True`) or differs between the tensors of an
            element.

    Example:

    ```python
    import tensorflow as tf
    from keras_attention.distribute import global_batch_size_of
    data = tf.data.Dataset.range(10).batch(4, drop_remainder=True)
    global_batch_size_of(data)  # 4
    ```
    """
    sizes = {spec.shape[0] if spec.shape.rank else None
             for spec in tf.nest.flatten(dataset.element_spec)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "Received an invalid value for argument `dataset`, expected a "
            "dataset batched by the global batch size with a static batch "
            "dimension (use `dataset.batch(global_batch_size, "
            "drop_remainder=True)`), so that every step splits evenly over the "
            f"replicas. Received: dataset.element_spec={dataset.element_spec}"
        )
    return sizes.pop()


def distribute_global_batches(strategy, dataset):
    """Distribute a dataset of global batches over `strategy`'s replicas.

    Each element of `dataset` is one global batch (`B` examples). Replica
    `r` of all `R` replicas gets the `r`-th slice of `B / R` examples of
    every global batch, whatever the number of workers: input pipeline `i`
    (one per worker) keeps the slices of its own replicas. So a step
    processes exactly the examples a single device would process with
    batch size `B`, which makes distributed and single-device runs
    comparable step by step. Every worker reads the whole dataset (as with
    tf.data's `AutoShardPolicy.DATA`): keep the input pipeline cheap or
    shard files yourself.

    Args:
        strategy: a `tf.distribute.Strategy`.
        dataset: a `tf.data.Dataset` of global batches with a static batch
            dimension (batched with `drop_remainder=True`).

    Returns:
        A `tf.distribute.DistributedDataset`.

    Raises:
        ValueError: if the batch dimension is not static or not divisible by
            `strategy.num_replicas_in_sync`.

    Example:

    ```python
    import tensorflow as tf
    from keras_attention.distribute import distribute_global_batches, get_strategy
    data = tf.data.Dataset.range(8).batch(4, drop_remainder=True)
    batches = distribute_global_batches(get_strategy("default"), data)
    [int(b[0]) for b in batches]  # [0, 4]
    ```
    """
    global_batch = global_batch_size_of(dataset)
    per_replica = check_global_batch_size(global_batch, strategy)

    def dataset_fn(context):
        local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
        start = context.input_pipeline_id * local_replicas * per_replica
        stop = start + local_replicas * per_replica

        def take_slice(*element):
            sliced = tf.nest.map_structure(lambda t: t[start:stop], element)
            return sliced if len(sliced) > 1 else sliced[0]

        local = dataset.map(take_slice)
        if local_replicas > 1:
            local = local.rebatch(per_replica, drop_remainder=True)
        return local

    return strategy.distribute_datasets_from_function(dataset_fn)
