"""Airflow DAG ``mnist-tfx``: the same pipeline as ``mnist-tfx run``, one task per component.

Airflow imports this file (a symlink to it in the DAGs folder; ``make airflow`` sets that up).
Paths, data limits and hyper-parameters come from ``MNIST_TFX_*`` variables, as for
``mnist-tfx run``; ``MNIST_TFX_SCHEDULE`` is a cron expression or preset (default ``@daily``;
``none`` = triggered runs only). Runs do not catch up on missed intervals (``airflow dags backfill``
runs them on demand), and one run at a time: runs share one MLMD store, pipeline root and serving
directory. A task that fails is logged and announced by pipeline/airflow_callbacks.py; tasks are not
retried (docs/orchestration.md says why). The import takes about a minute (TFX), so raise Airflow's
DagBag and DAG-processor import timeouts.
"""

from __future__ import annotations

import datetime
import os

from pipeline import configs

configs.apply_pipeline_tf_env()  # before TFX imports TensorFlow

from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig  # noqa: E402

from pipeline.airflow_callbacks import failure_args  # noqa: E402
from pipeline.configs import PipelineConfig  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402

SCHEDULE_ENV = "MNIST_TFX_SCHEDULE"
START_DATE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def schedule() -> str | None:
    """``$MNIST_TFX_SCHEDULE``: a cron expression or preset, ``none`` for none; ``@daily`` if unset."""
    value = os.environ.get(SCHEDULE_ENV, "").strip() or "@daily"
    return None if value.lower() == "none" else value


def dag_config() -> dict:
    """The ``airflow.models.DAG`` arguments; ``default_args`` reach every component's task."""
    return {
        "schedule": schedule(),
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {"retries": 0, **failure_args()},
    }


DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_config())).run(
    create_pipeline(PipelineConfig.from_env())
)
