"""Chief-only writing: where each worker of a cluster saves its files."""

import contextlib
import shutil
import tempfile

import tensorflow as tf

from keras_attention.distribute.strategies import is_chief


@contextlib.contextmanager
def chief_write_dir(directory, strategy=None):
    """Yield the directory this process should write `directory`'s files to.

    In a multi-worker job every worker must take part in saving (a save can
    read variables that need the other workers), but only the chief's files
    are kept. The chief gets `directory` itself; every other worker gets a
    fresh temporary directory, deleted with everything in it when the
    `with` block ends, even on error. Single-process strategies always get
    `directory`.

    Args:
        directory: the directory the chief writes to (created if missing;
            any path `tf.io.gfile` takes, e.g. on GCS).
        strategy: a `tf.distribute.Strategy`; `None` for the current one.

    Yields:
        The directory path to write to.

    Example:

    ```python
    import os, tempfile
    from keras_attention.distribute import chief_write_dir
    root = tempfile.mkdtemp()
    with chief_write_dir(os.path.join(root, "export")) as path:
        open(os.path.join(path, "notes.txt"), "w").close()
    os.listdir(os.path.join(root, "export"))  # ['notes.txt']
    ```
    """
    if is_chief(strategy):
        tf.io.gfile.makedirs(directory)  # local paths or e.g. gs://
        yield directory
        return
    temporary = tempfile.mkdtemp(prefix="keras_attention_worker_")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
