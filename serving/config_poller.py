"""--model_config_file_poll_wait_seconds: re-reads the model config file and applies changes.

As TF Serving's Server::PollFilesystemAndReloadConfig: a file that cannot be read or parsed,
or a config that cannot be applied, is logged and the server keeps its current config.
"""

from __future__ import annotations

import logging
import threading

from serving.model_config import parse_model_server_config, read_regular_file
from serving.model_manager import ModelManager
from serving.status import Code, ServingError

log = logging.getLogger(__name__)


class ConfigFilePoller:
    """A thread reading `path` every `wait_seconds` and reloading the manager when it changed."""

    def __init__(self, path: str, manager: ModelManager, wait_seconds: float) -> None:
        self._path = path
        self._manager = manager
        self._wait = wait_seconds
        self._stop = threading.Event()
        self._last: list | None = None
        self._thread = threading.Thread(target=self._run, name="model-config-poller", daemon=True)

    def start(self) -> None:
        try:
            self._last = parse_model_server_config(read_regular_file(self._path).decode())
        except (OSError, ValueError):
            self._last = None
        self._thread.start()

    def stop(self, deadline_seconds: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(deadline_seconds)

    def poll_once(self) -> None:
        try:
            configs = parse_model_server_config(read_regular_file(self._path).decode())
        except (OSError, ValueError) as e:
            log.error("Failed to read ModelServerConfig file: %s", e)
            return
        if configs == self._last:
            return
        try:
            self._manager.reload_config(configs)
        except ServingError as e:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", e.message)
            if e.code == Code.FAILED_PRECONDITION:
                return  # nothing was applied: try again at the next poll
        self._last = configs

    def _run(self) -> None:
        while not self._stop.wait(self._wait):
            try:
                self.poll_once()
            except Exception:  # the poller must outlive any one bad file
                log.exception("Polling the model config file failed")
