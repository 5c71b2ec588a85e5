"""Strategy selection, TF_CONFIG validation, batch checks, scoped building."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_attention as ka
from keras_attention import distribute

CLUSTER = {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}


@pytest.fixture(autouse=True)
def _no_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)


# ----------------------------------------------------------------------
# get_strategy


def test_unknown_strategy_name():
    with pytest.raises(
        ValueError,
        match=r"Received an invalid value for argument `name`, expected one of "
        r"\['auto', 'default', 'mirrored', 'multi_worker', 'tpu'\]\. "
        r"Received: name='gpus'",
    ):
        distribute.get_strategy("gpus")


def test_unknown_communication_and_bad_timeout():
    with pytest.raises(ValueError, match=r"argument `communication`.*Received: communication='mpi'"):
        distribute.get_strategy("multi_worker", communication="mpi")
    with pytest.raises(ValueError, match=r"argument `timeout_seconds`.*Received: timeout_seconds=0"):
        distribute.get_strategy("multi_worker", timeout_seconds=0)


def test_default_and_auto_on_one_device():
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    # One CPU, no TF_CONFIG, no TPU: "auto" is the default strategy.
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()


def test_mirrored_over_given_devices():
    strategy = distribute.get_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 1
    assert distribute.is_chief(strategy)


def test_auto_picks_multi_worker_when_tf_config_is_set(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match=r"^Invalid TF_CONFIG: not valid JSON"):
        distribute.get_strategy("auto")


# ----------------------------------------------------------------------
# TF_CONFIG


def test_multi_worker_without_tf_config():
    with pytest.raises(ValueError, match=r"^TF_CONFIG is not set: multi-worker training"):
        distribute.get_strategy("multi_worker")


@pytest.mark.parametrize(
    "config, message",
    [
        ("{'cluster': 1}", r"not valid JSON \(Expecting property name"),
        ("[1, 2]", r"expected a JSON object with keys 'cluster' and 'task'"),
        ({"task": {"type": "worker", "index": 0}}, r"missing 'cluster'"),
        ({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}},
         r'job "worker" of the cluster must list at least one'),
        ({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}},
         r'every address of job "worker" must be a "host:port" string, got \'localhost\''),
        ({"cluster": {"worker": ["localhost:99999"]}, "task": {"type": "worker", "index": 0}},
         r'every address of job "worker" must be a "host:port" string with a port '
         r"in 1\.\.65535, got 'localhost:99999'"),
        ({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}},
         r"the cluster has no 'chief' or 'worker' job to train with"),
        ({"cluster": CLUSTER}, r"missing 'task'"),
        ({"cluster": CLUSTER, "task": {"type": "chief", "index": 0}},
         r"task type 'chief' is not a job of the cluster \['worker'\]"),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": "1"}},
         r"task index must be an integer, got '1'"),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}},
         r'task index 2 is out of range: job "worker" has 2 task\(s\), so the '
         r"index must be in 0\.\.1"),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": -1}},
         r"task index -1 is out of range"),
    ],
)
def test_invalid_tf_config(monkeypatch, config, message):
    value = config if isinstance(config, str) else json.dumps(config)
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match=r"^Invalid TF_CONFIG: " + message) as info:
        distribute.get_strategy("multi_worker")
    # The message shows what was received.
    assert "Received: TF_CONFIG=" in str(info.value)
    # The same checks apply to an explicit description.
    with pytest.raises(ValueError, match=r"^Invalid TF_CONFIG: " + message):
        distribute.read_tf_config(value)


def test_read_valid_tf_config(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}})
    )
    config = distribute.read_tf_config()
    assert config["task_type"] == "worker" and config["task_id"] == 1
    assert config["num_workers"] == 2 and not config["is_chief"]
    assert config["cluster"] == CLUSTER and config["rpc_layer"] == "grpc"


def test_chief_rules():
    with_chief = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    assert distribute.is_chief_task("chief", 0, with_chief)
    assert not distribute.is_chief_task("worker", 0, with_chief)
    assert distribute.is_chief_task("worker", 0, CLUSTER)
    assert not distribute.is_chief_task("worker", 1, CLUSTER)
    assert distribute.is_chief_task(None, None, None)
    assert distribute.read_tf_config(
        {"cluster": with_chief, "task": {"type": "worker", "index": 0}}
    )["num_workers"] == 3


# ----------------------------------------------------------------------
# Global batch size


class _TwoReplicas:
    """Stands in for a two-replica strategy (the real one runs in
    mirrored_script.py, which needs logical devices set up front)."""

    num_replicas_in_sync = 2


def test_global_batch_not_divisible_by_replicas():
    with pytest.raises(
        ValueError,
        match=r"Received an invalid value for argument `global_batch_size`, expected "
        r"a multiple of the number of replicas in sync \(2 under _TwoReplicas\), so "
        r"that every replica gets the same batch\. Received: global_batch_size=7",
    ):
        distribute.check_global_batch_size(7, _TwoReplicas())
    assert distribute.check_global_batch_size(8, _TwoReplicas()) == 4
    with pytest.raises(ValueError, match=r"argument `global_batch_size`, expected a positive integer"):
        distribute.check_global_batch_size(0)


def test_global_batch_size_of():
    data = tf.data.Dataset.from_tensor_slices((np.zeros((10, 2)), np.zeros(10)))
    assert distribute.global_batch_size_of(data.batch(4, drop_remainder=True)) == 4
    with pytest.raises(ValueError, match=r"static batch dimension \(use `dataset.batch"):
        distribute.global_batch_size_of(data.batch(4))


def test_distribute_global_batches_on_one_device():
    data = tf.data.Dataset.range(12).batch(4, drop_remainder=True)
    batches = distribute.distribute_global_batches(distribute.get_strategy("default"), data)
    assert [b.numpy().tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    pairs = tf.data.Dataset.from_tensor_slices(({"a": np.arange(4)}, np.arange(4))).batch(
        2, drop_remainder=True
    )
    x, y = next(iter(distribute.distribute_global_batches(tf.distribute.get_strategy(), pairs)))
    assert x["a"].numpy().tolist() == [0, 1] and y.numpy().tolist() == [0, 1]


# ----------------------------------------------------------------------
# Logical devices


def test_configure_logical_devices_after_initialisation():
    current = len(tf.config.list_logical_devices("CPU"))  # initialises TF
    assert len(distribute.configure_logical_devices(current)) == current
    with pytest.raises(
        RuntimeError,
        match=rf"configure_logical_devices\({current + 1}\) must run before TensorFlow "
        rf"initialises its devices .* already runs {current} logical CPU device",
    ):
        distribute.configure_logical_devices(current + 1)


def test_configure_logical_devices_arguments():
    with pytest.raises(ValueError, match=r"argument `num_devices`, expected a positive integer"):
        distribute.configure_logical_devices(0)
    with pytest.raises(ValueError, match=r"argument `device_type`, expected one of"):
        distribute.configure_logical_devices(2, device_type="TPU")
    with pytest.raises(ValueError, match=r"argument `memory_limit`, expected None for CPU"):
        distribute.configure_logical_devices(2, memory_limit=1024)
    with pytest.raises(ValueError, match=r"argument `memory_limit`, expected a positive float"):
        distribute.configure_logical_devices(2, device_type="GPU")
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ValueError, match=r"No physical GPU found"):
            distribute.configure_logical_devices(2, device_type="GPU", memory_limit=1024)


# ----------------------------------------------------------------------
# Chief-only writing


class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class _WorkerStrategy:
    """A non-chief task's view (the real cluster runs in test_multi_worker)."""

    cluster_resolver = _Resolver("worker", 1, CLUSTER)


