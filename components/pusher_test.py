import os
import shutil
from pathlib import Path

import pytest

from components import pusher


def _model(tmp_path: Path, content: bytes = b"graph") -> Path:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(content)
    (model / "variables" / "variables.index").write_bytes(b"index")
    return model


def test_push_creates_a_numeric_version_with_the_model_files(tmp_path: Path) -> None:
    base = tmp_path / "serving" / "mnist"
    version, written = pusher.push_atomically(_model(tmp_path), base)
    assert written and [p.name for p in base.iterdir()] == [str(version)]
    assert (base / str(version) / "variables" / "variables.index").read_bytes() == b"index"


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


def test_interrupted_push_leaves_no_version_directory(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    model = _model(tmp_path)
    os.mkfifo(model / "variables" / "variables.data-00000-of-00001")  # copying it fails midway
    with pytest.raises(shutil.Error, match="named pipe"):
        pusher.push_atomically(model, base)
    assert list(base.iterdir()) == []  # neither a version nor its staging directory


def test_staging_left_by_a_killed_push_is_cleared_and_never_served(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    (base / ".tmp-123-99").mkdir(parents=True)
    (base / ".tmp-123-99" / "saved_model.pb").write_bytes(b"half")
    assert pusher.numeric_versions(base) == []
    version, _ = pusher.push_atomically(_model(tmp_path), base)
    assert [p.name for p in base.iterdir()] == [str(version)]
