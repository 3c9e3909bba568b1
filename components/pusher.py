"""Pusher whose filesystem push is atomic, safe against overlapping pushes, and skips unchanged models.

TF Serving polls ``<base>/<version>/`` and loads any numeric directory it sees, so a version must
never be visible half-written: the model is copied to a staging directory
``<base>/.tmp-<version>-<pid>-<random>`` (TF Serving ignores non-numeric names), every file and
directory is fsync'ed, and the staging directory is renamed into place in one step. Pushes to one
base directory take turns under :func:`components.locks.hold`, so two pushes never pick the same
version nor delete each other's staging; a staging directory is removed only when the push that made
it is gone. When the latest version already holds the very same files, the push records that version
instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import locks

STAGING_PREFIX = ".tmp-"
_STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + r"\d+-(?P<pid>\d+)(-[0-9a-f]+)?")
_VERSION_NAME = re.compile(r"[0-9]+")
MAX_VERSION = 2**63 - 1  # TF Serving's versions are int64
PUSH_LOCK_TIMEOUT_S = 600.0  # how long a push waits for the one before it to finish


def model_digest(model_dir: Path) -> str:
    """SHA-256 over every file's relative path and bytes: equal digests mean the same model."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def numeric_versions(base: Path) -> list[int]:
    """The version directories TF Serving would load (ASCII digits, within int64), ascending."""
    if not base.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in base.iterdir()
        if _VERSION_NAME.fullmatch(p.name) and int(p.name) <= MAX_VERSION and p.is_dir()
    )


def remove_stale_staging(base: Path) -> list[Path]:
    """Removes staging directories whose push is gone (its process no longer runs); returns them.

    Called under the base directory's lock, so no push that takes the lock can be staging now; a
    staging directory whose process still runs (a push that did not take the lock) is left alone.
    """
    removed = []
    for staging in base.glob(f"{STAGING_PREFIX}*"):
        match = _STAGING_NAME.fullmatch(staging.name)
        if staging.is_symlink() or not staging.is_dir():
            continue  # never made by a push
        if match and locks.pid_alive(int(match["pid"])) and int(match["pid"]) != os.getpid():
            continue
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


def fsync_tree(root: Path) -> None:
    """Flushes every file and directory under ``root`` (and ``root``) to disk."""
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(directory, name))
        fsync_path(Path(directory))


def fsync_path(path: Path) -> None:
    """fsync of one file or directory (directories: so that their entries are durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def next_version(versions: list[int]) -> int:
    """The current second, or one past the latest version if that is not larger."""
    version = max(int(time.time()), versions[-1] + 1 if versions else 0)
    if version > MAX_VERSION:
        raise ValueError(f"no version number left: the latest version {versions[-1]} is the largest int64")
    return version


def push_atomically(model_dir: Path, base: Path, *, lock_timeout_s: float = PUSH_LOCK_TIMEOUT_S) -> tuple[int, bool]:
    """Pushes ``model_dir`` as a new version under ``base``; returns (version, newly_written).

    Waits up to ``lock_timeout_s`` for a push in progress to the same ``base`` to finish.
    """
    with locks.hold(base, f"pushing {model_dir}", timeout_s=lock_timeout_s):
        for stale in remove_stale_staging(base):  # left by a push that was killed midway
            logging.info("Removed %s, left by a push that is gone", stale)
        versions = numeric_versions(base)
        if versions and model_digest(base / str(versions[-1])) == model_digest(model_dir):
            return versions[-1], False
        version = next_version(versions)
        staging = base / f"{STAGING_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            shutil.copytree(model_dir, staging)
            fsync_tree(staging)
            os.rename(staging, base / str(version))
            fsync_path(base)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version, True


class Executor(pusher_executor.Executor):
    """Filesystem push through :func:`push_atomically`; other destinations are not supported."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], pusher_pb2.PushDestination()
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("this Pusher pushes to a filesystem base_directory only")
        base = Path(destination.filesystem.base_directory)
        model_path = self.GetModelPath(input_dict)
        version, written = push_atomically(Path(model_path), base)
        logging.info("Model %s %s version %d in %s", model_path, "pushed as" if written else "already is", version, base)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=str(base / str(version)), pushed_version=str(version))


class AtomicPusher(pusher_component.Pusher):
    """TFX Pusher with :class:`Executor`; same inputs, outputs and ``push_destination``."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
