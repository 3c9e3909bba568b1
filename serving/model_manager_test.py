"""Tests of serving.model_manager: config parsing, version policies and the lifecycle of
real SavedModel versions (TF Serving's half_plus_two fixture) under a temporary base path."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from serving.model_config import MAX_MODELS, LoadRetries, ModelConfig, parse_model_server_config
from serving.model_manager import ModelManager, State, list_versions
from serving.servable import Servable
from serving.status import Code, ServingError
from tests.serving_conftest_helpers import FIXTURES

HALF_PLUS_TWO = FIXTURES / "saved_model_half_plus_two_cpu" / "00000123"
HALF_PLUS_THREE = FIXTURES / "saved_model_half_plus_three" / "00000123"
NO_RETRIES = LoadRetries(max_num_load_retries=0)


def test_parse_model_server_config():
    models = parse_model_server_config("""
        model_config_list {
          config { name: "a" base_path: "/m/a" model_platform: "tensorflow" }
          config { name: "b" base_path: "/m/b"
                   model_version_policy { specific { versions: 1 versions: 3 } }
                   version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 3 } }
          config { name: "c" base_path: "/m/c" model_version_policy { all {} } }
          config { name: "d" base_path: "/m/d" model_version_policy { latest { num_versions: 2 } } }
        }""")
    assert models == [
        ModelConfig("a", "/m/a"),
        ModelConfig("b", "/m/b", "specific", versions=frozenset({1, 3}), labels=(("canary", 3), ("stable", 1))),
        ModelConfig("c", "/m/c", "all"),
        ModelConfig("d", "/m/d", "latest", num_versions=2),
    ]


@pytest.mark.parametrize(
    "text, wording",
    [
        (
            "model_config_list { config { name: 'a' base_path: '/a' } } nonsense",
            "Error parsing text-format tensorflow.serving.ModelServerConfig",
        ),
        ("custom_model_config {}", "must contain a model_config_list"),
        ("model_config_list {}", "lists no models"),
        ("model_config_list { config { name: 'a' } }", "needs a name and a base_path"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tflite' } }",
            "unsupported model_platform",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }",
            "Illegal to list model a multiple times in config list",
        ),
        (
            "model_config_list { config { name: 'a' base_path: 'relative/a' } }",
            "Expected model a to have an absolute path or URI; got base_path\\(\\)=relative/a",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' " "model_version_policy { specific {} } } }",
            "lists no versions",
        ),
        (
            "model_config_list { " + "config { name: 'a' base_path: '/a' } " * (MAX_MODELS + 1) + "}",
            f"may list at most {MAX_MODELS} models; got {MAX_MODELS + 1}",
        ),
    ],
)
def test_parse_model_server_config_errors(text, wording):
    with pytest.raises(ValueError, match=wording):
        parse_model_server_config(text)


def test_version_policies():
    on_disk = [1, 2, 5, 7]
    assert ModelConfig("m", "/").aspired(on_disk) == {7}
    assert ModelConfig("m", "/", num_versions=2).aspired(on_disk) == {5, 7}
    assert ModelConfig("m", "/", "all").aspired(on_disk) == {1, 2, 5, 7}
    assert ModelConfig("m", "/", "specific", versions=frozenset({2, 9})).aspired(on_disk) == {2}


def test_list_versions_ignores_non_numeric_and_temporary(tmp_path):
    for name in (
        "1",
        "00000002",
        ".tmp-3",
        "tmp",
        "4a",
        "-5",
        "٣",
        "9223372036854775808",
        "9" * 250,
        "0000009223372036854775807",
    ):
        (tmp_path / name).mkdir()
    (tmp_path / "6").write_text("a file, not a version")
    assert sorted(list_versions(str(tmp_path))) == [1, 2, 2**63 - 1]
    assert list_versions(str(tmp_path / "missing")) == {}


def push(base: Path, version: int) -> Path:
    target = base / str(version)
    shutil.copytree(HALF_PLUS_TWO, target)
    return target


def states(manager: ModelManager, name: str = "m") -> dict[int, int]:
    return {v: s.state for v, s in manager.version_status(name).items()}


def test_lifecycle_latest_policy(tmp_path):
    push(tmp_path, 1)
    manager = ModelManager(
        [ModelConfig("m", str(tmp_path), labels=(("stable", 1),))],
        Servable,
        poll_wait_seconds=0,
        retries=NO_RETRIES,
        allow_version_labels_for_unavailable_models=True,
    )
    manager.start()
    try:
        assert states(manager) == {1: State.AVAILABLE}
        assert manager.get_servable("m").version == 1
        assert manager.get_servable("m", label="stable").version == 1

        push(tmp_path, 2)
        (tmp_path / ".tmp-3").mkdir()  # a push in progress is invisible
        manager.poll_once()
        assert states(manager) == {2: State.AVAILABLE, 1: State.END}
        assert manager.get_servable("m").version == 2
        with pytest.raises(ServingError, match=r"Servable not found for request: Specific\(m, 1\)"):
            manager.get_servable("m", version=1)

        broken = tmp_path / "3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        manager.poll_once()
        status = manager.version_status("m")
        assert status[3].state == State.END and status[3].error is not None
        assert manager.get_servable("m").version == 2, "a broken version must not stop serving"

        manager.poll_once()  # unchanged broken directory: not retried
        assert manager.version_status("m")[3].error is not None
        shutil.rmtree(broken)
        shutil.copytree(HALF_PLUS_TWO, broken)  # fixed in place: retried and loaded
        manager.poll_once()
        assert states(manager) == {3: State.AVAILABLE, 2: State.END, 1: State.END}
        assert manager.version_status("m")[3].error is None
    finally:
        manager.stop()
    assert states(manager)[3] == State.END


def test_specific_policy_and_lookup_errors(tmp_path):
    push(tmp_path, 1)
    push(tmp_path, 2)
    manager = ModelManager(
        [ModelConfig("m", str(tmp_path), "specific", versions=frozenset({1}))],
        Servable,
        poll_wait_seconds=0,
        retries=NO_RETRIES,
    )
    manager.start()
    try:
        assert states(manager) == {1: State.AVAILABLE}
        assert manager.get_servable("m").version == 1
        with pytest.raises(ServingError) as caught:
            manager.get_servable("m", label="nope")
        assert (caught.value.code, caught.value.message) == (
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        )
        with pytest.raises(ServingError, match=r"Latest\(other\)"):
            manager.get_servable("other")
        with pytest.raises(ServingError, match="Could not find version 2 of model m"):
            manager.version_status("m", 2)
        with pytest.raises(ServingError, match="Could not find any versions of model other"):
            manager.version_status("other")
    finally:
        manager.stop()


def test_missing_base_path_serves_nothing_until_a_version_appears(tmp_path):
    manager = ModelManager([ModelConfig("m", str(tmp_path / "m"))], Servable, poll_wait_seconds=0, retries=NO_RETRIES)
    manager.start()
    try:
        with pytest.raises(ServingError, match="Could not find any versions"):
            manager.version_status("m")
        push(tmp_path / "m", 5)
        manager.poll_once()
        assert states(manager) == {5: State.AVAILABLE}
    finally:
        manager.stop()


# ------------------------------------------------------------ hardening (issue 13, items 5 and 7)


def test_version_beyond_int64_is_ignored_and_status_stays_answerable(tmp_path, caplog):
    push(tmp_path, 1)
    huge = tmp_path / "99999999999999999999"
    shutil.copytree(HALF_PLUS_TWO, huge)
    manager = ModelManager([ModelConfig("m", str(tmp_path))], Servable, poll_wait_seconds=0, retries=NO_RETRIES)
    manager.start()
    try:
        assert states(manager) == {1: State.AVAILABLE}, "the good version must keep serving"
        assert manager.get_servable("m").version == 1
        manager.poll_once()
        assert sum("does not fit an int64" in r.getMessage() for r in caplog.records) == 1
        shutil.rmtree(huge)
        manager.poll_once()
        assert states(manager) == {1: State.AVAILABLE}
    finally:
        manager.stop()


@pytest.mark.timeout(120)
def test_fifo_in_a_version_fails_that_version_without_blocking_the_poller(tmp_path):
    push(tmp_path, 1)
    fifo_version = push(tmp_path, 2)
    (fifo_version / "saved_model.pb").unlink()
    os.mkfifo(fifo_version / "saved_model.pb")
    manager = ModelManager([ModelConfig("m", str(tmp_path), "all")], Servable, poll_wait_seconds=0, retries=NO_RETRIES)
    manager.start()
    try:
        status = manager.version_status("m")
        assert status[1].state == State.AVAILABLE
        assert status[2].state == State.END
        assert status[2].error.code == Code.FAILED_PRECONDITION
        assert "saved_model.pb in version 2 of model m is not a regular file" in status[2].error.message
    finally:
        manager.stop()


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_stop_returns_while_a_load_hangs(tmp_path):
    """A load stuck on a hung filesystem (here: held on an event) must not hang shutdown."""
    release = threading.Event()

    def load_hanging_on_version_2(name: str, version: int, path: str) -> Servable:
        if version == 2:
            release.wait(120)
        return Servable(name, version, path)

    push(tmp_path, 1)
    manager = ModelManager(
        [ModelConfig("m", str(tmp_path))], load_hanging_on_version_2, poll_wait_seconds=0.05, retries=NO_RETRIES
    )
    others = set(threading.enumerate())  # other tests' servers in this process have pollers of their own
    manager.start()
    [poller] = [t for t in threading.enumerate() if t not in others and t.name == "model-poller"]
    try:
        push(tmp_path, 2)
        wait_for(lambda: states(manager).get(2) == State.LOADING)
        stopper = threading.Thread(target=manager.stop)
        stopper.start()
        stopper.join(60)
        assert not stopper.is_alive(), "stop() must not wait for a hung load"
    finally:
        release.set()
    wait_for(lambda: not poller.is_alive())
    assert manager.loaded_versions() == {"m": []}, "a load finishing after stop is dropped"


# ------------------------------------------------------------ retries (issue 11, item 2)


class CountingLoad:
    """Servable loads, counted; the first `failures` attempts of each version raise (a flaky disk)."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: dict[int, int] = {}
        self.failures = failures

    def __call__(self, name: str, version: int, path: str) -> Servable:
        self.calls[version] = self.calls.get(version, 0) + 1
        if self.calls[version] <= self.failures:
            raise ServingError(Code.UNAVAILABLE, "transient read error")
        return Servable(name, version, path)


