"""Tests of serving.model_manager: config parsing, version policies and the lifecycle of
real SavedModel versions (TF Serving's half_plus_two fixture) under a temporary base path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serving.model_config import ModelConfig, parse_model_server_config
from serving.model_manager import ModelManager, State, list_versions
from serving.servable import Servable
from serving.status import Code, ServingError
from tests.serving_conftest_helpers import FIXTURES

HALF_PLUS_TWO = FIXTURES / "saved_model_half_plus_two_cpu" / "00000123"


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
        ModelConfig("b", "/m/b", "specific", versions=frozenset({1, 3}),
                    labels=(("canary", 3), ("stable", 1))),
        ModelConfig("c", "/m/c", "all"),
        ModelConfig("d", "/m/d", "latest", num_versions=2),
    ]


@pytest.mark.parametrize("text, wording", [
    ("model_config_list { config { name: 'a' base_path: '/a' } } nonsense", "Invalid ModelServerConfig"),
    ("custom_model_config {}", "must contain a model_config_list"),
    ("model_config_list {}", "lists no models"),
    ("model_config_list { config { name: 'a' } }", "needs a name and a base_path"),
    ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tflite' } }",
     "unsupported model_platform"),
    ("model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }",
     "Duplicate model name"),
    ("model_config_list { config { name: 'a' base_path: '/a' "
     "model_version_policy { specific {} } } }", "lists no versions"),
])
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
    for name in ("1", "00000002", ".tmp-3", "tmp", "4a", "-5", "٣"):
        (tmp_path / name).mkdir()
    (tmp_path / "6").write_text("a file, not a version")
    assert sorted(list_versions(str(tmp_path))) == [1, 2]
    assert list_versions(str(tmp_path / "missing")) == {}


def push(base: Path, version: int) -> Path:
    target = base / str(version)
    shutil.copytree(HALF_PLUS_TWO, target)
    return target


def states(manager: ModelManager, name: str = "m") -> dict[int, int]:
    return {v: s.state for v, s in manager.version_status(name).items()}


def test_lifecycle_latest_policy(tmp_path):
    push(tmp_path, 1)
    manager = ModelManager([ModelConfig("m", str(tmp_path), labels=(("stable", 1),))], Servable,
                           poll_wait_seconds=0)
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
    manager = ModelManager([ModelConfig("m", str(tmp_path), "specific", versions=frozenset({1}))],
                           Servable, poll_wait_seconds=0)
    manager.start()
    try:
        assert states(manager) == {1: State.AVAILABLE}
        assert manager.get_servable("m").version == 1
        with pytest.raises(ServingError) as caught:
            manager.get_servable("m", label="nope")
        assert (caught.value.code, caught.value.message) == (
            Code.INVALID_ARGUMENT, "Unrecognized servable version label: nope")
        with pytest.raises(ServingError, match=r"Latest\(other\)"):
            manager.get_servable("other")
        with pytest.raises(ServingError, match="Could not find version 2 of model m"):
            manager.version_status("m", 2)
        with pytest.raises(ServingError, match="Could not find any versions of model other"):
            manager.version_status("other")
    finally:
        manager.stop()


def test_missing_base_path_serves_nothing_until_a_version_appears(tmp_path):
    manager = ModelManager([ModelConfig("m", str(tmp_path / "m"))], Servable, poll_wait_seconds=0)
    manager.start()
    try:
        with pytest.raises(ServingError, match="Could not find any versions"):
            manager.version_status("m")
        push(tmp_path / "m", 5)
        manager.poll_once()
        assert states(manager) == {5: State.AVAILABLE}
    finally:
        manager.stop()
