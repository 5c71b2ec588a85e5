"""Shared checks of the tuning tests: run a tiny search, reload the best model.

Not a test module (loaded by path from the test files of this folder).
"""

import keras
import keras_tuner
import numpy as np


def make_tuner(kind, hypermodel, objective, directory):
    """RandomSearch or Hyperband limited to two trials, in `directory`."""
    common = dict(objective=objective, directory=str(directory), project_name=kind,
                  seed=1, overwrite=True)
    if kind == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=2, **common)
    # max_epochs=2, factor=3: one bracket of two trials, two epochs each.
    return keras_tuner.Hyperband(hypermodel, max_epochs=2, factor=3, **common)


def search_and_reload(tuner, train, validation, tmp_path, **fit_kwargs):
    """Search, then reload the best model (from the tuner and from .keras).

    Returns:
        `(best_trial, evaluate logs of the reloaded best model)`.
    """
    tuner.search(train, validation_data=validation, verbose=0, **fit_kwargs)
    trials = tuner.oracle.get_best_trials(num_trials=10)
    assert len(tuner.oracle.trials) == 2 and len(trials) == 2
    assert all(t.status == "COMPLETED" for t in trials)
    best_trial = trials[0]
    best = tuner.get_best_models(num_models=1)[0]
    logs = best.evaluate(validation, verbose=0, return_dict=True)
    # The reloaded weights are the best trial's: same objective value.
    name = tuner.oracle.objective.name[len("val_"):]
    np.testing.assert_allclose(logs[name], best_trial.score, rtol=1e-4, atol=1e-6)
    # Saved as .keras and loaded again (safe mode, no custom objects).
    path = tmp_path / "best.keras"
    best.save(path)
    reloaded = keras.saving.load_model(path)
    again = reloaded.evaluate(validation, verbose=0, return_dict=True)
    np.testing.assert_allclose(again[name], logs[name], rtol=1e-5, atol=1e-6)
    # The best hyper-parameters rebuild the same architecture.
    rebuilt = tuner.hypermodel.build(tuner.get_best_hyperparameters(1)[0])
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in best.weights]
    return best_trial, logs
