"""SavedModel export in the TF Serving layout, written atomically.

TF Serving watches a model root such as `saved_models/translator/` and serves
the highest numeric sub-directory, each a SavedModel:

```
saved_models/translator/
  1/saved_model.pb  variables/  assets/  assets.extra/model.keras
```

`export_for_serving` writes the new version into a hidden temporary
directory next to it and renames it into place only once everything is on
disk, so a crash or an interrupt never leaves a half-written version that a
model server would try to load.

The staging directory is named `.tmp-<version>-<host>-<pid>-<random>`. A
process killed mid-export (SIGKILL, power loss) cannot remove it, so the
next export to the same model root removes the staging directories of
processes of this host that no longer run (and those of the older
`.tmp-<version>-<random>` naming, which record no owner). Only `.tmp-*`
directories are touched, never a numeric version; staging directories of a
running export, or of another host sharing the directory, are left alone.
"""

import os
import re
import shutil
import socket
import tempfile

import keras
import tensorflow as tf

from keras_attention.utils.validation import check_positive_int

KERAS_FILE = os.path.join("assets.extra", "model.keras")


def _keras_model_endpoint(model):
    """(fn, input_signature) serving a functional `keras.Model`."""
    specs = {}
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        specs[name] = tf.TensorSpec(tensor.shape, tensor.dtype, name=name)
    output_names = list(model.output_names)

    def serve(inputs):
        outputs = model(inputs, training=False)
        if isinstance(outputs, dict):
            return dict(outputs)
        outputs = keras.tree.flatten(outputs)
        return dict(zip(output_names, outputs))

    if len(specs) == 1:
        return serve, list(specs.values())  # one tensor argument
    return serve, [specs]  # one dict argument


def export_for_serving(model_or_pipeline, export_dir, version=1, overwrite=False):
    """Export a Keras model or a serving pipeline for TF Serving.

    Writes `export_dir/<version>/` (a SavedModel with a `serving_default`
    signature, plus the `.keras` file under `assets.extra/` when there is a
    Keras model) through a temporary directory and an atomic rename.

    A *serving pipeline* is any object with:

    - `serving_fn(*inputs) -> dict of tensors`, a function of TensorFlow
      tensors (e.g. raw strings in, translated strings out);
    - `serving_signature() -> list` of `tf.TensorSpec` for its inputs;
    - `trackables() -> list` of the Keras layers/models and TensorFlow
      resources it uses (their variables and lookup tables are saved);
    - optionally `keras_model`, the model saved as the `.keras` file.

    Args:
        model_or_pipeline: a `keras.Model` (served on its own inputs) or a
            serving pipeline as above.
        export_dir: the model root, e.g. `"saved_models/translator"`.
        version: positive integer version directory.
        overwrite: whether to replace an existing version.

    Returns:
        The path of the written version directory.

    Raises:
        ValueError: if `version` is not a positive integer, the version exists
            and `overwrite` is False, or the object is neither a Keras model
            nor a serving pipeline.

    Example:

    ```python
    import tempfile
    import keras
    from keras_attention.export import export_for_serving
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="scores")(inputs))
    path = export_for_serving(model, tempfile.mkdtemp() + "/demo", version=3)
    path.endswith("3")  # True
    ```

    References:
        TensorFlow Serving, "Serving a TensorFlow Model" (model base path
        with numeric version sub-directories).
    """
    version = check_positive_int(version, "version")
    if isinstance(model_or_pipeline, keras.Model):
        fn, signature = _keras_model_endpoint(model_or_pipeline)
        trackables = [model_or_pipeline]
        keras_model = model_or_pipeline
    elif all(
        hasattr(model_or_pipeline, attr)
        for attr in ("serving_fn", "serving_signature", "trackables")
    ):
        fn = model_or_pipeline.serving_fn
        signature = list(model_or_pipeline.serving_signature())
        trackables = list(model_or_pipeline.trackables())
        keras_model = getattr(model_or_pipeline, "keras_model", None)
    else:
        raise ValueError(
            "Received an invalid value for argument `model_or_pipeline`, "
            "expected a keras.Model or an object with `serving_fn`, "
            "`serving_signature` and `trackables`. Received: "
            f"{type(model_or_pipeline).__name__}"
        )

    export_dir = os.fspath(export_dir)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final) and not overwrite:
        raise ValueError(
            "Received an invalid value for argument `version`, expected a "
            f"version that does not exist yet under {export_dir!r} (or "
            f"overwrite=True). Received: version={version}"
        )
    os.makedirs(export_dir, exist_ok=True)
    remove_stale_staging(export_dir)
    staging = tempfile.mkdtemp(
        prefix=f".tmp-{version}-{_host()}-{os.getpid()}-", dir=export_dir
    )
    try:
        archive = keras.export.ExportArchive()
        for item in trackables:
            archive.track(item)
        archive.add_endpoint("serving_default", fn, input_signature=signature)
        archive.write_out(staging, verbose=False)
        if keras_model is not None:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            keras_model.save(os.path.join(staging, KERAS_FILE))
        _move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


# `.tmp-<version>-<host>-<pid>-<random>` (mkdtemp's random part has no "-").
_STAGING = re.compile(r"\.tmp-\d+-(?P<host>.+)-(?P<pid>\d+)-[^-]+")
_LEGACY_STAGING = re.compile(r"\.tmp-\d+-[^-]+")


def _host():
    """This host's name, as used in staging names (no path separators)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _process_runs(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _is_stale(name):
    match = _STAGING.fullmatch(name)
    if match:
        return match["host"] == _host() and not _process_runs(int(match["pid"]))
    return _LEGACY_STAGING.fullmatch(name) is not None


def remove_stale_staging(export_dir):
    """Remove staging directories that killed exports left in `export_dir`.

    A staging directory is stale when the process that made it (on this
    host) no longer runs, or when its name records no owner (the older
    `.tmp-<version>-<random>` naming). Numeric versions and every other
    entry are left alone.

    Args:
        export_dir: the model root.

    Returns:
        The sorted names of the directories removed.

    Example:

    ```python
    import os, tempfile
    from keras_attention.export.serving import remove_stale_staging
    root = tempfile.mkdtemp()
    os.makedirs(os.path.join(root, ".tmp-2-abc123"))  # left by a killed export
    os.makedirs(os.path.join(root, "1"))
    remove_stale_staging(root)  # ['.tmp-2-abc123']
    ```
    """
    export_dir = os.fspath(export_dir)
    removed = []
    for name in sorted(os.listdir(export_dir)):
        path = os.path.join(export_dir, name)
        if name.startswith(".tmp-") and os.path.isdir(path) and _is_stale(name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def _move_into_place(staging, final):
    """Rename `staging` to `final`, replacing an existing version safely."""
    if not os.path.exists(final):
        os.rename(staging, final)
        return
    retired = final + ".old"
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(final, retired)
    os.rename(staging, final)
    shutil.rmtree(retired, ignore_errors=True)