def test_failed_load_is_retried_max_num_load_retries_times_then_ends(tmp_path):
    broken = tmp_path / "1"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    load = CountingLoad()
    manager = ModelManager(
        [ModelConfig("m", str(tmp_path))],
        load,
        poll_wait_seconds=0,
        retries=LoadRetries(max_num_load_retries=2, load_retry_interval_micros=10_000),
    )
    manager.start()
    try:
        assert states(manager) == {1: State.LOADING}, "TF Serving shows LOADING while it retries"
        wait_for(lambda: states(manager) == {1: State.END})
        assert load.calls == {1: 3}, "one attempt and max_num_load_retries retries"
        assert manager.version_status("m")[1].error.code == Code.DATA_LOSS
        time.sleep(0.1)
        manager.poll_once()
        assert load.calls == {1: 3}, "no attempts after the retries are exhausted"
    finally:
        manager.stop()


def test_transient_load_failure_recovers_on_retry(tmp_path):
    push(tmp_path, 1)
    load = CountingLoad(failures=1)
    manager = ModelManager(
        [ModelConfig("m", str(tmp_path))],
        load,
        poll_wait_seconds=0,
        retries=LoadRetries(max_num_load_retries=1, load_retry_interval_micros=-1),
    )
    manager.start()
    try:
        wait_for(lambda: states(manager) == {1: State.AVAILABLE})
        assert load.calls == {1: 2}
        assert manager.version_status("m")[1].error is None
    finally:
        manager.stop()


