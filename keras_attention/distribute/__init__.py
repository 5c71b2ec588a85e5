"""tf.distribute helpers and the multi-worker training path."""

from keras_attention.distribute.building import build_and_compile
from keras_attention.distribute.checkpointing import chief_write_dir
from keras_attention.distribute.datasets import distribute_global_batches
from keras_attention.distribute.datasets import global_batch_size_of
from keras_attention.distribute.strategies import STRATEGY_NAMES
from keras_attention.distribute.strategies import check_fit_strategy
from keras_attention.distribute.strategies import check_global_batch_size
from keras_attention.distribute.strategies import configure_logical_devices
from keras_attention.distribute.strategies import get_strategy
from keras_attention.distribute.strategies import is_chief
from keras_attention.distribute.tf_config import is_chief_task
from keras_attention.distribute.tf_config import read_tf_config
from keras_attention.distribute.trainer import DistributedTrainer
from keras_attention.distribute.trainer import loss_sum_and_weight

__all__ = [
    "DistributedTrainer",
    "STRATEGY_NAMES",
    "build_and_compile",
    "check_fit_strategy",
    "check_global_batch_size",
    "chief_write_dir",
    "configure_logical_devices",
    "distribute_global_batches",
    "get_strategy",
    "global_batch_size_of",
    "is_chief",
    "is_chief_task",
    "loss_sum_and_weight",
    "read_tf_config",
]
