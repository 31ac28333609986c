"""Config schema: unknown keys, wrong types and missing data files fail early, naming the key."""

from pathlib import Path

import optax
import pytest
import yaml

from jaxrnn.train import config as C
from jaxrnn.train import load_config
from jaxrnn.train.optim import make_optimizer, make_schedule

TINY = "charlm_tiny"


def _write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_tiny_config_loads_with_defaults_from_the_schema():
    cfg = load_config(TINY)
    assert cfg.experiment == "experiments.charlm"
    assert cfg.train.steps == 40 and cfg.model.hidden_size == 32
    assert cfg.optimizer.learning_rate == pytest.approx(3e-3)  # "3e-3" is a str to PyYAML
    assert cfg.optimizer.b2 == 0.999  # not in the file: the schema's default
    assert Path(cfg.data.path).is_absolute() and Path(cfg.data.path).is_file()


def test_unknown_key_in_file_is_named_with_a_suggestion(tmp_path):
    path = _write(tmp_path, {"experiment": "experiments.charlm", "train": {"stpes": 3}})
    with pytest.raises(C.ConfigError, match=r"unknown config key 'train\.stpes'.*train\.steps"):
        load_config(path)


def test_unknown_key_from_set():
    with pytest.raises(C.ConfigError, match=r"'model\.hiden_size'"):
        load_config(TINY, ["model.hiden_size=3"])
    with pytest.raises(C.ConfigError, match=r"unknown config key 'nosuch'"):
        load_config(TINY, ["nosuch.x=1"])


@pytest.mark.parametrize("item,pattern", [
    ("train.steps=abc", r"train\.steps: expected int, got str 'abc'"),
    ("train.steps=1.5", r"train\.steps: expected int, got float"),
    ("model.cell=transformer", r"model\.cell: unknown cell 'transformer'.*lstm_peephole"),
    ("model.cell=3", r"model\.cell: expected a cell name, got int"),
    ("optimizer.clip_norm=[1]", r"optimizer\.clip_norm: expected float, got list \[1\] \(or null\)"),
    ("train.progress=maybe", r"train\.progress: expected bool, got str 'maybe' \(or null\)"),
    ("model=3", r"model: expected a mapping"),
])
def test_wrong_type_names_the_key(item, pattern):
    with pytest.raises(C.ConfigError, match=pattern):
        load_config(TINY, [item])


def test_overrides_are_typed():
    cfg = load_config(TINY, ["train.steps=60", "optimizer.clip_norm=null",
                             "optimizer.learning_rate=1e-4", "model.cell_options={layer_norm: true}"])
    assert cfg.train.steps == 60 and cfg.optimizer.clip_norm is None
    assert cfg.optimizer.learning_rate == 1e-4
    assert cfg.model.cell_options == {"layer_norm": True}


def test_missing_data_file_names_the_key_and_path(tmp_path, monkeypatch):
    with pytest.raises(C.ConfigError, match=r"data\.path: data file not found: .*nope\.txt"):
        load_config(TINY, ["data.path=nope.txt"])
    # JAXRNN_DATA moves the data root
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path))
    with pytest.raises(C.ConfigError, match=str(tmp_path)):
        load_config(TINY)
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("hello world\n" * 10)
    assert load_config(TINY).data.path == str(tmp_path / "tinyshakespeare" / "input.txt")


def test_missing_config_and_unknown_experiment(tmp_path):
    with pytest.raises(C.ConfigError, match="config file not found"):
        load_config(str(tmp_path / "none.yaml"))
    with pytest.raises(C.ConfigError, match="is a folder"):
        load_config(str(tmp_path))
    with pytest.raises(C.ConfigError, match="no module named 'nosuch'.*'experiments.nosuch'"):
        load_config(_write(tmp_path, {"experiment": "nosuch"}))
    with pytest.raises(C.ConfigError, match="must name its experiment module"):
        load_config(_write(tmp_path, {"seed": 1}))
    with pytest.raises(C.ConfigError, match="no config given"):
        load_config(None)


def test_workdir_config_must_match_except_steps(tmp_path):
    cfg = load_config(TINY)
    C.dump_yaml(C.relativize_paths(cfg), tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["data"]["path"] == "tinyshakespeare/input.txt"  # portable across data roots
    assert load_config(None, [], tmp_path) == cfg
    assert load_config(TINY, ["train.steps=80"], tmp_path).train.steps == 80
    with pytest.raises(C.ConfigError, match=r"different config.*model\.hidden_size: 32 -> 64"):
        load_config(TINY, ["model.hidden_size=64"], tmp_path)


def test_schedule_values():
    o = C.OptimizerConfig(learning_rate=1.0, schedule="warmup_cosine", warmup_steps=10,
                          end_factor=0.1)
    s = make_schedule(o, 110)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)  # half way down the cosine
    assert float(s(110)) == pytest.approx(0.1)


