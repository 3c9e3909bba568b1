"""Model versions on disk -> loaded servables, as TF Serving's ServerCore manages them.

Knows nothing of HTTP or gRPC. Each model's base path is polled; numeric subdirectories
that fit an int64 are versions (others, such as `.tmp-123`, `tmp` or a 20-digit name, are
ignored); the version policy picks the aspired versions; a new version is loaded while the
old one keeps serving, and a version that left the policy is unloaded only once an aspired
version is AVAILABLE (AvailabilityPreservingPolicy). A failed load is retried
`max_num_load_retries` times, `load_retry_interval_micros` apart (state LOADING meanwhile),
then ends in state END with its error; it never takes serving down, and is tried afresh when
its directory changes. The config (models, policies, labels) can be replaced at run time
(`reload_config`), with TF Serving's rules for version labels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import time
from typing import Callable

from tensorflow_serving.apis import get_model_status_pb2

from serving.model_config import LoadRetries, ModelConfig, is_uri
from serving.status import Code, ServingError

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State

MAX_VERSION = 2**63 - 1  # versions are int64 in every TF Serving proto
MAX_ENDED_VERSIONS = 100  # END entries kept per model in the status history (newest first)
STOP_DEADLINE_SECONDS = 10.0  # stop() waits this long for a busy poller, then leaves it
_TICK_SECONDS = 1.0  # the poller's longest sleep: retries fall due between polls


_warned_names: set[str] = set()


def _warn_once(key: str, message: str, *args) -> None:
    """Logs a warning the first time `key` is seen (bounded, so a flood of names cannot grow it)."""
    if key not in _warned_names and len(_warned_names) < 10_000:
        _warned_names.add(key)
        log.warning(message, *args)


def _version_number(name: str, path: str) -> int | None:
    """The version a directory name stands for: ASCII digits that fit an int64 (leading zeros allowed)."""
    if not (name.isdigit() and name.isascii()):
        return None
    digits = name.lstrip("0")
    if len(digits) > len(str(MAX_VERSION)) or int(digits or "0") > MAX_VERSION:
        _warn_once(path, "Ignoring version directory %s: the version does not fit an int64", path)
        return None
    return int(name)


def list_versions(base_path: str) -> dict[int, str]:
    """Numeric int64 version directories under `base_path` (TF Serving's storage path source);
    a URI base path (gs://…) is listed through ``tf.io.gfile``, as TF Serving's file system does."""
    if is_uri(base_path):
        return _list_uri_versions(base_path)
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return {}
    versions: dict[int, str] = {}
    for entry in entries:
        if entry.name.isdigit() and entry.name.isascii() and entry.is_dir():
            version = _version_number(entry.name, entry.path)
            if version is not None:
                versions.setdefault(version, entry.path)
    return versions


def _list_uri_versions(base_path: str) -> dict[int, str]:
    import tensorflow as tf

    base = base_path.rstrip("/")
    try:
        names = tf.io.gfile.listdir(base)
    except tf.errors.OpError:
        return {}
    versions: dict[int, str] = {}
    for name in names:
        path = f"{base}/{name.rstrip('/')}"
        version = _version_number(name.rstrip("/"), path)
        if version is None:
            continue
        try:
            if not tf.io.gfile.isdir(path):  # an object named like a version is not one
                continue
        except tf.errors.OpError:
            continue
        versions.setdefault(version, path)
    return versions


def _fingerprint(path: str) -> tuple[tuple, str | None]:
    """Names, sizes and mtimes under `path` (a failed load is tried afresh when this changes),
    and the first entry that is not a regular file or directory (FIFO, device, socket), if any:
    reading one could block the poller, so such a version fails instead. An object store holds
    objects only: a URI's fingerprint comes from ``tf.io.gfile`` and has no such entry."""
    if is_uri(path):
        return _uri_fingerprint(path), None
    out, special = [], None
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            rel = os.path.relpath(full, path)
            if not stat.S_ISREG(st.st_mode) and special is None:
                special = rel
            out.append((rel, st.st_size, st.st_mtime_ns))
    return tuple(sorted(out)), special


def _uri_fingerprint(path: str) -> tuple:
    import tensorflow as tf

    out = []
    try:
        for root, _, files in tf.io.gfile.walk(path):
            for name in files:
                full = f"{root.rstrip('/')}/{name}"
                try:
                    info = tf.io.gfile.stat(full)
                except tf.errors.OpError:
                    continue
                out.append((full[len(path.rstrip("/")) + 1 :], info.length, info.mtime_nsec))
    except tf.errors.OpError:
        pass
    return tuple(sorted(out))


@dataclasses.dataclass
class VersionStatus:
    """A version's ServableState: its manager state and its health."""

    state: int
    error: ServingError | None = None


@dataclasses.dataclass
class _Failure:
    """A version whose last load failed: what was tried, and when to retry (None: never)."""

    path: str
    fingerprint: tuple
    attempts: int
    retry_at: float | None


class _Model:
    """Mutable per-model bookkeeping, guarded by the manager's lock."""

    def __init__(self, config: ModelConfig) -> None:
        self.name = config.name
        self.config: ModelConfig | None = config  # None: removed from the config
        self.labels = dict(config.labels)
        self.loaded: dict = {}  # version -> servable
        self.paths: dict[int, str] = {}  # version -> directory it was loaded from
        self.status: dict[int, VersionStatus] = {}
        self.failed: dict[int, _Failure] = {}

    def set_status(self, version: int, status: VersionStatus) -> None:
        self.status[version] = status
        ended = sorted((v for v, s in self.status.items() if s.state == State.END), reverse=True)
        for old in ended[MAX_ENDED_VERSIONS:]:
            del self.status[old]


class ModelManager:
    """Loads, serves and unloads model versions; thread-safe lookups."""

    def __init__(
        self,
        configs: list[ModelConfig],
        load: Callable[[str, int, str], object],
        poll_wait_seconds: float = 1.0,
        on_change: Callable[[], None] | None = None,
        retries: LoadRetries | None = None,
        allow_version_labels_for_unavailable_models: bool = False,
    ) -> None:
        self._initial = list(configs)
        self._models: dict[str, _Model] = {}
        self._active: list[str] = []
        self._load = load
        self._poll_wait = poll_wait_seconds
        self._on_change = on_change
        self._retries = retries if retries is not None else LoadRetries()
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._lock = threading.Lock()  # guards the bookkeeping; held only briefly
        self._work_lock = threading.Lock()  # one reconcile (load/unload pass) at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def model_names(self) -> list[str]:
        """The models of the current config."""
        return list(self._active)

    def start(self) -> None:
        """Loads the initial versions (blocking, like ServerCore::Create), then polls.

        Raises ServingError (FAILED_PRECONDITION) when a version label names a version that
        is not available, unless --allow_version_labels_for_unavailable_models (TF Serving
        checks labels before loading anything)."""
        self._apply_config(self._initial)
        self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self, deadline_seconds: float = STOP_DEADLINE_SECONDS) -> None:
        """Stops polling and unloads every version; returns within the deadline even when the
        poller is stuck in a load (it is a daemon thread and its result is dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(deadline_seconds)
            if self._thread.is_alive():
                log.warning("The model poller is still busy after %.1f s; shutting down without it", deadline_seconds)
        with self._lock:
            for model in self._models.values():
                for version in model.loaded:
                    model.set_status(version, VersionStatus(State.END))
                model.loaded.clear()
                model.paths.clear()

    # ------------------------------------------------------------ config

    def reload_config(self, configs: list[ModelConfig]) -> None:
        """Replaces the served models (HandleReloadConfigRequest, --model_config_file polling).

        Models may be added, removed or changed (base path, version policy, labels); a
        changed model keeps serving its versions until the new aspired ones are AVAILABLE.
        Returns once the pass is done; raises ServingError FAILED_PRECONDITION for a label on
        an unavailable version (nothing changes then), UNKNOWN when a new model did not
        become available (TF Serving's WaitUntilModelsAvailable)."""
        before = set(self._active)
        self._apply_config(configs)
        failures = []
        for config in configs:
            if config.name in before:
                continue
            model = self._models[config.name]
            with self._lock:
                if model.loaded:
                    continue
                ended = sorted(model.status.items(), reverse=True)
            servable_id = "{name: " + config.name + " version: " + (str(ended[0][0]) if ended else "none found") + "}"
            error = ended[0][1].error if ended else None
            due = " due to error: " + error.status_string() if error is not None else ""
            failures.append("{" + servable_id + due + "}, ")
        if failures:
            raise ServingError(
                Code.UNKNOWN, f"{len(failures)} model(s) did not become available: " + "{" + "".join(failures) + "}"
            )

    def _apply_config(self, configs: list[ModelConfig]) -> None:
        with self._work_lock:
            labels = self._label_maps(configs)
            with self._lock:
                for config in configs:
                    model = self._models.get(config.name)
                    if model is None:
                        model = self._models[config.name] = _Model(config)
                    model.config = config
                    model.labels = labels[config.name]
                names = [c.name for c in configs]
                for name, model in self._models.items():
                    if name not in names:
                        model.config, model.labels = None, {}
                self._active = names
            for model in list(self._models.values()):
                self._reconcile(model)

    def _label_maps(self, configs: list[ModelConfig]) -> dict[str, dict[str, int]]:
        """ServerCore::UpdateModelVersionLabelMap: each label must name an AVAILABLE version,
        unless --allow_version_labels_for_unavailable_models and the label is new or unchanged."""
        maps: dict[str, dict[str, int]] = {}
        with self._lock:
            for config in configs:
                model = self._models.get(config.name)
                available = set(model.loaded) if model is not None else set()
                current = model.labels if model is not None else {}
                maps[config.name] = {}
                for label, version in config.labels:
                    allowed = self._allow_unavailable_labels and current.get(label, version) == version
                    if not allowed and version not in available:
                        raise ServingError(
                            Code.FAILED_PRECONDITION,
                            f"Request to assign label to version {version} of model "
                            f"{config.name}, which is not currently available for "
                            f"inference",
                        )
                    maps[config.name][label] = version
        return maps

    # ------------------------------------------------------------ polling

    def _poll_loop(self) -> None:
        next_poll = time.monotonic() + self._poll_wait if self._poll_wait > 0 else float("inf")
        while True:
            due = min(next_poll, self._next_retry())
            if self._stop.wait(max(0.0, min(due - time.monotonic(), _TICK_SECONDS))):
                return
            now = time.monotonic()
            try:
                if now >= next_poll:
                    next_poll = now + self._poll_wait
                    self.poll_once()
                elif now >= self._next_retry():
                    self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad poll
                log.exception("Polling model base paths failed")

    def _next_retry(self) -> float:
        with self._lock:
            times = [f.retry_at for m in self._models.values() for f in m.failed.values() if f.retry_at is not None]
        return min(times, default=float("inf"))

    def poll_once(self) -> None:
        """One pass over every model: load aspired versions (and due retries), unload the rest."""
        with self._work_lock:
            for model in list(self._models.values()):
                if self._stop.is_set():
                    return
                self._reconcile(model)

    def _reconcile(self, model: _Model) -> None:
        config = model.config
        if config is None:
            on_disk, aspired = {}, set()
        else:
            on_disk = list_versions(config.base_path)
            if not on_disk:
                _warn_once(
                    f"no-versions:{config.name}:{config.base_path}",
                    "No versions of servable %s found under base path %s",
                    config.name,
                    config.base_path,
                )
                return
            aspired = config.aspired(on_disk)
        with self._lock:
            for version in [v for v in model.failed if v not in aspired]:
                del model.failed[version]  # TF Serving cancels the retries of an un-aspired version
        for version in sorted(aspired, reverse=True):
            path = on_disk[version]
            if version in model.loaded and model.paths.get(version) == path:
                continue
            fingerprint, special = _fingerprint(path)
            failure = model.failed.get(version)
            attempt = 1
            if failure is not None and (failure.path, failure.fingerprint) == (path, fingerprint):
                if failure.retry_at is None or time.monotonic() < failure.retry_at:
                    continue
                attempt = failure.attempts + 1
            if self._stop.is_set():
                return
            self._load_version(model, version, path, fingerprint, special, attempt)
        with self._lock:
            serving_aspired = any(v in model.loaded and model.paths.get(v) == on_disk[v] for v in aspired)
            stale = [v for v in model.loaded if v not in aspired] if serving_aspired or config is None else []
            for version in stale:
                model.set_status(version, VersionStatus(State.UNLOADING))
        for version in stale:
            with self._lock:
                del model.loaded[version]
                model.paths.pop(version, None)
                model.set_status(version, VersionStatus(State.END))
            log.info("Unloaded servable version {name: %s version: %d}", model.name, version)
        if stale and self._on_change:
            self._on_change()

    def _load_version(
        self, model: _Model, version: int, path: str, fingerprint: tuple, special: str | None, attempt: int
    ) -> None:
        name = model.name
        description = f"Loading servable: {{name: {name} version: {version}}}"
        with self._lock:
            if version not in model.loaded:
                model.set_status(version, VersionStatus(State.LOADING))
        if attempt > 1:
            log.info("Retrying of %s retry: %d", description, attempt - 1)
        else:
            log.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
        try:
            if special is not None:
                raise ServingError(
                    Code.FAILED_PRECONDITION,
                    f"{special} in version {version} of model {name} is not a "
                    f"regular file (a FIFO, device or socket)",
                )
            servable = self._load(name, version, path)
        except Exception as e:  # noqa: BLE001 - a broken version must not stop serving
            error = e if isinstance(e, ServingError) else ServingError(Code.UNKNOWN, str(e))
            log.error("%s failed: %s", description, error.status_string())
            retry = attempt <= self._retries.max_num_load_retries and special is None
            if not retry and self._retries.max_num_load_retries > 0 and special is None:
                log.info(
                    "Retrying of %s exhausted max_num_retries: %d", description, self._retries.max_num_load_retries
                )
            with self._lock:
                model.failed[version] = _Failure(
                    path,
                    fingerprint,
                    attempt,
                    time.monotonic() + max(0.0, self._retries.interval_seconds) if retry else None,
                )
                if version not in model.loaded and not retry:
                    model.set_status(version, VersionStatus(State.END, error))
            return
        with self._lock:
            if self._stop.is_set():
                return
            model.failed.pop(version, None)
            model.loaded[version] = servable
            model.paths[version] = path
            model.set_status(version, VersionStatus(State.AVAILABLE))
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        if self._on_change:
            self._on_change()

    # ------------------------------------------------------------ lookups

    def _model(self, name: str) -> _Model | None:
        return self._models.get(name)

    def resolve_label(self, name: str, label: str) -> int:
        """The version a label points to (InvalidArgument when unknown)."""
        model = self._model(name)
        with self._lock:
            version = model.labels.get(label) if model is not None else None
        if version is None:
            raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
        return version

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
                raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
            if version in loaded:
                return loaded[version]
        raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")

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
