"""Bad input to the configs and the CLI: each kind is an error that names the key, file or
option, raised before anything trains; through the CLI it is ONE line on stderr and exit
status 2. A table, one row per kind (the README's reliability table counts them)."""

import json

import pytest
import yaml

from jaxrnn import cli
from jaxrnn.train import ConfigError, load_config
from tests._paths import DATA

TINY = "configs/charlm_tiny.yaml"

# --------------------------------------------------------------------------- config values

CONFIG_ROWS = [
    # (override, message fragment)
    ("model.hidden_size=0", r"model\.hidden_size: must be in \[1, inf\), got 0"),
    ("model.num_layers=-1", r"model\.num_layers: must be in \[1"),
    ("model.embed_size=2.5", r"model\.embed_size: expected int"),
    ("model.dropout=1.5", r"model\.dropout: must be in \[0\.0, 1\.0\)"),
    ("model.dropout=-0.1", r"model\.dropout: must be in"),
    ("model.cell=bogus", r"model\.cell: unknown cell 'bogus'"),
    ("model.cell=3", r"model\.cell: expected a cell name"),
    ("model.method=newtn", r"model\.method: expected one of 'fused', 'reference', 'newton'"),
    ("model.newton={jac: full}", r"model\.newton: unknown Newton option\(s\) \['jac'\]"),
    ("model.newton={max_iters: 0}", r"model\.newton: max_iters must be a positive integer"),
    ("optimizer.learning_rate=.nan", r"optimizer\.learning_rate: must be a finite number"),
    ("optimizer.learning_rate=.inf", r"optimizer\.learning_rate: must be a finite number"),
    ("optimizer.learning_rate=-1e-3", r"optimizer\.learning_rate: must be in \(0\.0, inf\)"),
    ("optimizer.learning_rate=0", r"optimizer\.learning_rate: must be in \(0\.0"),
    ("optimizer.b1=1.2", r"optimizer\.b1: must be in \[0\.0, 1\.0\)"),
    ("optimizer.b2=-0.5", r"optimizer\.b2: must be in"),
    ("optimizer.eps=-1", r"optimizer\.eps: must be in \[0\.0, inf\)"),
    ("optimizer.end_factor=-0.1", r"optimizer\.end_factor: must be in"),
    ("optimizer.weight_decay=-1", r"optimizer\.weight_decay: must be in"),
    ("optimizer.warmup_steps=-3", r"optimizer\.warmup_steps: must be in \[0"),
    ("optimizer.clip_norm=0", r"optimizer\.clip_norm: must be in \(0\.0"),
    ("optimizer.accumulate_steps=0", r"optimizer\.accumulate_steps: must be in \[1"),
    ("optimizer.ema_decay=1.0", r"optimizer\.ema_decay: must be in \(0\.0, 1\.0\)"),
    ("optimizer.momentum=.nan", r"optimizer\.momentum: must be a finite number"),
    ("optimizer.name=adamx", r"optimizer\.name: expected one of 'adam'"),
    ("train.steps=0", r"train\.steps: must be in \[1"),
    ("train.batch_size=-4", r"train\.batch_size: must be in \[1"),
    ("train.eval_every=0", r"train\.eval_every: must be in"),
    ("train.keep_checkpoints=0", r"train\.keep_checkpoints: must be in"),
    ("train.tensorboard=maybe", r"train\.tensorboard: expected bool, got str 'maybe'"),
    ("train.best_mode=up", r"train\.best_mode: expected one of 'min', 'max'"),
    ("train.patience=0", r"train\.patience: must be in \[1"),
    ("train.patience=soon", r"train\.patience: expected"),
    ("train.min_improvement=1.0", r"train\.min_improvement: must be in \[0\.0, 1\.0\)"),
    ("train.min_improvement=-0.01", r"train\.min_improvement: must be in"),
    ("distributed.num_processes=0", r"distributed\.num_processes: must be in \[1"),
    ("data.train_fraction=1.0", r"data\.train_fraction: must be in \(0\.0, 1\.0\)"),
    ("data.seq_len=0", r"data\.seq_len: must be in \[1"),
    ("data.path=nope.txt", r"data\.path: data file not found: .*nope\.txt"),
    ("data.path=../../../../etc/hostname", r"data\.path: .* outside the data root"),
    ("trian.steps=3", r"unknown config key 'trian'"),
    ("train.stpes=3", r"unknown config key 'train\.stpes' \(did you mean 'train\.steps'\?\)"),
    ("steps", r"--set expects key=value"),
    ("train=3", r"train: expected a mapping"),
]