def test_gradient_accumulation_averages_micro_batches():
    import jax.numpy as jnp
    o = C.OptimizerConfig(name="sgd", learning_rate=0.5, accumulate_steps=2, clip_norm=None)
    tx = make_optimizer(o, 10)
    p = {"w": jnp.array([1.0, 2.0])}
    st = tx.init(p)
    u1, st = tx.update({"w": jnp.array([1.0, 0.0])}, st, p)
    assert float(jnp.abs(u1["w"]).max()) == 0.0  # nothing applied after the first micro-step
    u2, st = tx.update({"w": jnp.array([3.0, 2.0])}, st, p)
    assert u2["w"].tolist() == [-1.0, -0.5]  # -lr * mean gradient
    clip = make_optimizer(C.OptimizerConfig(name="sgd", learning_rate=1.0, clip_norm=1.0), 10)
    u, _ = clip.update({"w": jnp.array([3.0, 4.0])}, clip.init(p), p)
    assert u["w"].tolist() == pytest.approx([-0.6, -0.8])


def test_partial_section_keeps_the_experiments_own_defaults():
    """A YAML `train:` section given in part must not reset the experiment's defaults
    (e.g. an experiment whose Config selects the best checkpoint by dev F1)."""
    import dataclasses

    @dataclasses.dataclass
    class Cfg(C.BaseConfig):
        train: C.TrainConfig = dataclasses.field(
            default_factory=lambda: C.TrainConfig(best_metric="f1", best_mode="max"))

    cfg = C.from_dict(Cfg, {"train": {"steps": 7}})
    assert cfg.train.steps == 7
    assert cfg.train.best_metric == "f1" and cfg.train.best_mode == "max"
    with pytest.raises(C.ConfigError, match=r"train\.stpes"):
        C.from_dict(Cfg, {"train": {"stpes": 7}})


def test_plot_file_names_are_safe(tmp_path):
    import json
    from jaxrnn.train.plots import plot_metrics
    lines = [{"step": s, "split": "dev", "f1/corporation": 0.1 * s} for s in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    paths = plot_metrics(tmp_path)
    assert [p.name for p in paths] == ["plot_f1_corporation.png"] and paths[0].is_file()


# --------------------------------------------------------------------------- the data root

def _charlm_config(tmp_path, **extra):
    data = {"experiment": "experiments.charlm", "data": {"path": "tiny/input.txt"}, **extra}
    return _write(tmp_path, data)


def _text(folder):
    (folder / "tiny").mkdir(parents=True, exist_ok=True)
    (folder / "tiny" / "input.txt").write_text("hello world\n" * 20)
    return str((folder / "tiny" / "input.txt").resolve())


def test_data_root_precedence(tmp_path, monkeypatch):
    """--data-dir, then $JAXRNN_DATA, then the config's data_root (relative to the config
    file, not to the working directory); the run's config records the root it read from."""
    monkeypatch.delenv("JAXRNN_DATA", raising=False)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "conf" / "data"
    fa, fb, fc = _text(a), _text(b), _text(c)
    cfg_dir = tmp_path / "conf"
    path = _charlm_config(cfg_dir, data_root="data")
    monkeypatch.chdir(tmp_path)                       # the root follows the file, not the cwd
    assert load_config(path).data.path == fc
    assert load_config(path).data_root == str(c.resolve())
    monkeypatch.setenv("JAXRNN_DATA", str(b))
    assert load_config(path).data.path == fb
    cfg = load_config(path, data_dir=str(a))
    assert cfg.data.path == fa and cfg.data_root == str(a.resolve())


def test_relative_data_path_without_a_root_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXRNN_DATA", raising=False)
    path = _charlm_config(tmp_path)
    with pytest.raises(C.ConfigError, match=r"data\.path: 'tiny/input.txt' is a relative path "
                                            r"and no data root is set.*--data-dir"):
        load_config(path)
    # an absolute path needs no root
    f = _text(tmp_path)
    assert load_config(path, [f"data.path={f}"]).data.path == f


def test_resume_accepts_a_moved_data_root(tmp_path, monkeypatch):
    """A run folder's config stores paths relative to its root, so the data may move."""
    monkeypatch.delenv("JAXRNN_DATA", raising=False)
    old, new = tmp_path / "old", tmp_path / "new"
    _text(old)
    fnew = _text(new)
    cfg = load_config(_charlm_config(tmp_path), data_dir=str(old))
    wd = tmp_path / "run"
    wd.mkdir()
    C.dump_yaml(C.relativize_paths(cfg), wd / "config.yaml")
    assert yaml.safe_load((wd / "config.yaml").read_text())["data"]["path"] == "tiny/input.txt"
    moved = load_config(None, [], wd, data_dir=str(new))
    assert moved.data.path == fnew
    with pytest.raises(C.ConfigError, match="data file not found"):
        import shutil
        shutil.rmtree(old)
        load_config(None, [], wd)
