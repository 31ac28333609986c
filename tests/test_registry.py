"""The one registry of cell names (jaxrnn.cells.registry): what each name builds, the errors,
user registration, and that configs, experiments and wrappers read names through it."""

import jax
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn.cells import registry

# name -> the factory call it must equal
EXPECTED = {
    "simple_rnn": lambda H: jr.simple_rnn(H),
    "simple_rnn_relu": lambda H: jr.simple_rnn(H, nonlinearity="relu"),
    "lstm": lambda H: jr.lstm(H),
    "lstm_peephole": lambda H: jr.lstm(H, peephole=True),
    "lstm_coupled": lambda H: jr.lstm(H, coupled=True),
    "lstm_layer_norm": lambda H: jr.lstm(H, layer_norm=True),
    "gru": lambda H: jr.gru(H),
    "gru_cho": lambda H: jr.gru(H, reset_after=False),
    "mgu": lambda H: jr.mgu(H),
    "min_gru": lambda H: jr.min_gru(H),
    "min_lstm": lambda H: jr.min_lstm(H),
}


def test_every_name_is_tested():
    assert set(registry.names()) == set(EXPECTED) | {"conv_lstm"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_name_builds_the_factorys_cell(name):
    """Same name, options and numbers as the factory call (one step from the same params)."""
    got, want = registry.make(name, 6), EXPECTED[name](6)
    assert (got.name, got.options) == (want.name, want.options)
    params = want.init(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(jax.random.PRNGKey(1), (3,))
    a = got.output(got.step(params, got.initial_carry(params), x))
    b = want.output(want.step(params, want.initial_carry(params), x))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_options_pass_through_and_conv_lstm():
    c = registry.make("lstm_peephole", 4, forget_bias=0.5, proj_size=2)
    assert c.options["peephole"] and c.options["forget_bias"] == 0.5 and c.output_size == 2
    conv = registry.make("conv_lstm", 3, kernel_size=5, spatial_dims=1)
    assert conv.options["kernel_size"] == (5,) and conv.options["spatial_dims"] == 1


@pytest.mark.parametrize("call,pattern", [
    (lambda: registry.make("lstmm", 4), r"unknown cell 'lstmm' \(did you mean 'lstm'\?\)"),
    (lambda: registry.make("lstm", 4, peepole=True), r"unknown option 'peepole'.*'peephole'"),
    (lambda: registry.make("lstm_peephole", 4, peephole=False),
     r"'lstm_peephole' sets peephole=True; got peephole=False"),
    (lambda: registry.make(3, 4), r"cell name must be a string"),
])
def test_errors_name_the_problem(call, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        call()


def test_register_a_users_cell_and_refuse_a_second_definition():
    name = "test_registry_tanh_rnn"
    registry.register(name, jr.simple_rnn, "a user's alias", nonlinearity="tanh")
    try:
        assert name in registry.names()
        assert registry.make(name, 3).options == jr.simple_rnn(3).options
        with pytest.raises(ValueError, match="already registered"):
            registry.register(name, jr.lstm)
        with pytest.raises(ValueError, match="unknown option 'bogus'"):
            registry.register("test_registry_bad", jr.lstm, bogus=1)
    finally:
        registry._ENTRIES.pop(name, None)


def test_configs_and_experiments_use_the_registry():
    """A registry alias is accepted by every layer that reads cell names: the config schema
    (checked when the config is read), the experiments' models and the Flax wrappers."""
    from jaxrnn.train import ConfigError, load_config
    from experiments import adding, charlm

    cfg = load_config("configs/charlm_tiny.yaml", ["model.cell=gru_cho"])
    model = charlm.Model(cfg.model, 5)
    assert model.cells[0].name == "gru" and model.cells[0].options["reset_after"] is False
    with pytest.raises(ConfigError, match=r"model\.cell: unknown cell"):
        load_config("configs/charlm_tiny.yaml", ["model.cell=nosuch"])
    with pytest.raises(ConfigError, match=r"model\.cell_options: .*unknown option"):
        charlm.Model(load_config("configs/charlm_tiny.yaml",
                                 ["model.cell_options={nosuch: 1}"]).model, 5)
    acfg = load_config("configs/adding_tiny.yaml", ["model.cell=lstm_coupled"])
    assert adding.Model(acfg.model, 2, 1).cells[0].options["coupled"] is True
