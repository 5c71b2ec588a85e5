"""Two workers on localhost train the translator with DistributedTrainer.

Two processes with TF_CONFIG (ports picked free, 127.0.0.1 only) run
`MultiWorkerMirroredStrategy` and, at the same time, one process trains
with the default strategy on one device; all start from the same weights
and see the same global batches of 8 (4 per worker). Tolerance: every
step's global loss matches the single process to 1e-5 relative (observed:
about 1e-7), and the final weights and logits to 1e-4 absolute (Adam, 12
steps; observed: under 1e-5), except the key-projection biases, see
below; the two workers' weights are identical. Only the chief keeps checkpoints,
the `.keras` file and the SavedModel; the other worker's saves go to
temporary directories that are gone afterwards.

Wall time (the issue asks for under 3 minutes), measured once on the 2-core
CPU machine shared with other jobs (load average about 11):
`python -m pytest -q -p no:cacheprovider tests/distribute/test_multi_worker.py
-k trajectory --durations=5` took 108.6 s (2:03 with interpreter start), of
which 105.6 s is the `runs` fixture: the two workers and the single-process
reference, 2 epochs x 6 steps each. No timing assertion: shared machines
make wall times noise.
"""

import importlib.util
import json
import pathlib
import time

import keras
import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


subprocesses = _load("subprocesses")
train_script = _load("train_script")

EPOCHS, STEPS = 2, 6


