"""Pusher whose filesystem push is atomic and does not re-push an unchanged model.

TF Serving polls ``<base>/<version>/`` and loads any numeric directory it sees, so a version must
never be visible half-written: the model is copied to ``<base>/.tmp-<version>`` (TF Serving ignores
non-numeric names) and renamed into place in one step. When the latest version already holds the
very same files, the push records that version instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import os
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

STAGING_PREFIX = ".tmp-"


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
    """The version directories TF Serving would load, ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def push_atomically(model_dir: Path, base: Path) -> tuple[int, bool]:
    """Pushes ``model_dir`` as a new version under ``base``; returns (version, newly_written)."""
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.glob(f"{STAGING_PREFIX}*"):  # left by a push that was killed midway
        shutil.rmtree(stale, ignore_errors=True)
    versions = numeric_versions(base)
    if versions and model_digest(base / str(versions[-1])) == model_digest(model_dir):
        return versions[-1], False
    version = max(int(time.time()), versions[-1] + 1 if versions else 0)
    staging = base / f"{STAGING_PREFIX}{version}-{os.getpid()}"
    try:
        shutil.copytree(model_dir, staging)
        os.rename(staging, base / str(version))
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
