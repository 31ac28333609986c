"""Checkpoint integrity, metrics repair and the workdir lock, by fault injection.

A reference run (12 steps, a checkpoint every 3, an evaluation every 6) and the same run stopped
right after its step-9 checkpoint (as a kill would leave it: checkpoints/6, 9, best/6, metrics up
to step 9) are built once. Each fault test damages a copy of the stopped run, at its newest
checkpoint or at best/, resumes it, and checks that the run fell back with a warning naming the
step and the reason, and ended bitwise equal to the reference (state, metrics.jsonl, best/)."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import jax
import numpy as np
import pytest

from jaxrnn.train import (CheckpointError, NonFiniteLossError, WorkdirLock, WorkdirLockedError,
                          eval_params, load_config, load_params, prepare, read_metrics,
                          train_and_evaluate)
from jaxrnn.train.checkpoint import MANIFEST, Checkpoints
from jaxrnn.train.metrics import truncate_metrics

ROOT = Path(__file__).resolve().parents[1]
SETS = ["train.steps=12", "train.checkpoint_every=3", "train.eval_every=6", "train.log_every=3"]


class _Killed(Exception):
    pass


@contextlib.contextmanager
def _killed_after_checkpoint(step):
    """The run stops right after writing checkpoint ``step`` (what a kill then leaves)."""
    save = Checkpoints.save

    def patched(self, s, state, extra=None):
        save(self, s, state, extra)
        if s == step:
            raise _Killed
    with mock.patch.object(Checkpoints, "save", patched):
        yield


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _final_state(wd, run):
    ck = Checkpoints(wd)
    try:
        return _host(ck.restore(ck.latest_step(), run.abstract_state))
    finally:
        ck.close()


def _assert_equal_trees(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def _snapshot(wd):
    return {p.relative_to(wd).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(Path(wd).rglob("*"))}


def _step_dirs(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(reference workdir, stopped-after-step-9 workdir, run, reference final state)."""
    base = tmp_path_factory.mktemp("faults")
    cfg = load_config("charlm_tiny", SETS)
    ref = base / "ref"
    train_and_evaluate(cfg, ref)
    stopped = base / "stopped"
    with _killed_after_checkpoint(9), pytest.raises(_Killed):
        train_and_evaluate(cfg, stopped)
    assert _step_dirs(stopped / "checkpoints") == ["6", "9"]
    assert _step_dirs(stopped / "best") == ["6"] and _step_dirs(ref / "best") == ["12"]
    assert not (stopped / ".lock").exists()  # released on the exception
    run = prepare(cfg)
    return ref, stopped, run, _final_state(ref, run)


# --------------------------------------------------------------------------- faults

def _largest(folder):
    return max((p for p in Path(folder).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(d):
    p = _largest(d / "state")
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)


def _garbage(d):
    p = _largest(d / "state")
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))


def _flip(d):
    """XORs a few bytes in the middle of the largest array data file."""
    p = _largest(d / "state")
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    for i in range(mid, mid + 4):
        b[i] ^= 0x5A
    p.write_bytes(bytes(b))


def _flip_unlisted(d):
    """Flipped bytes with the file manifest gone: only the array checksum can tell."""
    (d / MANIFEST).unlink()
    _flip(d)


def _empty(d):
    shutil.rmtree(d)
    d.mkdir()


def _orbax_metadata(d):
    (d / "_CHECKPOINT_METADATA").unlink()
    (d / "state" / "_METADATA").unlink()


def _checksum_files(d):
    shutil.rmtree(d / "integrity")
    (d / MANIFEST).unlink()


FAULTS = {
    "truncate": (_truncate, r"file state/\S+ truncated \(\d+ bytes, expected \d+\)"),
    "delete": (lambda d: _largest(d / "state").unlink(), r"missing file state/"),
    "garbage": (_garbage, r"checksum mismatch in file state/"),
    "flip": (_flip, r"checksum mismatch in file state/"),
    "flip_unlisted": (_flip_unlisted,
                      r"array checksum mismatch \(stored \w+\.\.\., restored values give"),
    "empty": (_empty, r"empty step folder"),
    "orbax_metadata": (_orbax_metadata, r"missing file (_CHECKPOINT_METADATA|state/_METADATA)"),
    "checksum_files": (_checksum_files, r"missing metadata: no array checksum"),
}


