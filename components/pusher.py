"""Pusher whose filesystem push is atomic, safe against overlapping pushes, and skips unchanged models.

TF Serving polls ``<base>/<version>/`` and loads any numeric directory it sees, so a version must
never be visible half-written: the model is copied to a staging directory
``<base>/.tmp-<version>-<pid>-<random>`` (TF Serving ignores non-numeric names), every file and
directory is fsync'ed, and the staging directory is renamed into place in one step. Pushes to one
base directory take turns under :func:`components.locks.hold`, so two pushes never pick the same
version nor delete each other's staging; a staging directory is removed only when the push that made
it is gone. When the latest version already holds the very same files, the push records that version
instead of adding a duplicate.

Object stores (``gs://``, ``s3://``, ``hdfs://`` through TFX's ``fileio``) have neither rename nor
locks: :func:`push_to_object_store` uploads into the staging prefix, then copies it to
``<base>/<version>/`` store-side with ``saved_model.pb`` LAST, so a poller that lists the version
early finds no SavedModel to load until every other file is in place; then it deletes the staging.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import locks
from components.locations import is_uri

STAGING_PREFIX = ".tmp-"
_STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + r"\d+-(?P<pid>\d+)(-[0-9a-f]+)?")
_VERSION_NAME = re.compile(r"[0-9]+")
MAX_VERSION = 2**63 - 1  # TF Serving's versions are int64
PUSH_LOCK_TIMEOUT_S = 600.0  # how long a push waits for the one before it to finish
# What makes a directory a SavedModel (TF Serving's loader looks for either): copied last to an object store.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


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


def _name(entry: str) -> str:
    """A ``listdir`` entry without the trailing ``/`` object stores give sub-directories."""
    return entry.rstrip("/")


def model_files(root: str) -> list[str]:
    """Every file under ``root`` (local or URI), as sorted relative ``/``-separated paths."""
    found = []
    for entry in fileio.listdir(root):
        path = f"{root.rstrip('/')}/{_name(entry)}"
        if fileio.isdir(path):
            found += [f"{_name(entry)}/{sub}" for sub in model_files(path)]
        else:
            found.append(_name(entry))
    return sorted(found)


def store_digest(root: str) -> str:
    """:func:`model_digest` through ``fileio``: the same SHA-256 for the same files, on any filesystem."""
    digest = hashlib.sha256()
    for relative in model_files(root):
        digest.update(relative.encode() + b"\0")
        with fileio.open(f"{root.rstrip('/')}/{relative}", "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def store_versions(base: str) -> tuple[list[int], list[int]]:
    """(complete, incomplete) numeric versions under an object-store ``base``, ascending.

    Complete ones hold a SavedModel file; incomplete ones are what a push killed midway left.
    """
    if not fileio.exists(base):
        return [], []
    complete, incomplete = [], []
    for entry in fileio.listdir(base):
        name = _name(entry)
        if not _VERSION_NAME.fullmatch(name) or int(name) > MAX_VERSION:
            continue
        done = any(fileio.exists(f"{base}/{name}/{f}") for f in SAVED_MODEL_FILES)
        (complete if done else incomplete).append(int(name))
    return sorted(complete), sorted(incomplete)


def _copy_files(source: str, target: str, files: list[str]) -> None:
    """Copies ``files`` (relative) from ``source`` to ``target``, SavedModel files last."""
    for relative in sorted(files, key=lambda f: (f in SAVED_MODEL_FILES, f)):
        destination = f"{target}/{relative}"
        parent = destination.rsplit("/", 1)[0]
        if not fileio.exists(parent):
            fileio.makedirs(parent)
        fileio.copy(f"{source.rstrip('/')}/{relative}", destination, overwrite=True)


def push_to_object_store(model_dir: str, base: str) -> tuple[int, bool]:
    """Pushes ``model_dir`` as a new version under an object-store ``base``; returns (version, newly_written).

    No lock exists there: pushes to one base must not overlap (one pipeline run per serving root).
    Leftovers of a push killed midway (staging, a version without ``saved_model.pb``) are removed first.
    """
    base = base.rstrip("/")
    complete, incomplete = store_versions(base)
    leftovers = [f"{base}/{v}" for v in incomplete]
    if fileio.exists(base):
        leftovers += [f"{base}/{_name(e)}" for e in fileio.listdir(base) if _name(e).startswith(STAGING_PREFIX)]
    for leftover in leftovers:
        fileio.rmtree(leftover)
        logging.info("Removed %s, left by a push that was interrupted", leftover)
    if complete and store_digest(f"{base}/{complete[-1]}") == store_digest(model_dir):
        return complete[-1], False
    version = next_version(complete)
    staging = f"{base}/{STAGING_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(4)}"
    files = model_files(model_dir)
    _copy_files(model_dir, staging, files)  # the slow upload, under a name TF Serving ignores
    _copy_files(staging, f"{base}/{version}", files)  # store-side copies, saved_model.pb last
    fileio.rmtree(staging)
    return version, True


def push(model_dir: str, base: str) -> tuple[int, bool]:
    """Pushes to a local base directory atomically (:func:`push_atomically`), else to an object store."""
    if is_uri(base):
        return push_to_object_store(model_dir, base)
    if is_uri(model_dir):  # a remote pipeline root: fetch the model to this machine first
        with tempfile.TemporaryDirectory(prefix="mnist-tfx-push-") as fetched:
            _copy_files(model_dir, fetched, model_files(model_dir))
            return push_atomically(Path(fetched), Path(base))
    return push_atomically(Path(model_dir), Path(base))


class Executor(pusher_executor.Executor):
    """Filesystem push through :func:`push` (local or object store); other destinations are not supported."""

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
        base = destination.filesystem.base_directory.rstrip("/")
        model_path = self.GetModelPath(input_dict)
        version, written = push(model_path, base)
        logging.info(
            "Model %s %s version %d in %s", model_path, "pushed as" if written else "already is", version, base
        )
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=f"{base}/{version}", pushed_version=str(version))


class AtomicPusher(pusher_component.Pusher):
    """TFX Pusher with :class:`Executor`; same inputs, outputs and ``push_destination``."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
