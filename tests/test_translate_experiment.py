"""experiments/translate.py: the split, the vocabularies, a tiny training run through the CLI
(train, evaluate on test with beam BLEU, generate --input, predict)."""

import json

import numpy as np
import pytest

from experiments import translate
from jaxrnn import cli
from jaxrnn.train import read_metrics

PAIRS = [("Hi.", "嗨。"), ("Run.", "你用跑的。"), ("I won!", "我赢了。"), ("Come on.", "来吧。"),
         ("How are you?", "你好吗？"), ("I'm fine.", "我很好。"), ("Don't go.", "别走。"),
         ("Thank you.", "谢谢。")]


def test_tokenizers_and_split(tmp_path):
    assert translate.tokenize_en("Don't go, Tom!") == ["don", "'", "t", "go", ",", "tom", "!"]
    assert translate.tokenize_zh("你好 吗？") == ["你", "好", "吗", "？"]
    pairs = [(f"s{i}", f"t{i}") for i in range(50)]
    a = translate.split_pairs(pairs, 0, 5, 7)
    b = translate.split_pairs(pairs, 0, 5, 7)
    assert a == b and [len(a[k]) for k in ("test", "dev", "train")] == [5, 7, 38]
    assert sorted(sum(a.values(), [])) == sorted(pairs)       # a partition
    translate.write_split(a, tmp_path)
    assert translate.read_pairs(tmp_path / "dev.txt") == a["dev"]
    f = tmp_path / "extra.txt"
    f.write_text("Hi.\t嗨。\tCC-BY 2.0 (France) Attribution\n", encoding="utf-8")
    assert translate.read_pairs(f) == [("Hi.", "嗨。")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    data = root / "pairs.txt"
    data.write_text("".join(f"{en}\t{zh}\n" for en, zh in PAIRS * 8), encoding="utf-8")
    wd = root / "run"
    rc = cli.main(["train", "translate_tiny", "--workdir", str(wd),
                   "--set", f"data.path={data}",
                   "--set", "data.test_size=8", "--set", "data.dev_size=8",
                   "--set", "train.steps=30", "--set", "train.eval_every=30",
                   "--set", "optimizer.learning_rate=1e-2", "--set", "decode.batch_size=16"])
    assert rc == 0
    return root, wd


def test_tiny_run_evaluates_generates_predicts(trained, capsys):
    root, wd = trained
    # the split is written inside the run folder (outputs never leave the workdir)
    assert {p.name for p in (wd / "split").iterdir()} == {"train.txt", "dev.txt", "test.txt"}
    dev = [r for r in read_metrics(wd) if r["split"] == "dev"]
    assert dev and np.isfinite(dev[-1]["loss"]) and 0.0 <= dev[-1]["bleu"] <= 100.0
    train = [r for r in read_metrics(wd) if r["split"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"]
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(wd), "--split", "test"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"loss", "bleu", "bleu_beam"} <= set(out)
    assert cli.main(["generate", "--workdir", str(wd), "--input", "How are you?"]) == 0
    text = capsys.readouterr().out.strip()
    assert "How" not in text and all(not c.isascii() or c in "?!.," for c in text)
    src = root / "in.txt"
    src.write_text("Hi.\nThank you.\n", encoding="utf-8")
    assert cli.main(["predict", "--workdir", str(wd), "--input", str(src),
                     "--output", str(root / "out.txt")]) == 0
    assert len((root / "out.txt").read_text(encoding="utf-8").splitlines()) == 2
