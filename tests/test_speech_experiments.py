"""Spoken-digit experiments: FSDD splits, connected-utterance construction, and tiny runs
through the runner whose loss falls."""

from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("jaxrnn.train")

from experiments import connected_digits, digits  # noqa: E402
from jaxrnn.train import load_config, read_metrics, train_and_evaluate  # noqa: E402
from jaxrnn.train.config import ConfigError  # noqa: E402
from tests._paths import data_root  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FSDD = data_root() / "fsdd" / "recordings"
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason=f"{FSDD} not found")


@needs_fsdd
def test_fsdd_splits():
    recs = digits.list_recordings(FSDD)
    assert len(recs) == 3000 and {r.speaker for r in recs} == set(digits.SPEAKERS)
    s = digits.split_official(recs, 5)
    assert [len(s[k]) for k in ("train", "dev", "test")] == [2400, 300, 300]
    assert all(recs[i].take < 5 for i in s["test"])
    assert not set(s["train"]) & set(s["test"]) and not set(s["dev"]) & set(s["test"])
    for spk in digits.SPEAKERS:
        s = digits.split_speaker(recs, spk)
        assert [len(s[k]) for k in ("train", "dev", "test")] == [2250, 250, 500]
        assert {recs[i].speaker for i in s["test"]} == {spk}
        assert spk not in {recs[i].speaker for i in s["train"] + s["dev"]}
    with pytest.raises(ConfigError, match="test_speaker: 'bob' is not one of"):
        digits.split_speaker(recs, "bob")


def test_list_recordings_rejects_bad_names(tmp_path):
    (tmp_path / "seven.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"seven\.wav: expected a name"):
        digits.list_recordings(tmp_path)


def test_connected_utterances_are_recordings_and_silences():
    sigs = [np.full(100 + 10 * i, 0.5 + 0.01 * i, np.float32) for i in range(10)]
    dig = [i % 10 for i in range(10)]
    kw = dict(rate=8000, min_digits=2, max_digits=7, silence_ms=(50, 300), noise=1e-3)
    waves, labels = connected_digits.make_utterances(sigs, dig, 50, np.random.default_rng(0), **kw)
    w2, l2 = connected_digits.make_utterances(sigs, dig, 50, np.random.default_rng(0), **kw)
    assert labels == l2 and all(np.array_equal(a, b) for a, b in zip(waves, w2))   # seeded
    assert {len(l) for l in labels} <= set(range(2, 8)) and len({len(l) for l in labels}) > 3
    for w, lab in zip(waves, labels):
        loud = np.abs(w) > 0.1
        # runs of loud samples are the recordings, in order, separated by 50-300 ms silences
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        starts, ends = edges[::2], edges[1::2]
        assert len(starts) == len(lab)
        for a, b, d in zip(starts, ends, lab):
            i = int(round((w[a] - 0.5) / 0.01))
            assert dig[i] == d and b - a == len(sigs[i])
        gaps = np.diff(np.concatenate([[0], np.ravel(np.column_stack([starts, ends])), [len(w)]]))[::2]
        assert np.all(gaps >= 0.05 * 8000 - 1) and np.all(gaps <= 0.3 * 8000)
        assert np.abs(w[~loud]).max() < 0.01
    y, ny = connected_digits.pad_labels([[0, 9], [3]], 4)
    np.testing.assert_array_equal(y, [[1, 10, 0, 0], [4, 0, 0, 0]])
    np.testing.assert_array_equal(ny, [2, 1])


def _tiny_run(config, tmp_path):
    cfg = load_config(str(REPO / "configs" / config), [], tmp_path)
    last = train_and_evaluate(cfg, tmp_path)
    train = [r["loss"] for r in read_metrics(tmp_path) if r["split"] == "train"]
    return last, train


@needs_fsdd
def test_digits_tiny_run_learns(tmp_path):
    last, train = _tiny_run("digits_tiny.yaml", tmp_path)
    assert train[-1] < 0.8 * train[0]
    assert last["dev"]["accuracy"] > 0.2          # chance is 0.1


@needs_fsdd
def test_connected_tiny_run_learns(tmp_path):
    last, train = _tiny_run("connected_tiny.yaml", tmp_path)
    assert train[-1] < 0.8 * train[0]
    assert 0 <= last["dev"]["der"] and np.isfinite(last["dev"]["loss"])
