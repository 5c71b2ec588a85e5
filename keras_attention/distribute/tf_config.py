"""Reading and validating `TF_CONFIG`, the cluster description of tf.distribute.

A multi-worker job tells every process who it is with the `TF_CONFIG`
environment variable, a JSON object such as

    {"cluster": {"worker": ["host1:12345", "host2:12345"]},
     "task": {"type": "worker", "index": 0}}

TensorFlow itself accepts a malformed value silently and fails much later
(a hang while the workers look for each other, or a cryptic gRPC error), so
`read_tf_config` checks it up front and names what is wrong.
"""

import json
import numbers
import os

TF_CONFIG = "TF_CONFIG"

# Jobs whose tasks take part in MultiWorkerMirroredStrategy training.
TRAINING_JOBS = ("chief", "worker")


def _invalid(problem, value):
    return ValueError(f"Invalid TF_CONFIG: {problem}. Received: TF_CONFIG={value!r}")


def _check_address(address, job, value):
    if not isinstance(address, str) or ":" not in address:
        raise _invalid(
            f'every address of job "{job}" must be a "host:port" string, got '
            f"{address!r}",
            value,
        )
    host, port = address.rsplit(":", 1)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _invalid(
            f'every address of job "{job}" must be a "host:port" string with a '
            f"port in 1..65535, got {address!r}",
            value,
        )


def read_tf_config(tf_config=None):
    """Parse and validate a `TF_CONFIG` cluster description.

    Checks what `tf.distribute.MultiWorkerMirroredStrategy` needs: valid
    JSON; a `"cluster"` object mapping job names to non-empty lists of
    `"host:port"` addresses, with at least one `"chief"` or `"worker"`
    task; a `"task"` object whose `"type"` is one of the cluster's jobs and
    whose integer `"index"` lies in `0..len(cluster[type]) - 1`.

    Args:
        tf_config: the description as a JSON string or a dict; `None` reads
            the `TF_CONFIG` environment variable.

    Returns:
        A dict with keys `"cluster"` (job name -> list of addresses),
        `"task_type"`, `"task_id"`, `"num_workers"` (number of
        chief + worker tasks), `"is_chief"` and `"rpc_layer"`.

    Raises:
        ValueError: if `TF_CONFIG` is not set (and `tf_config` is `None`),
            is not valid JSON, or lacks or misstates `cluster` or `task`;
            the message starts with "TF_CONFIG" and says what is wrong.

    Example:

    ```python
    from keras_attention.distribute import read_tf_config
    config = read_tf_config({
        "cluster": {"worker": ["localhost:20001", "localhost:20002"]},
        "task": {"type": "worker", "index": 1},
    })
    config["num_workers"], config["is_chief"]  # (2, False)
    ```
    """
    if tf_config is None:
        tf_config = os.environ.get(TF_CONFIG)
        if not tf_config:
            raise ValueError(
                "TF_CONFIG is not set: multi-worker training needs the "
                "environment variable TF_CONFIG describing the cluster and this "
                'task, e.g. {"cluster": {"worker": ["host1:12345", '
                '"host2:12345"]}, "task": {"type": "worker", "index": 0}}. '
                'Use the "mirrored" strategy for several devices of one machine.'
            )
    raw = tf_config
    if isinstance(tf_config, str):
        try:
            config = json.loads(tf_config)
        except json.JSONDecodeError as error:
            raise _invalid(f"not valid JSON ({error})", raw) from None
    else:
        config = tf_config
    if not isinstance(config, dict):
        raise _invalid("expected a JSON object with keys 'cluster' and 'task'", raw)

    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _invalid(
            "missing 'cluster' (an object mapping job names such as 'worker' "
            "to lists of 'host:port' addresses)",
            raw,
        )
    for job, addresses in cluster.items():
        if not isinstance(addresses, (list, tuple)) or not addresses:
            raise _invalid(
                f'job "{job}" of the cluster must list at least one "host:port" '
                "address",
                raw,
            )
        for address in addresses:
            _check_address(address, job, raw)
    num_workers = sum(len(cluster.get(job, ())) for job in TRAINING_JOBS)
    if num_workers == 0:
        raise _invalid(
            "the cluster has no 'chief' or 'worker' job to train with", raw
        )

    task = config.get("task")
    if not isinstance(task, dict):
        raise _invalid(
            "missing 'task' (an object with this process's 'type' and "
            "'index', e.g. {'type': 'worker', 'index': 0})",
            raw,
        )
    task_type = task.get("type")
    if task_type not in cluster:
        raise _invalid(
            f"task type {task_type!r} is not a job of the cluster "
            f"{sorted(cluster)}",
            raw,
        )
    task_id = task.get("index")
    if not isinstance(task_id, numbers.Integral) or isinstance(task_id, bool):
        raise _invalid(f"task index must be an integer, got {task_id!r}", raw)
    size = len(cluster[task_type])
    if not 0 <= task_id < size:
        raise _invalid(
            f'task index {task_id} is out of range: job "{task_type}" has '
            f"{size} task(s), so the index must be in 0..{size - 1}",
            raw,
        )
    return {
        "cluster": {job: list(addresses) for job, addresses in cluster.items()},
        "task_type": task_type,
        "task_id": int(task_id),
        "num_workers": num_workers,
        "is_chief": is_chief_task(task_type, int(task_id), cluster),
        "rpc_layer": config.get("rpc_layer", "grpc"),
    }


def is_chief_task(task_type, task_id, cluster):
    """Whether a task is the chief: `"chief"`, else worker 0 with no chief job.

    Args:
        task_type: the task's job name, or `None` (a single process).
        task_id: the task's index in its job.
        cluster: dict of job name -> addresses (or `None`).

    Returns:
        bool.

    Example:

    ```python
    from keras_attention.distribute import is_chief_task
    is_chief_task("worker", 0, {"worker": ["a:1", "b:2"]})  # True
    ```
    """
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in (cluster or {})