def _resume(wd):
    return train_and_evaluate(load_config(None, [], wd), wd)


def _check_like_reference(runs, wd):
    ref, _, run, ref_state = runs
    _assert_equal_trees(ref_state, _final_state(wd, run))
    assert (wd / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    assert (wd / "config.yaml").read_text() == (ref / "config.yaml").read_text()
    assert _step_dirs(wd / "best") == _step_dirs(ref / "best")
    assert not (wd / ".lock").exists()
    best, step = load_params(run, wd, "best")
    ref_best, ref_step = load_params(run, ref, "best")
    assert step == ref_step
    _assert_equal_trees(_host(ref_best), _host(best))


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("where", ["checkpoints/9", "best/6"])
def test_fault_is_skipped_with_a_warning_and_the_run_ends_as_the_reference(
        runs, tmp_path, capsys, fault, where):
    _, stopped, _, _ = runs
    wd = tmp_path / "run"
    shutil.copytree(stopped, wd)
    damage, reason = FAULTS[fault]
    damage(wd / where)
    capsys.readouterr()
    _resume(wd)
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if f"skipping checkpoint {where}" in line]
    assert len(warned) == 1, err
    assert re.search(reason, warned[0]), warned[0]
    assert f"moved it to {where}.corrupt" in warned[0] and (wd / f"{where}.corrupt").is_dir()
    resumed_from = 6 if where == "checkpoints/9" else 9
    assert f"from step {resumed_from}" in err
    _check_like_reference(runs, wd)


def test_flipped_bytes_change_the_arrays_orbax_restores(runs, tmp_path):
    """The flip fault really changes values (orbax alone restores them silently)."""
    import orbax.checkpoint as ocp
    _, stopped, run, _ = runs
    wd = tmp_path / "run"
    shutil.copytree(stopped, wd)
    _flip(wd / "checkpoints/9")
    ck, ck0 = Checkpoints(wd), Checkpoints(stopped)
    try:
        args = ocp.args.Composite(state=ocp.args.StandardRestore(run.abstract_state))
        try:
            raw = ck._latest.restore(9, args=args)["state"]
        except Exception:  # noqa: BLE001 - an unreadable flip is fine too
            raw = None
        if raw is not None:
            good = ck0._latest.restore(9, args=args)["state"]
            assert not all(np.array_equal(x, y) for x, y in
                           zip(jax.tree.leaves(_host(raw)), jax.tree.leaves(_host(good))))
        with pytest.raises(CheckpointError, match="damaged: checksum mismatch in file state/"):
            ck.restore(9, run.abstract_state)
    finally:
        ck.close()
        ck0.close()


def test_unreadable_checkpoint_is_one_short_reason(runs, tmp_path):
    """Garbage that orbax must read itself (no file manifest): its error becomes the reason."""
    _, stopped, run, _ = runs
    wd = tmp_path / "run"
    shutil.copytree(stopped, wd)
    (wd / "checkpoints/9" / MANIFEST).unlink()
    _garbage(wd / "checkpoints/9")
    with pytest.raises(CheckpointError, match=r"checkpoints/9 is damaged: unreadable \(") as e:
        load_params(run, wd, "9")
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_no_intact_checkpoint_is_a_clear_error_and_changes_nothing(runs, tmp_path):
    _, stopped, _, _ = runs
    wd = tmp_path / "run"
    shutil.copytree(stopped, wd)
    _garbage(wd / "checkpoints/9")
    _empty(wd / "checkpoints/6")
    before = _snapshot(wd)
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in \S+/checkpoints: step 9: "
                       r"checksum mismatch in file state/\S+; step 6: empty step folder\. "
                       r"Nothing in the workdir was changed"):
        _resume(wd)
    assert _snapshot(wd) == before  # config.yaml, metrics.jsonl, best/, no renames, no lock


