"""Model versions on disk -> loaded servables, as TF Serving's ServerCore manages them.

Knows nothing of HTTP or gRPC. Each model's base path is polled; numeric subdirectories
are versions (others, such as `.tmp-123` or `tmp`, are ignored); the version policy picks
the aspired versions; a new version is loaded while the old one keeps serving, and a
version that left the policy is unloaded only once an aspired version is AVAILABLE
(AvailabilityPreservingPolicy). A version that fails to load ends in state END with its
error as status and never takes serving down; it is retried when its directory changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Callable

from tensorflow_serving.apis import get_model_status_pb2

from serving.model_config import ModelConfig
from serving.status import Code, ServingError

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


def list_versions(base_path: str) -> dict[int, str]:
    """Numeric version directories under `base_path` (TF Serving's storage path source)."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return {}
    versions: dict[int, str] = {}
    for entry in entries:
        if entry.name.isdigit() and entry.name.isascii() and entry.is_dir():
            versions.setdefault(int(entry.name), entry.path)
    return versions


def _fingerprint(path: str) -> tuple:
    """Names, sizes and mtimes under `path`: a failed load is retried when this changes."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            out.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


@dataclasses.dataclass
class VersionStatus:
    """A version's ServableState: its manager state and its health."""

    state: int
    error: ServingError | None = None


class _Model:
    """Mutable per-model bookkeeping, guarded by the manager's lock."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.labels = dict(config.labels)
        self.loaded: dict = {}  # version -> servable
        self.status: dict[int, VersionStatus] = {}
        self.failed: dict[int, tuple] = {}  # version -> fingerprint of the failed attempt


class ModelManager:
    """Loads, serves and unloads model versions; thread-safe lookups."""

    def __init__(self, configs: list[ModelConfig], load: Callable[[str, int, str], object],
                 poll_wait_seconds: float = 1.0,
                 on_change: Callable[[], None] | None = None) -> None:
        self._models = {c.name: _Model(c) for c in configs}
        self._load = load
        self._poll_wait = poll_wait_seconds
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def start(self) -> None:
        """Loads the initial versions (blocking, like ServerCore::Create), then polls."""
        self.poll_once()
        if self._poll_wait > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for model in self._models.values():
                for version in model.loaded:
                    model.status[version] = VersionStatus(State.END)
                model.loaded.clear()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_wait):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
                log.exception("Polling model base paths failed")

    def poll_once(self) -> None:
        """One pass over every model: load aspired versions, unload the rest."""
        for model in self._models.values():
            if self._stop.is_set():
                return
            self._reconcile(model)

    def _reconcile(self, model: _Model) -> None:
        config = model.config
        on_disk = list_versions(config.base_path)
        if not on_disk:
            log.warning("No versions of servable %s found under base path %s",
                        config.name, config.base_path)
            return
        aspired = config.aspired(on_disk)
        for version in sorted(aspired, reverse=True):
            if version in model.loaded:
                continue
            fingerprint = _fingerprint(on_disk[version])
            if model.failed.get(version) == fingerprint:
                continue
            self._load_version(model, version, on_disk[version], fingerprint)
        with self._lock:
            serving_aspired = any(v in model.loaded for v in aspired)
            stale = [v for v in model.loaded if v not in aspired] if serving_aspired else []
            for version in stale:
                model.status[version] = VersionStatus(State.UNLOADING)
        for version in stale:
            with self._lock:
                del model.loaded[version]
                model.status[version] = VersionStatus(State.END)
            log.info("Unloaded servable version {name: %s version: %d}", config.name, version)
        if stale and self._on_change:
            self._on_change()

    def _load_version(self, model: _Model, version: int, path: str, fingerprint: tuple) -> None:
        with self._lock:
            model.status[version] = VersionStatus(State.LOADING)
        log.info("Loading servable version {name: %s version: %d} from %s",
                 model.config.name, version, path)
        try:
            servable = self._load(model.config.name, version, path)
        except Exception as e:  # noqa: BLE001 - a broken version must not stop serving
            error = e if isinstance(e, ServingError) else ServingError(Code.UNKNOWN, str(e))
            with self._lock:
                model.failed[version] = fingerprint
                model.status[version] = VersionStatus(State.END, error)
            log.error("Loading servable version {name: %s version: %d} failed: %s",
                      model.config.name, version, error.message)
            return
        with self._lock:
            model.failed.pop(version, None)
            model.loaded[version] = servable
            model.status[version] = VersionStatus(State.AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}",
                 model.config.name, version)
        if self._on_change:
            self._on_change()

    def _model(self, name: str) -> _Model | None:
        return self._models.get(name)

    def resolve_label(self, name: str, label: str) -> int:
        """The version a label points to (InvalidArgument when unknown)."""
        model = self._model(name)
        if model is None or label not in model.labels:
            raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
        return model.labels[label]

    def get_servable(self, name: str, version: int | None = None, label: str | None = None):
        """The servable for a request: a specific version, a label's version, or the latest."""
        if label is not None:
            version = self.resolve_label(name, label)
        model = self._model(name)
        with self._lock:
            loaded = model.loaded if model is not None else {}
            if version is None:
                if loaded:
                    return loaded[max(loaded)]
                raise ServingError(Code.NOT_FOUND,
                                   f"Servable not found for request: Latest({name})")
            if version in loaded:
                return loaded[version]
        raise ServingError(Code.NOT_FOUND,
                           f"Servable not found for request: Specific({name}, {version})")

    def version_status(self, name: str, version: int | None = None) -> dict[int, VersionStatus]:
        """Known versions of a model and their states, newest first (ServableStateMonitor)."""
        model = self._model(name)
        with self._lock:
            states = dict(model.status) if model is not None else {}
        if version is not None:
            if version not in states:
                raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
            return {version: states[version]}
        if not states:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
        return dict(sorted(states.items(), reverse=True))

    def loaded_versions(self) -> dict[str, list[int]]:
        """Model name -> versions currently serving."""
        with self._lock:
            return {name: sorted(m.loaded) for name, m in self._models.items()}
