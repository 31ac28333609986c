"""Smoke tests of the tagging experiments (cws, pos, ner): a tiny model on tiny generated
files trains through the runner and its loss falls; evaluate --data and predict work."""

import json

import numpy as np
import pytest

from jaxrnn import cli, text
from jaxrnn.train import load_config, prepare, read_metrics

LEXICON = ["中国", "人民", "好", "我们", "喜欢", "北京", "的", "天气", "很", "研究生"]
# a part of speech per word (the UPOS column), for joint segmentation and tagging
LEXICON_POS = dict(zip(LEXICON, ["PROPN", "NOUN", "ADJ", "PRON", "VERB", "PROPN", "PART",
                                 "NOUN", "ADV", "NOUN"]))


def _cws_files(tmp_path, rng):
    def sentence():
        words = [LEXICON[i] for i in rng.integers(0, len(LEXICON), rng.integers(2, 5))]
        return "".join(f"{i}\t{w}\t_\t{LEXICON_POS[w]}\tX\t_\t0\troot\t_\t_\n"
                       for i, w in enumerate(words, 1))
    for name, n in (("train.conll", 64), ("dev.conll", 8)):
        (tmp_path / name).write_text("\n".join(sentence() for _ in range(n)), encoding="utf-8")
    (tmp_path / "raw.txt").write_text("我们喜欢北京\n\n中国 人民好\n", encoding="utf-8")
    return {"data.train": tmp_path / "train.conll", "data.dev": tmp_path / "dev.conll"}


WORDS = {"DET": ["the", "a"], "NOUN": ["dog", "cat", "Park"], "VERB": ["runs", "sees"],
         "ADJ": ["big", "Red"]}


def _pos_files(tmp_path, rng):
    def sentence():
        tags = ["DET", "ADJ", "NOUN", "VERB"][:rng.integers(2, 5)]
        rows = [f"{i}\t{WORDS[t][rng.integers(len(WORDS[t]))]}\t_\t{t}\t_\t_\t0\tx\t_\t_"
                for i, t in enumerate(tags, 1)]
        rows.insert(1, "2-3\tfoo\t_\t_\t_\t_\t_\t_\t_\t_")   # a multiword token line
        return "# text = x\n" + "\n".join(rows) + "\n"
    for name, n in (("train.conllu", 64), ("dev.conllu", 8)):
        (tmp_path / name).write_text("\n".join(sentence() for _ in range(n)), encoding="utf-8")
    (tmp_path / "raw.txt").write_text("the dog runs\n", encoding="utf-8")
    return {"data.train": tmp_path / "train.conllu", "data.dev": tmp_path / "dev.conllu"}


def _ner_files(tmp_path, rng, chars=False):
    names = ["Paris", "London"] if not chars else ["北京", "上海"]
    filler = ["I", "like", "in", "now"] if not chars else ["我", "爱", "在", "了"]

    def sentence():
        toks = [(filler[rng.integers(4)], "O") for _ in range(rng.integers(1, 4))]
        name = names[rng.integers(2)]
        ent = list(name) if chars else [name]
        toks += [(t, ("B-" if i == 0 else "I-") + "LOC") for i, t in enumerate(ent)]
        toks += [(filler[rng.integers(4)], "O")]
        # chars: each token's position in its segmenter word (the names are two-char words)
        pos = [0] * len(toks)
        if chars:
            start = len(toks) - 1 - len(ent)
            pos[start:start + len(ent)] = range(len(ent))
        return "".join(f"{t}{p if chars else ''}\t{g}\n" for (t, g), p in zip(toks, pos))
    for name, n in (("train.txt", 64), ("dev.txt", 8)):
        (tmp_path / name).write_text("\n".join(sentence() for _ in range(n)), encoding="utf-8")
    return {"data.train": tmp_path / "train.txt", "data.dev": tmp_path / "dev.txt",
            **({"data.format": "chars", "model.bigram_size": 8} if chars else {})}