def test_load_params_falls_back_with_a_warning_and_changes_nothing(runs, tmp_path, capsys):
    ref, stopped, run, _ = runs
    wd = tmp_path / "run"
    shutil.copytree(stopped, wd)
    shutil.copytree(ref / "best/12", wd / "best/12")   # best/6 and best/12, as after a kill
    good6, _ = load_params(run, stopped, "best")
    _flip(wd / "best/12")
    before = _snapshot(wd)
    capsys.readouterr()
    params, step = load_params(run, wd, "best")        # the newest intact best
    assert step == 6
    _assert_equal_trees(_host(good6), _host(params))
    assert "skipping checkpoint best/12" in capsys.readouterr().err
    _garbage(wd / "best/6")
    params, step = load_params(run, wd, "best")        # no intact best: the latest checkpoint
    err = capsys.readouterr().err
    assert step == 9 and "no intact best checkpoint" in err and "best/6" in err
    ck = Checkpoints(stopped)
    state9 = _host(ck.restore(9, run.abstract_state))
    ck.close()
    _assert_equal_trees(eval_params(state9), _host(params))
    _truncate(wd / "checkpoints/9")
    params, step = load_params(run, wd, "latest")
    assert step == 6 and "skipping checkpoint checkpoints/9" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=r"checkpoints/9 is damaged: file state/\S+ trunc"):
        load_params(run, wd, "9")
    _empty(wd / "checkpoints/6")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        load_params(run, wd, "best")
    # a read-only look: nothing moved or rewritten but what the test itself damaged
    after = _snapshot(wd)
    assert {k for k in after if ".corrupt" in k} == set()
    assert after["config.yaml"] == before["config.yaml"]


def test_resume_of_a_finished_run_repairs_best_and_metrics(runs, tmp_path, capsys):
    """best/12 damaged in a finished run: rewritten from the verified checkpoint 12; a garbage
    line in the middle of metrics.jsonl and a torn last line are dropped, every valid record
    kept."""
    ref, _, run, _ = runs
    wd = tmp_path / "run"
    shutil.copytree(ref, wd)
    _garbage(wd / "best/12")
    lines = (ref / "metrics.jsonl").read_text().splitlines(keepends=True)
    (wd / "metrics.jsonl").write_text("".join(lines[:2]) + "{not json\n" + "".join(lines[2:])
                                      + '{"step": 13, "spl')
    capsys.readouterr()
    _resume(wd)
    err = capsys.readouterr().err
    assert "skipping checkpoint best/12" in err and "rewrote best/12" in err
    assert "skipped 2 malformed line(s): 3, " in err and "incomplete" in err
    _check_like_reference(runs, wd)


# --------------------------------------------------------------------------- metrics.jsonl

def test_metrics_malformed_lines_are_skipped_not_the_rest(tmp_path, capsys):
    recs = [f'{{"step": {s}, "split": "train", "loss": {1.0 / s}}}\n' for s in range(1, 7)]
    text = "".join(recs[:2]) + "garbage \x00\n" + "".join(recs[2:4]) + "[1, 2]\n" + \
        '{"split": "dev"}\n' + "".join(recs[4:]) + '{"step": 7, "split": "tr'
    (tmp_path / "metrics.jsonl").write_text(text)
    got = read_metrics(tmp_path)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    err = capsys.readouterr().err
    assert "skipped 4 malformed line(s): 3, 6, 7, 10" in err and "kept the 6 valid" in err
    truncate_metrics(tmp_path, 4)        # says again what it drops
    assert "skipped 4 malformed" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(recs[:4])
    assert read_metrics(tmp_path) == got[:4] and capsys.readouterr().err == ""


# --------------------------------------------------------------------------- NaN stop