# ------------------------------------------------------------ config reload (issue 11, item 2)


def test_labels_on_unavailable_versions_need_the_flag_at_start(tmp_path):
    push(tmp_path, 1)
    config = ModelConfig("m", str(tmp_path), labels=(("stable", 1),))
    manager = ModelManager([config], Servable, poll_wait_seconds=0, retries=NO_RETRIES)
    with pytest.raises(ServingError) as caught:
        manager.start()
    manager.stop()
    assert (caught.value.code, caught.value.message) == (
        Code.FAILED_PRECONDITION,
        "Request to assign label to version 1 of model m, which is not currently available for inference",
    )


def test_reload_config_adds_removes_and_relabels_models(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    push(a, 1)
    push(a, 2)
    push(b, 7)
    only_1 = ModelConfig("a", str(a), "specific", versions=frozenset({1}))
    both = ModelConfig("a", str(a), "specific", versions=frozenset({1, 2}))
    manager = ModelManager([only_1], Servable, poll_wait_seconds=0, retries=NO_RETRIES)
    manager.start()
    try:
        labelled = dataclasses.replace(both, labels=(("canary", 2), ("stable", 1)))
        with pytest.raises(ServingError, match="assign label to version 2 of model a, which is not"):
            manager.reload_config([labelled])
        assert states(manager, "a") == {1: State.AVAILABLE}, "a refused config changes nothing"

        manager.reload_config([both])
        assert states(manager, "a") == {2: State.AVAILABLE, 1: State.AVAILABLE}
        manager.reload_config([labelled])
        assert manager.get_servable("a", label="canary").version == 2

        manager.reload_config([labelled, ModelConfig("b", str(b))])
        assert manager.model_names == ["a", "b"] and manager.get_servable("b").version == 7

        manager.reload_config([ModelConfig("b", str(b))])
        assert manager.model_names == ["b"]
        assert states(manager, "a") == {2: State.END, 1: State.END}
        with pytest.raises(ServingError, match=r"Latest\(a\)"):
            manager.get_servable("a")
        with pytest.raises(ServingError, match="Unrecognized servable version label: canary"):
            manager.get_servable("a", label="canary")

        with pytest.raises(ServingError) as caught:
            manager.reload_config([ModelConfig("b", str(b)), ModelConfig("c", str(tmp_path / "none"))])
        assert caught.value.code == Code.UNKNOWN
        assert caught.value.message.startswith("1 model(s) did not become available: {{{name: c")
    finally:
        manager.stop()


def test_allow_version_labels_for_unavailable_models_only_for_new_labels(tmp_path):
    push(tmp_path, 1)
    push(tmp_path, 2)
    base = ModelConfig("m", str(tmp_path), "specific", versions=frozenset({1}))
    manager = ModelManager(
        [dataclasses.replace(base, labels=(("stable", 1),))],
        Servable,
        poll_wait_seconds=0,
        retries=NO_RETRIES,
        allow_version_labels_for_unavailable_models=True,
    )
    manager.start()
    try:
        manager.reload_config([dataclasses.replace(base, labels=(("next", 2), ("stable", 1)))])
        assert manager.resolve_label("m", "next") == 2
        with pytest.raises(ServingError, match="Servable not found for request: Specific\\(m, 2\\)"):
            manager.get_servable("m", label="next")
        with pytest.raises(ServingError, match="assign label to version 2 of model m"):
            manager.reload_config([dataclasses.replace(base, labels=(("next", 2), ("stable", 2)))])
    finally:
        manager.stop()


def test_replaced_model_keeps_answering_until_its_successor_is_available(tmp_path):
    """A new base path for a model: the old version serves until the new one is AVAILABLE."""
    release = threading.Event()

    def load_held_for_version_5(name: str, version: int, path: str) -> Servable:
        if version == 5:
            release.wait(120)
        return Servable(name, version, path)

    old, new = tmp_path / "old", tmp_path / "new"
    push(old, 1)
    push(new, 5)
    manager = ModelManager(
        [ModelConfig("m", str(old))], load_held_for_version_5, poll_wait_seconds=0, retries=NO_RETRIES
    )
    manager.start()
    reload = threading.Thread(target=manager.reload_config, args=([ModelConfig("m", str(new))],))
    try:
        reload.start()
        wait_for(lambda: states(manager).get(5) == State.LOADING)
        assert manager.get_servable("m").version == 1
        assert states(manager)[1] == State.AVAILABLE
        release.set()
        reload.join(60)
        assert states(manager) == {5: State.AVAILABLE, 1: State.END}
        assert manager.get_servable("m").version == 5
    finally:
        release.set()
        reload.join(60)
        manager.stop()


def test_status_history_keeps_the_newest_ended_versions_only():
    from serving.model_manager import MAX_ENDED_VERSIONS, VersionStatus, _Model

    model = _Model(ModelConfig("m", "/m"))
    model.set_status(10_000, VersionStatus(State.AVAILABLE))
    for version in range(MAX_ENDED_VERSIONS + 50):
        model.set_status(version, VersionStatus(State.END))
    ended = [v for v, s in model.status.items() if s.state == State.END]
    assert sorted(ended) == list(range(50, MAX_ENDED_VERSIONS + 50))
    assert model.status[10_000].state == State.AVAILABLE, "only END entries are dropped"