def make_initial_weights(path):
    keras.utils.set_random_seed(0)
    model = train_script.build_translator()
    model.compile(**train_script.compile_kwargs())
    model.save_weights(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    init = root / "init.weights.h5"
    make_initial_weights(init)
    cluster, single = root / "cluster", root / "single"
    worker_tmp = root / "worker_tmp"
    for d in (cluster, single, worker_tmp):
        d.mkdir()
    common = ["--init", init, "--epochs", EPOCHS, "--steps", STEPS, "--save-every", 4]
    ports = subprocesses.free_ports(2)
    began = time.monotonic()
    with subprocesses.Processes(root / "logs") as procs:
        for index in range(2):
            env = subprocesses.python_env(
                TF_CONFIG=subprocesses.tf_config(ports, index),
                TMPDIR=worker_tmp if index else root,
            )
            procs.start(f"worker{index}", "train_script.py",
                        ["--out", cluster, "--strategy", "multi_worker", *common], env)
        procs.start("single", "train_script.py", ["--out", single, *common],
                    subprocesses.python_env())
        procs.wait(["worker0", "worker1", "single"], timeout=300)
    print(f"two workers + single process: {time.monotonic() - began:.0f}s")
    return {"cluster": cluster, "single": single, "worker_tmp": worker_tmp, "init": init}


def _losses(path):
    return [(r["global_step"], r["loss"]) for r in subprocesses.read_jsonl(path)]


def test_loss_trajectory_matches_single_process(runs):
    single = _losses(runs["single"] / "steps_single.jsonl")
    assert [s for s, _ in single] == list(range(1, EPOCHS * STEPS + 1))
    for task in ("chief", "worker1"):
        cluster = _losses(runs["cluster"] / f"steps_{task}.jsonl")
        assert [s for s, _ in cluster] == [s for s, _ in single]
        np.testing.assert_allclose(
            [l for _, l in cluster], [l for _, l in single], rtol=1e-5
        )
    # Training happened: the trajectory is not flat.
    losses = [l for _, l in single]
    assert max(losses) - min(losses) > 0.1


def test_final_model_matches_and_workers_agree(runs):
    with np.load(runs["cluster"] / "final_chief.npz") as chief, \
            np.load(runs["cluster"] / "final_worker1.npz") as worker, \
            np.load(runs["single"] / "final_single.npz") as single:
        assert sorted(chief.files) == sorted(single.files) == sorted(worker.files)
        key_biases = [k for k in chief.files if k.endswith("key:bias")]
        assert len(key_biases) == 3  # encoder self, decoder self and cross
        for key in chief.files:
            np.testing.assert_array_equal(chief[key], worker[key])
            if key not in key_biases:
                np.testing.assert_allclose(chief[key], single[key], atol=1e-4, rtol=0)
        # Softmax ignores the key-projection bias (it adds q.b to every
        # score of a row), so its gradient is zero up to rounding, and Adam
        # (update ~ lr * g / |g|) turns that rounding noise into updates
        # that differ between runs; they stay small and change nothing.
        for key in key_biases:
            assert np.abs(chief[key]).max() < 0.05 and np.abs(single[key]).max() < 0.05
        np.testing.assert_allclose(chief["logits"], single["logits"], atol=1e-4, rtol=0)


def test_only_the_chief_writes(runs):
    cluster = runs["cluster"]
    checkpoints = sorted(p.name for p in (cluster / "checkpoints").glob("ckpt-*.index"))
    # Saved at global steps 4, 6 (epoch end), 8, 12 (epoch end); 3 kept.
    assert checkpoints == ["ckpt-12.index", "ckpt-6.index", "ckpt-8.index"]
    assert (cluster / "model.keras").is_file()
    assert (cluster / "export" / "1" / "saved_model.pb").is_file()
    assert list((cluster / "export").iterdir()) == [cluster / "export" / "1"]
    chief_writes = json.loads((cluster / "writes_chief.json").read_text())
    worker_writes = json.loads((cluster / "writes_worker1.json").read_text())
    # The chief wrote the .keras file and the export in place (its
    # checkpoints go through its CheckpointManager, in place too).
    assert [pathlib.Path(w["path"]) for w in chief_writes] == [cluster, cluster / "export"]
    assert all(w["exists_after"] for w in chief_writes)
    # The worker took part in every save (checkpoints, model, export) ...
    assert len(worker_writes) == 4 + 2
    for write in worker_writes:
        path = pathlib.Path(write["path"])
        # ... always into its own temporary directory, deleted at once.
        assert path.parent == runs["worker_tmp"], path
        assert not write["exists_after"] and not path.exists()
    assert list(runs["worker_tmp"].iterdir()) == []


def test_both_workers_started_from_scratch(runs):
    for task in ("chief", "worker1"):
        (start,) = subprocesses.read_jsonl(runs["cluster"] / f"start_{task}.jsonl")
        assert start["restored"] is None and start["iterations"] == 0



@pytest.mark.slow
def test_cluster_killed_mid_epoch_resumes_from_chief_checkpoint(runs, tmp_path):
    """A worker dies mid-epoch; the job is restarted and resumes.

    When one worker is killed (SIGKILL) the other blocks in its next
    collective, so the whole job is restarted (what a cluster manager
    does), on new ports. Both workers restore the chief's last checkpoint
    (every 2 steps), continue the epoch and end with the weights of the
    uninterrupted two-worker run of `runs` (same initial weights and data).
    """
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    common = ["--init", runs["init"], "--epochs", EPOCHS, "--steps", STEPS,
              "--save-every", 2, "--out", cluster, "--strategy", "multi_worker"]
    steps_file = cluster / "steps_chief.jsonl"
    with subprocesses.Processes(tmp_path / "logs") as procs:
        ports = subprocesses.free_ports(2)
        for index in range(2):
            env = subprocesses.python_env(TF_CONFIG=subprocesses.tf_config(ports, index))
            procs.start(f"first{index}", "train_script.py",
                        [*common, "--step-delay", 0.5], env)
        procs.wait_until(
            lambda: any(r["global_step"] >= 3 for r in subprocesses.read_jsonl(steps_file)),
            timeout=300, watch=["first0", "first1"],
        )
        procs.sigkill("first1")
        procs.sigkill("first0")
        killed = subprocesses.read_jsonl(steps_file)
        assert killed[-1]["global_step"] < STEPS  # killed during the first epoch
        ports = subprocesses.free_ports(2)
        for index in range(2):
            env = subprocesses.python_env(TF_CONFIG=subprocesses.tf_config(ports, index))
            procs.start(f"second{index}", "train_script.py", common, env)
        procs.wait(["second0", "second1"], timeout=300)
    starts = {task: subprocesses.read_jsonl(cluster / f"start_{task}.jsonl")
              for task in ("chief", "worker1")}
    for task, (first, second) in starts.items():
        assert first["restored"] is None
        assert second["restored"] is not None and second["epoch"] == 0
        assert 2 <= second["iterations"] == second["step_in_epoch"] <= killed[-1]["global_step"]
    assert starts["chief"][1]["iterations"] == starts["worker1"][1]["iterations"]
    resumed_from = starts["chief"][1]["iterations"]
    after = subprocesses.read_jsonl(steps_file)[len(killed):]
    assert [r["global_step"] for r in after] == list(range(resumed_from + 1, EPOCHS * STEPS + 1))
    with np.load(cluster / "final_chief.npz") as got, \
            np.load(runs["cluster"] / "final_chief.npz") as want:
        for key in want.files:
            np.testing.assert_allclose(got[key], want[key], atol=1e-6, rtol=0)