def test_nonfinite_stop_names_a_verified_checkpoint(tmp_path, monkeypatch):
    from tests.test_train import nan_experiment_config
    cfg_file = nan_experiment_config(tmp_path, monkeypatch, data="{nan_from: 13}")
    save = Checkpoints.save

    def save_then_damage(self, step, state, extra=None):  # checkpoint 10 rots on disk
        save(self, step, state, extra)
        if step == 10:
            _flip(tmp_path / "run/checkpoints/10")
    monkeypatch.setattr(Checkpoints, "save", save_then_damage)
    with pytest.raises(NonFiniteLossError, match=r"train step 13 .*last good checkpoint is "
                                                 r"step 5 .*verified"):
        train_and_evaluate(load_config(cfg_file), tmp_path / "run")


# --------------------------------------------------------------------------- workdir lock

TINY = ["train.steps=2", "train.checkpoint_every=2", "train.eval_every=2", "train.log_every=2"]


def test_second_trainer_is_refused_and_writes_nothing(tmp_path):
    wd = tmp_path / "new"
    wd.mkdir()
    with WorkdirLock(wd):
        with pytest.raises(WorkdirLockedError, match=rf"in use by another trainer: pid "
                           rf"{os.getpid()} on host {socket.gethostname()}"):
            train_and_evaluate(load_config("charlm_tiny", TINY), wd)
        assert sorted(os.listdir(wd)) == [".lock"]  # no config.yaml, no checkpoints
    assert os.listdir(wd) == []


def test_lock_of_a_killed_trainer_is_taken_over(tmp_path, capsys):
    wd = tmp_path / "run"
    wd.mkdir()
    holder = ("import importlib.util, sys, time\n"
              "spec = importlib.util.spec_from_file_location('lock', sys.argv[1])\n"
              "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
              "m.WorkdirLock(sys.argv[2]).acquire(); print('locked', flush=True)\n"
              "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(ROOT / "jaxrnn/train/lock.py"),
                             str(wd)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert WorkdirLock(wd).in_use()                       # a live holder
        cfg = load_config("charlm_tiny", TINY)
        with pytest.raises(WorkdirLockedError, match=rf"pid {proc.pid} on host "):
            train_and_evaluate(cfg, wd)
    finally:
        proc.kill()
        proc.wait()
    capsys.readouterr()
    assert (wd / ".lock").exists() and not WorkdirLock(wd).in_use()   # its holder is dead
    train_and_evaluate(cfg, wd)          # its lock is stale now
    err = capsys.readouterr().err
    assert f"took over the stale lock of {wd}: it was held by pid {proc.pid}" in err
    assert f"process {proc.pid} is not running" in err
    assert not (wd / ".lock").exists() and (wd / "checkpoints/2").is_dir()


def test_lock_of_another_host_is_not_broken(tmp_path):
    import json
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.example",
                                                "started": "2024-01-01T00:00:00"}))
    with pytest.raises(WorkdirLockedError, match=r"pid 1 on host elsewhere.example.*another "
                       r"host, so it is not broken automatically.*delete \S+\.lock"):
        WorkdirLock(tmp_path).acquire()
    assert WorkdirLock(tmp_path).in_use()          # nothing here can tell it is gone
    (tmp_path / "nothing").mkdir()
    assert not WorkdirLock(tmp_path / "nothing").in_use()
    with WorkdirLock(tmp_path / "nothing") as mine:
        assert not mine.in_use()                   # our own lock does not count
        assert WorkdirLock(tmp_path / "nothing").in_use()


def test_only_one_of_several_racing_trainers_gets_the_lock(tmp_path):
    racer = ("import importlib.util, sys, time\n"
             "spec = importlib.util.spec_from_file_location('lock', sys.argv[1])\n"
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
             "while time.time() < float(sys.argv[3]): pass\n"
             "try:\n"
             "    m.WorkdirLock(sys.argv[2]).acquire(); print('ok', flush=True); time.sleep(2)\n"
             "except m.WorkdirLockedError:\n"
             "    print('refused', flush=True)\n")
    go = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(ROOT / "jaxrnn/train/lock.py"),
                               str(tmp_path), str(go)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["ok", "refused", "refused", "refused"], outs
