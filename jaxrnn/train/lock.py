"""A lock on a run folder, so that one trainer at a time writes it.

``workdir/.lock`` holds the holder's pid, host, start time and command line (JSON). It is
created atomically: the content is written to a private file first, which is then hard-linked
to ``.lock`` (the link fails if ``.lock`` exists, and a reader never sees a half-written lock);
on a file system without hard links, ``open(O_CREAT | O_EXCL)`` is used instead.

A lock is *stale* when its holder is gone: on the same host, the pid is not running (or is a
zombie, or is another process that reused the pid: its start time differs), or the machine was
rebooted since (the boot id differs). A stale lock is taken over with a warning. A lock taken on
another host is never broken automatically (its process cannot be checked from here): the error
names the host and pid and says to delete the file once that trainer is known to be gone.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

__all__ = ["LOCK_FILE", "WorkdirLock", "WorkdirLockedError"]

LOCK_FILE = ".lock"
_BREAK_TIMEOUT_S = 30.0


class WorkdirLockedError(RuntimeError):
    """Another trainer holds the workdir's lock (the message names its pid and host)."""


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def _boot_id() -> Optional[str]:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> Optional[tuple[str, str]]:
    """``(state, start time)`` of a process from ``/proc`` (Linux), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], fields[19]


def _alive(pid: int, start: Optional[str]) -> bool:
    """Whether ``pid`` is running and (if known) is the process that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return start is None or started == start


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')!s}, started "
            f"{holder.get('started', '?')}" + (f" ({holder['command']})" if holder.get("command")
                                              else ""))


class WorkdirLock:
    """``with WorkdirLock(workdir): ...`` holds ``workdir/.lock``; also ``acquire()`` /
    ``release()``. The folder must exist."""

    def __init__(self, workdir, *, warn=None):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.token: Optional[str] = None
        self._warn = warn or (lambda m: print(f"jaxrnn: warning: {m}", file=sys.stderr,
                                              flush=True))

    # ------------------------------------------------------------------ content
    def _content(self) -> dict:
        stat = _proc_stat(os.getpid())
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:300], "boot_id": _boot_id(),
                "proc_start": stat[1] if stat else None, "token": uuid.uuid4().hex}

    def holder(self) -> Optional[dict]:
        """The lock's content; None if there is no lock; ``{}`` if it is unreadable."""
        text = _read_text(self.path)
        if text is None:
            return None
        try:
            d = json.loads(text)
            return d if isinstance(d, dict) else {}
        except ValueError:
            return {}

    def _stale(self, holder: dict) -> Optional[str]:
        """Why the holder is gone, or None if it may be alive (or cannot be checked)."""
        if holder.get("host") != socket.gethostname():
            return None
        boot = _boot_id()
        if holder.get("boot_id") and boot and holder["boot_id"] != boot:
            return "the machine was restarted since"
        try:
            pid = int(holder["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        if not _alive(pid, holder.get("proc_start")):
            return f"process {pid} is not running"
        return None

    # ------------------------------------------------------------------ acquire / release
    def _create(self, content: dict) -> bool:
        """Creates the lock atomically; False if it exists."""
        data = json.dumps(content, indent=1) + "\n"
        tmp = self.workdir / f"{LOCK_FILE}.{content['token']}.tmp"
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as e:  # no hard links here: O_EXCL
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                               errno.EMLINK):
                raise
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _break(self, holder: dict) -> bool:
        """Removes the stale lock ``holder`` if it is still the one there (under a breaker
        lock, so that two trainers breaking it at once cannot remove each other's new lock)."""
        brk = self.workdir / f"{LOCK_FILE}.break"
        deadline = time.monotonic() + 10
        while True:
            try:
                fd = os.open(brk, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.close(fd)
                break
            except FileExistsError:
                try:
                    if time.time() - brk.stat().st_mtime > _BREAK_TIMEOUT_S:
                        brk.unlink(missing_ok=True)  # its breaker died in between
                        continue
                except FileNotFoundError:
                    continue
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        try:
            if self.holder() == holder:
                self.path.unlink(missing_ok=True)
            return True
        finally:
            brk.unlink(missing_ok=True)

    def acquire(self) -> "WorkdirLock":
        content = self._content()
        unreadable_since = None
        for _ in range(200):
            if self._create(content):
                self.token = content["token"]
                return self
            holder = self.holder()
            if holder is None:
                continue  # released in between
            if not holder:
                # unreadable (written by hand, or by a non-atomic writer): wait a little
                unreadable_since = unreadable_since or time.monotonic()
                if time.monotonic() - unreadable_since < 2:
                    time.sleep(0.1)
                    continue
                raise WorkdirLockedError(
                    f"workdir {self.workdir} is locked ({self.path} exists but is unreadable); "
                    f"if no trainer is running on it, delete {self.path}")
            why = self._stale(holder)
            if why is None:
                msg = f"workdir {self.workdir} is in use by another trainer: {_describe(holder)}. "
                if holder.get("host") != socket.gethostname():
                    msg += ("The lock was taken on another host, so it is not broken "
                            "automatically. ")
                raise WorkdirLockedError(
                    msg + f"Wait for that run to finish or use another --workdir; if it is "
                    f"gone, delete {self.path}.")
            if self._break(holder):
                self._warn(f"took over the stale lock of {self.workdir}: it was held by "
                           f"{_describe(holder)}, and {why}")
        raise WorkdirLockedError(f"could not lock workdir {self.workdir} ({self.path})")

    def release(self) -> None:
        """Removes the lock if it is still this one's."""
        if self.token is None:
            return
        holder = self.holder()
        if holder and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None

    @property
    def held(self) -> bool:
        return self.token is not None

    def in_use(self) -> bool:
        """Whether another process may be working in the folder: a lock is there, it is not
        this one's, and its holder is not known to be gone (a lock left by a dead process on
        this host does not count; one from another host always does)."""
        holder = self.holder()
        if holder is None or (self.token is not None and holder.get("token") == self.token):
            return False
        return self._stale(holder) is None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
