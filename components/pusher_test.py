import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from components import locks, pusher

REPO = Path(__file__).resolve().parents[1]


def _model(tmp_path: Path, content: bytes = b"graph", name: str = "model", files: int = 0) -> Path:
    model = tmp_path / name
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(content)
    (model / "variables" / "variables.index").write_bytes(b"index")
    for i in range(files):  # many files: a copy long enough for two pushes to overlap
        (model / "assets" / str(i % 7)).mkdir(parents=True, exist_ok=True)
        (model / "assets" / str(i % 7) / f"{i}.bin").write_bytes(content * 64 + str(i).encode())
    return model


def _entries(base: Path) -> list[str]:
    """What is in the base directory, besides the lock file the pusher keeps there."""
    return sorted(p.name for p in base.iterdir() if p.name != locks.LOCK_FILE_NAME)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_push_creates_a_numeric_version_with_the_model_files(tmp_path: Path) -> None:
    base = tmp_path / "serving" / "mnist"
    version, written = pusher.push_atomically(_model(tmp_path), base)
    assert written and _entries(base) == [str(version)]
    assert (base / str(version) / "variables" / "variables.index").read_bytes() == b"index"
    assert pusher.numeric_versions(base) == [version]  # the lock file is never a version


def test_unchanged_model_is_not_pushed_twice_but_a_new_one_gets_a_higher_version(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    model = _model(tmp_path)
    first, _ = pusher.push_atomically(model, base)
    again, written = pusher.push_atomically(model, base)
    assert (again, written) == (first, False)
    (model / "saved_model.pb").write_bytes(b"retrained")
    newer, written = pusher.push_atomically(model, base)
    assert written and newer > first
    assert pusher.numeric_versions(base) == [first, newer]


def test_versions_stay_unique_within_one_second_and_ignore_non_int64_names(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    (base / "99999999999999999999").mkdir(parents=True)  # beyond int64: TF Serving ignores it
    (base / "٣").mkdir()  # a digit, but not ASCII
    model = _model(tmp_path)
    versions = []
    for i in range(5):  # faster than one per second
        (model / "saved_model.pb").write_bytes(b"graph %d" % i)
        versions.append(pusher.push_atomically(model, base)[0])
    assert versions == sorted(set(versions)) and versions[-1] <= pusher.MAX_VERSION
    assert pusher.numeric_versions(base) == versions


def test_interrupted_push_leaves_no_version_directory(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    model = _model(tmp_path)
    os.mkfifo(model / "variables" / "variables.data-00000-of-00001")  # copying it fails midway
    with pytest.raises(shutil.Error, match="named pipe"):
        pusher.push_atomically(model, base)
    assert _entries(base) == []  # neither a version nor its staging directory


def test_staging_of_a_push_that_is_gone_is_cleared_but_a_live_one_is_kept(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    dead = base / f".tmp-123-{_dead_pid()}-0badf00d"
    old_style = base / f".tmp-124-{_dead_pid()}"  # named by the previous pusher
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live_process:
        try:
            live = base / f".tmp-125-{live_process.pid}-c0ffee00"
            for staging in (dead, old_style, live):
                staging.mkdir(parents=True)
                (staging / "saved_model.pb").write_bytes(b"half")
            assert pusher.numeric_versions(base) == []
            version, _ = pusher.push_atomically(_model(tmp_path), base)
            assert _entries(base) == sorted([str(version), live.name])
            assert (live / "saved_model.pb").read_bytes() == b"half"
        finally:
            live_process.kill()
    pusher.push_atomically(_model(tmp_path, b"next", name="next"), base)
    assert not live.exists()  # its process is gone now


def test_two_overlapping_pushes_both_publish_distinct_complete_versions(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    models = [_model(tmp_path, b"model %d" % i, name=f"model{i}", files=300) for i in range(2)]
    start = threading.Barrier(2)
    results: dict[int, tuple[int, bool]] = {}
    errors: list[BaseException] = []

    def push(i: int) -> None:
        start.wait()
        try:
            results[i] = pusher.push_atomically(models[i], base)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == 2
    versions = {results[i][0]: i for i in range(2)}
    assert len(versions) == 2 and all(written for _, written in results.values())
    assert _entries(base) == sorted(str(v) for v in versions)
    for version, i in versions.items():
        assert pusher.model_digest(base / str(version)) == pusher.model_digest(models[i])


def test_push_waits_for_a_push_held_by_another_process_and_gets_the_lock_when_it_dies(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    model = _model(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom components import locks\n"
            "with locks.hold(sys.argv[1], 'pushing a test model'):\n    print('held', flush=True)\n    time.sleep(60)",
            str(base),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(locks.LockHeldError) as e:
            pusher.push_atomically(model, base, lock_timeout_s=0.3)
        assert str(e.value).startswith(f"{base}: in use by pid {holder.pid} on ")
        assert str(e.value).endswith("(pushing a test model) (waited 0.3 s)")
        assert _entries(base) == []
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock
        holder.wait()
        holder.stdout.close()
    version, written = pusher.push_atomically(model, base, lock_timeout_s=0.3)
    assert written and _entries(base) == [str(version)]


def test_every_file_and_directory_is_flushed_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "mnist"
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: str, dst: str) -> None:
        events.append(("rename", str(src)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    version, _ = pusher.push_atomically(_model(tmp_path), base)
    renames = [i for i, (kind, _) in enumerate(events) if kind == "rename"]
    assert len(renames) == 1
    staging = events[renames[0]][1]
    flushed_before = {path for kind, path in events[: renames[0]] if kind == "fsync"}
    relative = ["", "saved_model.pb", "variables", "variables/variables.index"]
    assert flushed_before >= {os.path.join(staging, name).rstrip("/") for name in relative}
    assert ("fsync", str(base)) in events[renames[0] :]  # the rename itself made durable
    assert (base / str(version) / "saved_model.pb").read_bytes() == b"graph"