CASES = {
    "cws": ("cws_tiny", _cws_files),
    # lexicon bits from the training words (jackknifed) through train, evaluate and predict
    "cws_lexicon": ("cws_tiny", lambda p, r: {**_cws_files(p, r), "model.lexicon_max_len": 3}),
    # joint segmentation and POS tagging (B-NOUN, ... tags; predict writes word/POS)
    "cws_joint_pos": ("cws_tiny", lambda p, r: {**_cws_files(p, r), "data.pos": "upos",
                                                 "model.lexicon_max_len": 3}),
    "pos": ("pos_tiny", _pos_files),
    "ner": ("ner_tiny", _ner_files),
    "ner_chars": ("ner_tiny", lambda p, r: _ner_files(p, r, chars=True)),
    # lexicon bits from the segmenter words of the training file (position digits)
    "ner_chars_lexicon": ("ner_tiny", lambda p, r: {**_ner_files(p, r, chars=True),
                                                    "model.lexicon_max_len": 3}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tagging_experiment_trains_evaluates_and_predicts(case, tmp_path, capsys):
    config, make = CASES[case]
    files = make(tmp_path, np.random.default_rng(0))
    sets = [f"{k}={v}" for k, v in files.items()] + [
        "train.steps=30", "train.log_every=5", "train.eval_every=30", "train.batch_size=16",
        "optimizer.learning_rate=0.01", "model.dropout=0.0",
        # one padded length (one compilation) for every batch of these short sentences
        "data.batching.bucket_width=16", "data.batching.eval_batch_size=16"]
    args = sum((["--set", s] for s in sets), [])
    workdir = tmp_path / "run"
    assert cli.main(["train", config, "--workdir", str(workdir)] + args) == 0
    losses = [r["loss"] for r in read_metrics(workdir) if r.get("split") == "train"
              and "loss" in r]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0], losses
    dev = [r for r in read_metrics(workdir) if r.get("split") == "dev"]
    metric = "accuracy" if case.startswith("pos") else "f1"
    assert len(dev) == 1 and 0 <= dev[0][metric] <= 100
    capsys.readouterr()
    if case.startswith("ner"):
        return   # evaluate and predict share their code with pos (words) and cws (characters)

    assert cli.main(["evaluate", "--workdir", str(workdir), "--data",
                     str(files["data.dev"])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "file" and 0 <= out[metric] <= 100
    assert ("pos_f1" in out) == (case == "cws_joint_pos")

    pred = tmp_path / "pred.txt"
    assert cli.main(["predict", "--workdir", str(workdir), "--input",
                     str(tmp_path / "raw.txt"), "--output", str(pred)]) == 0
    written = pred.read_text(encoding="utf-8")
    if case.startswith("cws"):
        lines = written.split("\n")
        if case == "cws_joint_pos":   # word/POS tokens, with a POS of the training data
            tokens = [t.split("/") for line in lines for t in line.split()]
            assert tokens and all(len(t) == 2 and t[1] in LEXICON_POS.values() for t in tokens)
            lines = [" ".join(t.split("/")[0] for t in line.split()) for line in lines]
        assert lines[1] == "" and "".join(lines[0].split()) == "我们喜欢北京"
        assert "".join(lines[2].split()) == "中国人民好"
    else:
        rows = [l.split("\t") for l in written.strip().split("\n")]
        want = ["the", "dog", "runs"]
        assert [r[0] for r in rows] == want and all(len(r) == 2 for r in rows)


def test_cws_reader_makes_bmes_from_gold_words(tmp_path):
    from experiments import cws
    files = _cws_files(tmp_path, np.random.default_rng(1))
    gold = text.read_conllx(files["data.train"])
    chars = cws.read(files["data.train"])
    assert len(gold) == len(chars)
    for g, c in zip(gold, chars):
        assert text.bmes_to_words(c.tokens, c.tags) == list(g.tokens)
    assert cws.score(chars, [s.tags for s in chars])["f1"] == 100.0


def test_cws_joint_pos_tags_and_scores(tmp_path):
    """Joint tags are BMES x POS; the segmentation score ignores the POS, pos_f1 counts a word
    only with its span and its POS (checked on a hand-made prediction)."""
    from experiments import cws
    files = _cws_files(tmp_path, np.random.default_rng(1))
    gold = text.read_conllx(files["data.train"])
    joint = cws.read(files["data.train"], pos="upos")
    for g, c in zip(gold, joint):
        assert cws.tagged_words(c.tokens, c.tags) == list(zip(g.tokens, g.tags))
        assert [cws.split_tag(t)[0] for t in c.tags] == text.words_to_bmes(g.tokens)
    perfect = cws.score(joint, [s.tags for s in joint])
    assert perfect["f1"] == 100.0 and perfect["pos_f1"] == 100.0
    # 研究生 / 很 / 好: gold NOUN ADV ADJ. Predicted: 研究 生 (split, right POS on neither
    # span), 很 with the wrong POS, 好 right: segmentation 2 of 4 predicted correct of 3 gold
    # words; joint 1 of 4 predicted of 3 gold.
    sent = cws.Sentence(tuple("研究生很好"),
                        ("B-NOUN", "M-NOUN", "E-NOUN", "S-ADV", "S-ADJ"), 1)
    pred = ["B-NOUN", "E-NOUN", "S-NOUN", "S-VERB", "S-ADJ"]
    got = cws.score([sent], [pred])
    p, r = 100 * 2 / 4, 100 * 2 / 3
    assert abs(got["f1"] - 2 * p * r / (p + r)) < 1e-9
    p, r = 100 * 1 / 4, 100 * 1 / 3
    assert abs(got["pos_f1"] - 2 * p * r / (p + r)) < 1e-9
    assert "pos_f1" not in cws.score(cws.read(files["data.train"]),
                                     [s.tags for s in cws.read(files["data.train"])])


def test_ner_segmenter_words_and_lexicon(tmp_path):
    """Weibo-style position digits give the training words (a word starts at position 0), and
    the lexicon bits of a character model come from them."""
    from experiments import ner
    from jaxrnn.models.tagger import CharInput, TaggerConfig
    path = tmp_path / "w.txt"
    path.write_text("我0\tO\n爱0\tO\n北0\tB-LOC\n京1\tI-LOC\n天0\tO\n安1\tO\n门2\tO\n",
                    encoding="utf-8")
    sent = text.read_chars(path, keep_positions=True)[0]
    assert ner.segmenter_words(sent) == ["我", "爱", "北京", "天安门"]
    inp = CharInput([tuple("我爱北京天安门")], TaggerConfig(lexicon_max_len=3, lexicon_folds=2),
                    words=[ner.segmenter_words(sent)])
    bits = inp.lexicon_features(list("去北京"), inp.lexicon)
    # L=2 columns: starts at 北, ends at 京; no 3-character word in this text
    assert bits[1, 0] == 1 and bits[2, 1] == 1 and bits[0].sum() == 0 and bits[:, 3:].sum() == 0


def test_config_errors_name_the_key():
    from jaxrnn.train.config import ConfigError
    with pytest.raises(ConfigError, match="model.bigram_sise"):
        load_config("cws_tiny", ["model.bigram_sise=3"])
    with pytest.raises(ConfigError, match="data.format"):
        load_config("ner_tiny", ["data.format=bio"])


def test_ensemble_evaluation(tmp_path, capsys):
    """An ensemble of a run with itself scores exactly like the run; an ensemble of two runs
    decodes, for every sentence, the path that maximizes the mean of the members' CRF path
    scores (checked against brute-force enumeration of all BMES paths)."""
    import itertools

    import jax.numpy as jnp

    from jaxrnn.heads import crf as crf_lib

    files = _cws_files(tmp_path, np.random.default_rng(0))
    base = [f"{k}={v}" for k, v in files.items()] + [
        "train.steps=20", "train.log_every=10", "train.eval_every=20", "train.batch_size=16",
        "optimizer.learning_rate=0.01", "data.batching.bucket_width=16",
        "data.batching.eval_batch_size=16"]
    dirs = []
    for seed in (0, 1):
        d = tmp_path / f"run{seed}"
        args = sum((["--set", s] for s in base + [f"seed={seed}"]), [])
        assert cli.main(["train", "cws_tiny", "--workdir", str(d)] + args) == 0
        dirs.append(d)
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(dirs[0])]) == 0
    single = json.loads(capsys.readouterr().out)
    assert cli.main(["evaluate", "--workdir", str(dirs[0]), "--ensemble", str(dirs[0])]) == 0
    self_ens = json.loads(capsys.readouterr().out)
    assert self_ens["members"] == 2 and self_ens["f1"] == single["f1"]

    # two members: the decoded paths against brute force over the mean path score
    from jaxrnn.cli import _load_trained
    members = [_load_trained(str(d), "best") for d in dirs]
    from experiments import cws
    sents = [s for s in cws.read(files["data.dev"]) if len(s.tokens) <= 6][:3]
    assert sents
    toks = [s.tokens for s in sents]
    got = [m[0].task.scores(m[1], toks) for m in members]
    names = got[0][2]
    allowed = crf_lib.allowed_transitions(list(names), "BMES")
    # the ensemble decoder on just these sentences, through a file in the dev format
    path = tmp_path / "few.conll"
    rows = []
    for s in sents:
        words = text.bmes_to_words(s.tokens, s.tags)
        rows.append("".join(f"{i}\t{w}\t_\tX\tX\t_\t0\troot\t_\t_\n"
                            for i, w in enumerate(words, 1)))
    path.write_text("\n".join(rows), encoding="utf-8")
    assert cli.main(["evaluate", "--workdir", str(dirs[0]), "--ensemble", str(dirs[1]),
                     "--data", str(path)]) == 0
    ens = json.loads(capsys.readouterr().out)
    # brute force: best path under the mean of the two members' path scores (and under
    # each member alone: the members must disagree somewhere for the check to bite)
    correct = 0
    total = 0
    disagree = False
    for i, s in enumerate(sents):
        n = len(s.tokens)
        best, best_path = -np.inf, None
        own = [(-np.inf, None), (-np.inf, None)]
        for path_ids in itertools.product(range(len(names)), repeat=n):
            tags = jnp.array(path_ids)
            if not all(bool(allowed.transitions[a, b]) for a, b in zip(path_ids, path_ids[1:])):
                continue
            if not (bool(allowed.start[path_ids[0]]) and bool(allowed.end[path_ids[-1]])):
                continue
            each = [float(crf_lib.sequence_score(g[1], jnp.asarray(g[0][i]), tags))
                    for g in got]
            own = [(e, path_ids) if e > o[0] else o for e, o in zip(each, own)]
            if np.mean(each) > best:
                best, best_path = np.mean(each), path_ids
        disagree |= own[0][1] != best_path or own[1][1] != best_path
        pred_words = text.bmes_to_words(s.tokens, [names[k] for k in best_path])
        gold_words = text.bmes_to_words(s.tokens, s.tags)
        gold_spans, pred_spans = set(), set()
        for ws, spans in ((gold_words, gold_spans), (pred_words, pred_spans)):
            a = 0
            for w in ws:
                spans.add((a, a + len(w)))
                a += len(w)
        correct += len(gold_spans & pred_spans)
        total += len(gold_spans)
    assert disagree
    assert abs(ens["recall"] - 100.0 * correct / total) < 1e-9