def test_chief_write_dir(tmp_path):
    target = tmp_path / "out"
    with distribute.chief_write_dir(str(target)) as path:
        assert path == str(target)
        (target / "kept.txt").write_text("chief")
    assert (target / "kept.txt").exists()
    assert not distribute.is_chief(_WorkerStrategy())
    with pytest.raises(RuntimeError, match="boom"):
        with distribute.chief_write_dir(str(tmp_path / "other"), _WorkerStrategy()) as path:
            temporary = path
            assert os.path.isdir(path) and path != str(tmp_path / "other")
            open(os.path.join(path, "dropped.txt"), "w").close()
            raise RuntimeError("boom")
    assert not os.path.exists(temporary)  # deleted even on error
    assert not (tmp_path / "other").exists()


# ----------------------------------------------------------------------
# build_and_compile


def test_build_and_compile_rebuilds_objects_in_scope():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    schedule = ka.training.TransformerSchedule(16, warmup_steps=10)
    optimizer = keras.optimizers.Adam(schedule, beta_2=0.98)  # made outside the scope
    metric = ka.training.MaskedAccuracy(pad_id=0)
    model = distribute.build_and_compile(
        strategy,
        lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)]),
        {
            "optimizer": optimizer,
            "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "metrics": [metric],
        },
    )
    assert model.optimizer is not optimizer
    learning_rate = model.optimizer.get_config()["learning_rate"]
    assert learning_rate["class_name"] == "TransformerSchedule"
    assert learning_rate["config"] == schedule.get_config()
    np.testing.assert_allclose(float(model.optimizer.learning_rate), float(schedule(0)))
    assert model.optimizer.beta_2 == 0.98
    # Variables are mirrored by the strategy.
    assert isinstance(model.trainable_variables[0].value, tf.distribute.DistributedValues)
    history = model.fit(np.ones((4, 3)), np.array([1, 2, 3, 1]), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1
    assert "masked_accuracy" in history.history


def test_build_and_compile_bad_arguments():
    strategy = distribute.get_strategy("default")
    with pytest.raises(ValueError, match=r"argument `build_fn`, expected a callable"):
        distribute.build_and_compile(strategy, "model", None)
    with pytest.raises(ValueError, match=r"build_fn\(\) returned int"):
        distribute.build_and_compile(strategy, lambda: 3, None)
    with pytest.raises(ValueError, match=r"argument `compile_kwargs`, expected a dict"):
        distribute.build_and_compile(strategy, lambda: keras.Sequential(), ["adam"])


@pytest.mark.parametrize("name", ["default", "mirrored", "tpu", "auto"])
def test_check_fit_strategy_accepts_what_fit_runs_under(name, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.check_fit_strategy(name) == name


def test_check_fit_strategy_refuses_multi_worker(monkeypatch):
    message = (r"Received strategy '{}': Keras fit does not run under "
               r"MultiWorkerMirroredStrategy \(tensorflow#72388\); train on "
               r"several hosts with keras_attention.distribute.DistributedTrainer")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=message.format("multi_worker")):
        distribute.check_fit_strategy("multi_worker")
    # "auto" with a cluster in TF_CONFIG resolves to multi-worker.
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, '
                       '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(ValueError, match=message.format("auto")):
        distribute.check_fit_strategy("auto")
    with pytest.raises(ValueError, match="argument `name`, expected one of"):
        distribute.check_fit_strategy("gpus")


def test_mirrored_over_one_device_name():
    # A string used to be split into its characters ("/", "c", ...).
    strategy = distribute.get_strategy("mirrored", devices="/cpu:0")
    assert strategy.num_replicas_in_sync == 1
    assert strategy.extended.worker_devices[0].endswith("CPU:0")
