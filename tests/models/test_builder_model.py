import json

import keras
import pytest
from keras.src.backend.common import global_state

import keras_attention as ka
from keras_attention.models import BuilderModel

SMALL = dict(vocabulary_size=11, sequence_length=6, num_layers=1, hidden_dim=8,
             num_heads=2, intermediate_dim=8)


def test_config_is_the_builder_and_its_arguments():
    model = ka.models.causal_lm(**SMALL, name="tiny")
    config = model.get_config()
    assert config["builder"] == "causal_lm"
    assert config["name"] == "tiny"
    assert {k: config["arguments"][k] for k in SMALL} == SMALL
    rebuilt = BuilderModel.from_config(json.loads(json.dumps(config)))
    assert rebuilt.name == "tiny" and rebuilt.count_params() == model.count_params()
    # `arguments` is a copy: editing it does not change the model.
    model.arguments["hidden_dim"] = 99
    assert model.get_config()["arguments"]["hidden_dim"] == 8


def test_unknown_builder_raises():
    with pytest.raises(ValueError, match="argument `builder`, expected one of"):
        BuilderModel("not_a_builder", {})


def test_count_parameters_allocates_nothing_and_leaves_no_deferred_variables():
    before = list(global_state.get_global_attribute("uninitialized_variables") or [])
    count = ka.models.count_parameters(ka.models.causal_lm, **SMALL)
    after = list(global_state.get_global_attribute("uninitialized_variables") or [])
    assert count == ka.models.causal_lm(**SMALL).count_params()
    assert len(after) == len(before)
    # A later symbolic call (which exits a stateless scope) still works.
    keras.ops.add(keras.KerasTensor((2,)), 1.0)