TRANSLATE_ROWS = [
    ("data.split_dir=/tmp/elsewhere", r"data\.split_dir: '/tmp/elsewhere' must be a relative path inside the run folder"),
    ("data.split_dir=../out", r"data\.split_dir: '\.\./out' must be a relative path"),
]


@pytest.mark.parametrize("override,pattern", TRANSLATE_ROWS, ids=[r[0] for r in TRANSLATE_ROWS])
def test_outputs_stay_in_the_run_folder(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("configs/translate_tiny.yaml", [override])


@pytest.mark.parametrize("override,pattern", CONFIG_ROWS, ids=[r[0] for r in CONFIG_ROWS])
def test_bad_config_value_names_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(TINY, [override])


def _write(tmp_path, name, content, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(content)
    else:
        p.write_text(content)
    return str(p)


FILE_ROWS = [
    ("yaml syntax", lambda t: _write(t, "a.yaml", "experiment: experiments.charlm\nmodel: {a: [1\n"),
     r"a\.yaml: invalid YAML at line \d+, column \d+"),
    ("binary file", lambda t: _write(t, "b.yaml", bytes(range(256)) * 4, "wb"),
     r"b\.yaml: not a text file"),
    ("a folder", lambda t: str(t), r"is a folder, not a YAML file"),
    ("missing file", lambda t: str(t / "none.yaml"), r"config file not found"),
    ("top level not a mapping", lambda t: _write(t, "l.yaml", "- 1\n- 2\n"),
     r"l\.yaml: the top level must be a mapping"),
    ("no experiment", lambda t: _write(t, "n.yaml", "seed: 1\n"),
     r"must name its experiment module"),
    ("unknown experiment", lambda t: _write(t, "u.yaml", "experiment: nosuch\n"),
     r"no module named 'nosuch'"),
    ("module without Config/build", lambda t: _write(t, "j.yaml", "experiment: json\n"),
     r"experiment 'json' .* defines no Config"),
    ("relative data path, no root", lambda t: _write(
        t, "r.yaml", yaml.safe_dump({"experiment": "experiments.charlm",
                                     "data": {"path": "x.txt"}})),
     r"data\.path: 'x\.txt' is a relative path and no data root is set"),
]


@pytest.mark.parametrize("name,make,pattern", FILE_ROWS, ids=[r[0] for r in FILE_ROWS])
def test_bad_config_file_names_the_file(name, make, pattern, tmp_path, monkeypatch):
    monkeypatch.delenv("JAXRNN_DATA", raising=False)
    with pytest.raises(ConfigError, match=pattern):
        load_config(make(tmp_path))


# --------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny char-LM run and a tiny POS run (2 steps each) to point the commands at."""
    root = tmp_path_factory.mktemp("badcli")
    out = {}
    for name, config in (("charlm", "charlm_tiny"), ("pos", "pos_tiny")):
        wd = root / name
        assert cli.main(["train", config, "--workdir", str(wd), "--set", "train.steps=2",
                         "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2",
                         "--set", "train.log_every=1", "--set", "train.plots=false"]) == 0
        out[name] = wd
    return root, out


def _files(root):
    (root / "empty.txt").write_text("")
    (root / "blank.txt").write_text("\n  \n\n")
    (root / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 64)
    (root / "one.txt").write_text("a")
    (root / "raw.txt").write_text("the cat sat\n")
    return root


CLI_ROWS = [
    # (name, argv builder (root, runs) -> argv, stderr fragment)
    ("train: yaml error", lambda r, w: ["train", _write(r, "bad.yaml", "a: [1\n")],
     "invalid YAML at line"),
    ("train: no config", lambda r, w: ["train"], "give a CONFIG"),
    ("train: folder as config", lambda r, w: ["train", str(r)], "is a folder"),
    ("train: bad --set", lambda r, w: ["train", "charlm_tiny", "--workdir", str(r / "x"),
                                       "--set", "model.hidden_size=0"], "model.hidden_size"),
    ("train: unknown key", lambda r, w: ["train", "charlm_tiny", "--workdir", str(r / "x"),
                                         "--set", "model.hiden=3"], "model.hiden"),
    ("train: best_metric the experiment does not report", lambda r, w: [
        "train", "charlm_tiny", "--workdir", str(r / "z"), "--set", "train.best_metric=f1"],
     "train.best_metric: 'f1' is not a dev metric"),
    ("train: config differs from the workdir's", lambda r, w: [
        "train", "charlm_tiny", "--workdir", str(w["charlm"]), "--set", "model.hidden_size=64"],
     "different config"),
    ("train: --data-dir without the data", lambda r, w: [
        "train", "charlm_tiny", "--workdir", str(r / "y"), "--data-dir", str(r)],
     "data file not found"),
    ("evaluate: not a run folder", lambda r, w: ["evaluate", "--workdir", str(r)],
     "not a jaxrnn run folder"),
    ("evaluate: --data empty", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                             "--data", str(r / "empty.txt")], "empty"),
    ("evaluate: --data blank lines", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                                   "--data", str(r / "blank.txt")], "empty"),
    ("evaluate: --data one character", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                                     "--data", str(r / "one.txt")],
     "nothing to score"),
    ("evaluate: --data missing", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                               "--data", str(r / "nope.txt")], "no such file"),
    ("evaluate: --data folder", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                              "--data", str(r)], "is a folder"),
    ("evaluate: --data binary", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                              "--data", str(r / "binary.txt")], "not UTF-8"),
    ("evaluate: unknown split", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                              "--split", "train"], "dev split only"),
    ("evaluate: bad --checkpoint", lambda r, w: ["evaluate", "--workdir", str(w["charlm"]),
                                                 "--checkpoint", "newest"], "--checkpoint"),
    ("evaluate: --ensemble of a non-tagging run", lambda r, w: [
        "evaluate", "--workdir", str(w["charlm"]), "--ensemble", str(w["charlm"])],
     "defines no evaluate_ensemble"),
    ("evaluate: --ensemble of two experiments", lambda r, w: [
        "evaluate", "--workdir", str(w["pos"]), "--ensemble", str(w["charlm"])],
     "an ensemble needs one experiment"),
    ("generate: --temperature nan", lambda r, w: ["generate", "--workdir", str(w["charlm"]),
                                                  "--temperature", "nan"], "--temperature"),
    ("generate: --temperature 0", lambda r, w: ["generate", "--workdir", str(w["charlm"]),
                                                "--temperature", "0"], "--temperature"),
    ("generate: --length -1", lambda r, w: ["generate", "--workdir", str(w["charlm"]),
                                            "--length", "-1"], "--length"),
    ("generate: prompt with unseen characters", lambda r, w: [
        "generate", "--workdir", str(w["charlm"]), "--prompt", "\u00e9\u00e9"], "never saw"),
    ("generate: not generative", lambda r, w: ["generate", "--workdir", str(w["pos"])],
     "does not implement generate"),
    ("predict: --output is --input", lambda r, w: [
        "predict", "--workdir", str(w["pos"]), "--input", str(r / "raw.txt"),
        "--output", str(r / "raw.txt")], "would be overwritten"),
    ("predict: a CoNLL-U file as raw text", lambda r, w: [
        "predict", "--workdir", str(w["pos"]),
        "--input", str(DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu")], "CoNLL"),
    ("predict: --output a folder", lambda r, w: [
        "predict", "--workdir", str(w["pos"]), "--input", str(r / "raw.txt"),
        "--output", str(r)], "is a folder"),
    ("predict: not implemented", lambda r, w: [
        "predict", "--workdir", str(w["charlm"]), "--input", str(r / "raw.txt")],
     "does not implement predict"),
]


@pytest.mark.parametrize("name,argv,fragment", CLI_ROWS, ids=[r[0] for r in CLI_ROWS])
def test_cli_user_error_is_one_line(name, argv, fragment, runs, capsys):
    root, workdirs = runs
    _files(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.suffix in
              (".txt", ".yaml", ".jsonl")}
    capsys.readouterr()
    rc = cli.main(argv(root, workdirs))
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("jaxrnn: "), err
    assert fragment in err, err
    assert "Traceback" not in err
    # nothing that existed was changed by a refused command
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p} was modified"


def test_a_bug_is_a_traceback_with_a_hint(runs, capsys, monkeypatch):
    """Anything that is not a user error shows its traceback, asks to be reported, exits 1."""
    root, workdirs = runs
    import jaxrnn.cli as cli_mod

    def boom(args):
        raise KeyError("internal")
    monkeypatch.setattr(cli_mod, "_run", boom)
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(workdirs["charlm"])]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "this is a bug" in err


def test_the_good_commands_still_work(runs, capsys):
    root, workdirs = runs
    _files(root)
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(workdirs["pos"]), "--input",
                     str(root / "raw.txt"), "--output", str(root / "tagged.txt")]) == 0
    lines = [ln for ln in (root / "tagged.txt").read_text().splitlines() if ln]
    assert [ln.split("\t")[0] for ln in lines] == ["the", "cat", "sat"]
    assert cli.main(["evaluate", "--workdir", str(workdirs["charlm"])]) == 0
    assert "loss" in json.loads(capsys.readouterr().out)
