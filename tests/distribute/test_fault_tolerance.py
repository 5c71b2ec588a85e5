"""A training process killed with SIGKILL mid-epoch resumes and finishes.

Each case runs `train_script.py` three times from the same initial weights:
once uninterrupted; once slowed down and killed with SIGKILL in the middle
of an epoch; then restarted with the same arguments. The restart must
resume from the last checkpoint (not from scratch) and end with exactly
the uninterrupted run's weights and logits: ops are deterministic
(`tf.config.experimental.enable_op_determinism`, seeds), so the tolerance
is zero.

- `DistributedTrainer` checkpoints every 2 steps and resumes at the
  checkpoint's epoch and step (optimizer state kept). With dropout 0.1:
  its checkpoint holds the dropout layers' random state too.
- Keras `fit` with `keras.callbacks.BackupAndRestore(save_freq="epoch")`
  resumes at the start of the epoch that was interrupted, from the weights
  and optimizer state saved at the end of the previous one. Without
  dropout: Keras weight files do not hold the seed generators' state, so a
  resumed `fit` draws other dropout masks than an uninterrupted one (its
  weights then differ by that noise; observed: up to 0.1).
"""

import importlib.util
import pathlib

import keras
import numpy as np

HERE = pathlib.Path(__file__).parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


subprocesses = _load("subprocesses")
train_script = _load("train_script")

EPOCHS, STEPS = 2, 6
TIMEOUT = 300


def _run_killed_and_resumed(root, loop, kill_when, dropout):
    init = root / "init.weights.h5"
    keras.utils.set_random_seed(0)
    model = train_script.build_translator(dropout=dropout)
    model.compile(**train_script.compile_kwargs())
    model.save_weights(init)
    reference, interrupted = root / "reference", root / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    common = ["--init", init, "--loop", loop, "--epochs", EPOCHS, "--steps", STEPS,
              "--save-every", 2, "--dropout", dropout]
    steps_file = interrupted / "steps_single.jsonl"
    with subprocesses.Processes(root / "logs") as procs:
        env = subprocesses.python_env()
        procs.start("reference", "train_script.py", ["--out", reference, *common], env)
        procs.start("killed", "train_script.py",
                    ["--out", interrupted, "--step-delay", 0.5, *common], env)
        procs.wait_until(
            lambda: any(kill_when(r) for r in subprocesses.read_jsonl(steps_file)),
            timeout=TIMEOUT, watch=["killed"],
        )
        assert procs.sigkill("killed") == -9
        killed_steps = subprocesses.read_jsonl(steps_file)
        procs.start("resumed", "train_script.py", ["--out", interrupted, *common], env)
        procs.wait(["reference", "resumed"], timeout=TIMEOUT)
    return reference, interrupted, killed_steps


def _assert_same_weights(reference, interrupted):
    with np.load(reference / "final_single.npz") as want, \
            np.load(interrupted / "final_single.npz") as got:
        assert len(want.files) == len(got.files) > 0
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key])


def test_trainer_resumes_from_step_checkpoint(tmp_path):
    reference, interrupted, killed_steps = _run_killed_and_resumed(
        tmp_path, "trainer", lambda r: r["epoch"] == 0 and r["step"] >= 2, dropout=0.1
    )
    last_killed = killed_steps[-1]
    assert last_killed["epoch"] == 0 and last_killed["step"] < STEPS - 1  # mid-epoch
    first, second = subprocesses.read_jsonl(interrupted / "start_single.jsonl")
    assert first["restored"] is None and first["iterations"] == 0
    # Resumed from the last checkpoint (every 2 steps), not from scratch,
    # and not beyond what the killed run had finished.
    assert second["restored"] is not None
    assert second["epoch"] == 0
    assert 2 <= second["step_in_epoch"] <= last_killed["step"] + 1
    assert second["step_in_epoch"] % 2 == 0
    assert second["iterations"] == second["step_in_epoch"]  # optimizer state kept
    # The restarted run did only the remaining steps, continuing the epoch.
    records = subprocesses.read_jsonl(interrupted / "steps_single.jsonl")
    after_restart = records[len(killed_steps):]
    assert [r["global_step"] for r in after_restart] == list(
        range(second["iterations"] + 1, EPOCHS * STEPS + 1)
    )
    assert (after_restart[0]["epoch"], after_restart[0]["step"]) == (0, second["step_in_epoch"])
    _assert_same_weights(reference, interrupted)


def test_fit_with_backup_and_restore_resumes_from_epoch_backup(tmp_path):
    reference, interrupted, killed_steps = _run_killed_and_resumed(
        tmp_path, "fit", lambda r: r["epoch"] == 1 and r["step"] >= 1, dropout=0.0
    )
    last_killed = killed_steps[-1]
    assert last_killed["epoch"] == 1 and last_killed["step"] < STEPS - 1  # mid-epoch
    first, second = subprocesses.read_jsonl(interrupted / "start_single.jsonl")
    assert first["iterations"] == 0
    # Restored the end-of-epoch-0 backup: weights and optimizer state.
    assert second["iterations"] == STEPS
    records = subprocesses.read_jsonl(interrupted / "steps_single.jsonl")
    after_restart = records[len(killed_steps):]
    assert [(r["epoch"], r["step"]) for r in after_restart] == [(1, s) for s in range(STEPS)]
    _assert_same_weights(reference, interrupted)
    # BackupAndRestore deletes its backup after a completed fit.
    assert not (interrupted / "backup").exists()
