"""Choosing a `tf.distribute` strategy, logical devices, batch-size checks."""

import os

import tensorflow as tf

from keras_attention.distribute.tf_config import TF_CONFIG
from keras_attention.distribute.tf_config import is_chief_task
from keras_attention.distribute.tf_config import read_tf_config
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int

STRATEGY_NAMES = ("auto", "default", "mirrored", "multi_worker", "tpu")
COMMUNICATIONS = ("auto", "ring", "nccl")


def configure_logical_devices(num_devices, device_type="CPU", memory_limit=None):
    """Split the first physical CPU or GPU into `num_devices` logical devices.

    With two logical CPUs, `tf.distribute.MirroredStrategy` runs two
    replicas on a machine without GPUs: how this package tests its
    distributed code, and a way for users to try `--strategy mirrored`
    anywhere. One GPU can likewise be split (each logical GPU then needs a
    `memory_limit` in MiB).

    TensorFlow fixes its devices when its runtime starts (the first op, the
    first Keras model, the first strategy), so call this at the very start
    of a program, or in a fresh subprocess. Calling it again with the number
    of devices already configured does nothing.

    Args:
        num_devices: positive int, the number of logical devices.
        device_type: `"CPU"` or `"GPU"`.
        memory_limit: positive int (MiB) per logical GPU; required for
            `"GPU"`, must be `None` for `"CPU"`.

    Returns:
        The list of `tf.config.LogicalDevice`s of `device_type`.

    Raises:
        ValueError: on a non-positive `num_devices`, an unknown
            `device_type`, a missing or superfluous `memory_limit`, or no
            physical device of that type.
        RuntimeError: if TensorFlow has already started with a different
            number of logical devices.

    Example:

    ```python
    from keras_attention.distribute import configure_logical_devices
    # First thing in a program: configure_logical_devices(2) gives two
    # replicas to get_strategy("mirrored"). Asking for the current count
    # (one CPU) is a no-op once TensorFlow runs.
    len(configure_logical_devices(1))  # 1
    ```
    """
    check_positive_int(num_devices, "num_devices")
    check_one_of(device_type, "device_type", ("CPU", "GPU"))
    if device_type == "GPU":
        check_positive_float(memory_limit, "memory_limit")
    elif memory_limit is not None:
        raise ValueError(
            "Received an invalid value for argument `memory_limit`, expected "
            "None for CPU devices (memory limits apply to logical GPUs). "
            f"Received: memory_limit={memory_limit!r}"
        )
    physical = tf.config.list_physical_devices(device_type)
    if not physical:
        raise ValueError(
            f"Received an invalid value for argument `device_type`, expected "
            f"a device type present on this machine. No physical {device_type} "
            f"found. Received: device_type={device_type!r}"
        )
    config = tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit)
    try:
        tf.config.set_logical_device_configuration(physical[0], [config] * num_devices)
    except RuntimeError:
        logical = tf.config.list_logical_devices(device_type)
        if len(logical) == num_devices:
            return logical
        raise RuntimeError(
            f"configure_logical_devices({num_devices}) must run before "
            "TensorFlow initialises its devices (before any op, Keras model "
            "or tf.distribute strategy is created); TensorFlow already runs "
            f"{len(logical)} logical {device_type} device(s). Call it first "
            "thing in the program, or in a fresh subprocess."
        ) from None
    return tf.config.list_logical_devices(device_type)


def _mirrored_devices(devices):
    if devices is not None:
        if isinstance(devices, str):  # one device name, not its characters
            return [devices]
        return list(devices)
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _communication_options(communication, timeout_seconds):
    implementation = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    return tf.distribute.experimental.CommunicationOptions(
        implementation=implementation, timeout_seconds=timeout_seconds
    )


def _multi_worker_strategy(tf_config, communication, timeout_seconds):
    config = read_tf_config(tf_config)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(config["cluster"]),
        task_type=config["task_type"],
        task_id=config["task_id"],
        rpc_layer=config["rpc_layer"],
    )
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver,
        communication_options=_communication_options(communication, timeout_seconds),
    )


