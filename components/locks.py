"""Exclusive locks on directories, so two pushes or two pipeline runs cannot overlap.

A lock is ``fcntl.flock`` on ``<dir>/.mnist-tfx.lock``: the kernel drops it when its holder exits,
however it exits, so a crashed holder never leaves a lock behind. The name is not a number, so TF
Serving (and ``mnist-tfx serve``) never take the file for a model version. While held, the file
names its holder (pid, host, start time, what it does) for the message a second comer gets.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE_NAME = ".mnist-tfx.lock"
_POLL_S = 0.05
_MAX_HOLDER_BYTES = 4096  # what is read back of a holder's note


class LockHeldError(RuntimeError):
    """The directory is locked by another holder; the message names it."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(fd: int) -> str:
    """The note of the current holder, as words for an error message."""
    try:
        note = json.loads(os.pread(fd, _MAX_HOLDER_BYTES, 0))
        return f"pid {note['pid']} on {note['host']} since {note['started']} ({note['purpose']})"
    except (OSError, ValueError, KeyError, TypeError):  # a holder that has not written its note yet
        return "another process (which has not yet said who it is)"


@contextlib.contextmanager
def hold(directory: str | os.PathLike, purpose: str, *, timeout_s: float = 0.0) -> Iterator[Path]:
    """Hold the lock of ``directory`` (created if missing) for the ``with`` block.

    Waits up to ``timeout_s`` for another holder to finish (0: do not wait), then raises
    :class:`LockHeldError` naming that holder. ``purpose`` says what the holder does, for that message.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" (waited {timeout_s:g} s)" if timeout_s else ""
                    raise LockHeldError(f"{directory}: in use by {_holder(fd)}{waited}") from None
            time.sleep(_POLL_S)
        note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "purpose": purpose,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(note).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # still held: nobody reads a note of a holder that is gone
    finally:
        os.close(fd)  # releases the lock
