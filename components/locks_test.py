"""Tests of the directory lock shared by the Pusher and `mnist-tfx run`."""

import os
import socket
import threading

import pytest

from components import locks


def test_second_holder_is_refused_with_the_first_named_and_gets_it_once_released(tmp_path):
    directory = tmp_path / "home"
    with locks.hold(directory, "running the pipeline") as path:
        assert path == directory / locks.LOCK_FILE_NAME and not path.name.isdigit()
        with pytest.raises(locks.LockHeldError) as e, locks.hold(directory, "a second run"):
            pytest.fail("entered a held lock")
        message = str(e.value)
        assert message.startswith(f"{directory}: in use by pid {os.getpid()} on {socket.gethostname()} since ")
        assert message.endswith(" (running the pipeline)")
    with locks.hold(directory, "a second run"):
        pass


def test_a_waiting_holder_gets_the_lock_when_the_first_releases_it(tmp_path):
    released = threading.Event()
    order = []

    def first() -> None:
        with locks.hold(tmp_path, "first"):
            held.set()
            released.wait(10)
            order.append("first done")

    held = threading.Event()
    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    threading.Timer(0.2, released.set).start()
    with locks.hold(tmp_path, "second", timeout_s=30):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def test_a_symlinked_lock_file_is_refused(tmp_path):
    (tmp_path / locks.LOCK_FILE_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError), locks.hold(tmp_path, "x"):
        pass
    assert not (tmp_path / "elsewhere").exists()