def _tpu_strategy(tpu):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise ValueError(
            f"Could not connect to a TPU (tpu={tpu!r}): {error}. Pass the TPU "
            'name or address as `tpu`, or tpu="local" on a TPU VM.'
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def check_fit_strategy(name):
    """Raise unless Keras `fit` can train under the strategy named `name`.

    Keras 3 `model.fit` fails under `MultiWorkerMirroredStrategy`
    ("PerReplica ... unsupported type", tensorflow#72388), so `"multi_worker"`,
    and `"auto"` when `TF_CONFIG` is set (which resolves to it), are refused
    with the way out: `DistributedTrainer` on several hosts, `"mirrored"` on
    one. The examples and the tuner call this on their `--strategy` flag.

    Args:
        name: one of `STRATEGY_NAMES`.

    Returns:
        `name`, unchanged.

    Raises:
        ValueError: for an unknown name, or a strategy Keras `fit` cannot
            train under.

    Example:

    ```python
    from keras_attention.distribute import check_fit_strategy
    check_fit_strategy("mirrored")  # 'mirrored'
    try:
        check_fit_strategy("multi_worker")
    except ValueError as error:
        print(error)  # ... does not run under MultiWorkerMirroredStrategy ...
    ```
    """
    check_one_of(name, "name", STRATEGY_NAMES)
    if name == "multi_worker" or (name == "auto" and os.environ.get(TF_CONFIG)):
        raise ValueError(
            f"Received strategy {name!r}: Keras fit does not run under "
            "MultiWorkerMirroredStrategy (tensorflow#72388); train on several "
            "hosts with keras_attention.distribute.DistributedTrainer "
            "(docs/distributed.md), or use 'mirrored' on one machine"
        )
    return name


def get_strategy(
    name="auto",
    devices=None,
    tf_config=None,
    tpu=None,
    communication="auto",
    timeout_seconds=None,
):
    """Return the `tf.distribute.Strategy` for `name`.

    - `"default"`: TensorFlow's default strategy (one device, no copies).
    - `"mirrored"`: `MirroredStrategy` over `devices`, by default every GPU,
      or every logical CPU when there is no GPU (see
      `configure_logical_devices`).
    - `"multi_worker"`: `MultiWorkerMirroredStrategy` over the cluster of
      `TF_CONFIG` (validated by `read_tf_config`). Create it at program
      start, before TensorFlow runs any op (TensorFlow configures its
      collective ops then). Keras 3 `model.fit` does not run under it
      (tensorflow#72388): train with `DistributedTrainer`.
    - `"tpu"`: `TPUStrategy` from a `TPUClusterResolver(tpu)`.
    - `"auto"`: `"multi_worker"` when `TF_CONFIG` is set (or `tf_config`
      given), `"tpu"` when `tpu` is given or `TPU_NAME` is set,
      `"mirrored"` when there is more than one GPU (or logical CPU), else
      `"default"`.

    Args:
        name: one of `"auto"`, `"default"`, `"mirrored"`, `"multi_worker"`,
            `"tpu"`.
        devices: device names for `"mirrored"` (e.g. `["/gpu:0", "/gpu:1"]`);
            `None` picks them as described above.
        tf_config: cluster description (JSON string or dict) for
            `"multi_worker"`; `None` reads the `TF_CONFIG` variable.
        tpu: TPU name or address for `"tpu"` (`"local"` on a TPU VM, `None`
            for the `TPU_NAME` variable).
        communication: collective implementation of `"multi_worker"`:
            `"auto"`, `"ring"` (gRPC, CPU) or `"nccl"` (GPUs).
        timeout_seconds: positive float or `None`; a collective operation of
            `"multi_worker"` waiting longer than this fails instead of
            hanging (e.g. when a peer worker died).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown `name` or `communication`, an invalid
            `TF_CONFIG` (see `read_tf_config`), or no reachable TPU.

    Example:

    ```python
    from keras_attention.distribute import get_strategy
    strategy = get_strategy("default")
    strategy.num_replicas_in_sync  # 1
    ```
    """
    check_one_of(name, "name", STRATEGY_NAMES)
    check_one_of(communication, "communication", COMMUNICATIONS)
    check_positive_float(timeout_seconds, "timeout_seconds", allow_none=True)
    if name == "auto":
        if tf_config is not None or os.environ.get(TF_CONFIG):
            name = "multi_worker"
        elif tpu is not None or os.environ.get("TPU_NAME"):
            name = "tpu"
        elif len(_mirrored_devices(devices)) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(_mirrored_devices(devices))
    if name == "multi_worker":
        return _multi_worker_strategy(tf_config, communication, timeout_seconds)
    return _tpu_strategy(tpu)


def is_chief(strategy=None):
    """Whether this process is the chief of `strategy`'s cluster.

    The chief writes checkpoints, exports and logs. Single-machine
    strategies have one process, which is the chief.

    Args:
        strategy: a `tf.distribute.Strategy`; `None` for the current one.

    Returns:
        bool.

    Example:

    ```python
    from keras_attention.distribute import get_strategy, is_chief
    is_chief(get_strategy("default"))  # True
    ```
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return is_chief_task(
        resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()
    )


def check_global_batch_size(global_batch_size, strategy=None):
    """Check that the global batch splits evenly over the replicas.

    Every replica gets `global_batch_size / num_replicas_in_sync` examples
    per step; an uneven split would silently give the replicas different
    batch sizes (and multi-worker collectives different shapes).

    Args:
        global_batch_size: positive int, examples per step over all replicas.
        strategy: a `tf.distribute.Strategy`; `None` for the current one.

    Returns:
        The per-replica batch size (int).

    Raises:
        ValueError: if `global_batch_size` is not a positive multiple of
            `strategy.num_replicas_in_sync`.

    Example:

    ```python
    from keras_attention.distribute import check_global_batch_size, get_strategy
    check_global_batch_size(64, get_strategy("default"))  # 64
    ```
    """
    check_positive_int(global_batch_size, "global_batch_size")
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas != 0:
        raise ValueError(
            "Received an invalid value for argument `global_batch_size`, "
            f"expected a multiple of the number of replicas in sync ({replicas} "
            f"under {type(strategy).__name__}), so that every replica gets the "
            f"same batch. Received: global_batch_size={global_batch_size}"
        )
    return global_batch_size // replicas
