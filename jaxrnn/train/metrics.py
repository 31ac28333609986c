"""Run metrics: ``metrics.jsonl`` (the record) and TensorBoard (for looking at).

``metrics.jsonl`` holds one JSON object a line: ``{"step": 100, "split": "train", "loss": ...}``.
It contains only numbers that are a function of the seed and the step (no wall-clock times), so an
interrupted and resumed run writes the same file as an uninterrupted one; timings go to
TensorBoard and the progress bar only.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["MetricsWriter", "read_metrics", "read_records", "truncate_metrics"]

METRICS_FILE = "metrics.jsonl"


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)


def _valid(rec) -> bool:
    return (isinstance(rec, dict) and isinstance(rec.get("step"), int)
            and not isinstance(rec.get("step"), bool) and isinstance(rec.get("split"), str))


def _line_list(nums: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in nums[:limit])
    return shown + (f" and {len(nums) - limit} more" if len(nums) > limit else "")


def read_records(workdir) -> tuple[list[dict], list[int], bool]:
    """``(records, malformed line numbers, whether the last line was cut)`` of
    ``workdir/metrics.jsonl``. A malformed line (not a JSON object with an integer ``step`` and a
    string ``split``) is skipped; the lines after it are kept."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return [], [], False
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = bool(lines) and lines[-1].strip() != b""  # no newline after the last line
    out, bad = [], []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            rec = None
        if _valid(rec):
            out.append(rec)
        else:
            bad.append(i)
    return out, bad, torn and bool(bad) and bad[-1] == len(lines)


def read_metrics(workdir, *, warn: bool = True) -> list[dict]:
    """Every valid record of ``workdir/metrics.jsonl``. Malformed lines (a line cut by a kill,
    garbage) are skipped, not the rest of the file, and named on stderr when ``warn``."""
    records, bad, torn = read_records(workdir)
    if bad and warn:
        what = _line_list(bad)
        if torn:
            what += " (the last line is incomplete, as a killed run leaves it)"
        print(f"jaxrnn: warning: {Path(workdir) / METRICS_FILE}: skipped {len(bad)} malformed "
              f"line(s): {what}; kept the {len(records)} valid records", file=sys.stderr,
              flush=True)
    return records


def truncate_metrics(workdir, last_step: int) -> None:
    """Rewrites ``metrics.jsonl`` with its valid records of ``step <= last_step`` (used when
    resuming from a checkpoint); malformed lines are dropped with a message."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return
    keep = [r for r in read_metrics(workdir) if r["step"] <= last_step]
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as f:
        for r in keep:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricsWriter:
    """Appends records to ``metrics.jsonl`` and mirrors them to TensorBoard.

    Args:
      workdir: the run folder.
      tensorboard: write TensorBoard events under ``workdir/tensorboard``.
      resume_step: when resuming, TensorBoard events after this step are purged.
      enabled: False on non-main processes of a multi-host run (they write nothing).
    """

    def __init__(self, workdir, *, tensorboard: bool = True, resume_step: Optional[int] = None,
                 enabled: bool = True):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self._tb = None
        self._file = None
        if not enabled:
            return
        self._file = open(self.workdir / METRICS_FILE, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter
            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(self.workdir / "tensorboard"), purge_step=purge)

    def write(self, step: int, split: str, metrics: dict) -> dict:
        rec = {"step": int(step), "split": split}
        rec.update({k: _clean(v) for k, v in metrics.items()})
        if not self.enabled:
            return rec
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), int(step))
        return rec

    def scalars(self, step: int, values: dict) -> None:
        """TensorBoard-only values (timings, learning rate), not part of the record."""
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, float(v), int(step))

    def sync(self) -> None:
        """Makes the records durable (called before each checkpoint)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def group(records: Iterable[dict]) -> dict:
    """``{split: {metric: ([steps], [values])}}`` from records."""
    out: dict = {}
    for r in records:
        split = r.get("split", "?")
        for k, v in r.items():
            if k in ("step", "split") or not isinstance(v, (int, float)):
                continue
            steps, vals = out.setdefault(split, {}).setdefault(k, ([], []))
            steps.append(r["step"])
            vals.append(v)
    return out
