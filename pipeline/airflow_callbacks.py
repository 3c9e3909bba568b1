"""What the Airflow DAG does when a component's task fails for good: one log line, an optional webhook.

The line names the failed component (task id), the run id, the attempt, the task's log file and its
URL in the Airflow UI, and the error. Routing it elsewhere uses Airflow's standard settings:
``MNIST_TFX_FAILURE_EMAIL`` turns on Airflow's own ``email_on_failure`` (SMTP from
``AIRFLOW__SMTP__*``), and ``MNIST_TFX_FAILURE_WEBHOOK`` (read when the task fails) gets the same
fields as one JSON POST. A webhook that cannot be reached is logged; it never hides the failure.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any, Mapping

FAILURE_EMAIL_ENV = "MNIST_TFX_FAILURE_EMAIL"  # comma-separated addresses for Airflow's email_on_failure
FAILURE_WEBHOOK_ENV = "MNIST_TFX_FAILURE_WEBHOOK"  # an http(s) URL that receives the failure as JSON
WEBHOOK_TIMEOUT_S = 10
LOG_PREFIX = "mnist-tfx task failed:"

log = logging.getLogger(__name__)


def failure_args(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The DAG's ``default_args`` for failures: the callback, and Airflow's e-mail when addresses are set."""
    environ = os.environ if environ is None else environ
    emails = [a.strip() for a in environ.get(FAILURE_EMAIL_ENV, "").split(",") if a.strip()]
    args: dict[str, Any] = {"on_failure_callback": on_task_failure, "email_on_retry": False}
    args.update({"email": emails, "email_on_failure": True} if emails else {"email_on_failure": False})
    return args


def _log_path(ti: Any) -> str:
    """The task attempt's log file under Airflow's ``base_log_folder`` (as the UI reads it)."""
    from airflow.configuration import conf
    from airflow.utils.log.file_task_handler import FileTaskHandler

    folder = conf.get("logging", "base_log_folder")
    return os.path.join(folder, FileTaskHandler(folder)._render_filename(ti, ti.try_number))


def failure_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of a failed task: component, run, attempt, log file and URL, error."""
    ti = context["task_instance"]
    fields = {"dag_id": ti.dag_id, "component": ti.task_id, "run_id": ti.run_id, "try_number": ti.try_number}
    try:
        fields["log_path"] = _log_path(ti)
    except Exception as err:  # noqa: BLE001 - a notice with a field missing beats no notice
        fields["log_path"] = f"unknown ({type(err).__name__}: {err})"
    fields["log_url"] = ti.log_url
    error = context.get("exception")
    fields["error"] = f"{type(error).__name__}: {error}" if error is not None else None
    return fields


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Airflow's ``on_failure_callback``: log the failure's fields, POST them to the webhook if set."""
    fields = failure_fields(context)
    log.error("%s %s", LOG_PREFIX, json.dumps(fields, sort_keys=True))
    url = os.environ.get(FAILURE_WEBHOOK_ENV, "").strip()
    if url:
        post_webhook(url, fields)


def post_webhook(url: str, fields: Mapping[str, Any]) -> None:
    """POSTs ``fields`` as JSON to ``url`` (http or https only); logs, never raises, on failure."""
    if not url.startswith(("http://", "https://")):
        log.error("%s=%r: not an http(s) URL; no webhook sent", FAILURE_WEBHOOK_ENV, url)
        return
    request = urllib.request.Request(
        url, data=json.dumps(fields).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310 - scheme checked
            log.info("failure webhook %s answered %s", url, response.status)
    except OSError as err:
        log.error("failure webhook %s failed: %s", url, err)
