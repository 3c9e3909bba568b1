#!/usr/bin/env bash
# `make airflow`: an Airflow 2 home under the project home that sees the mnist-tfx DAG. Idempotent.
#   <home>/airflow/          AIRFLOW_HOME: airflow.cfg, airflow.db (SQLite), logs/
#   <home>/airflow/dags/     DAGs folder: only a symlink to pipeline/airflow_dag.py
#   <home>/airflow/env.sh    the environment every airflow command needs (source it)
# <home> is $MNIST_TFX_HOME or ~/mnist-tfx. MNIST_TFX_* variables set now (limits, epochs,
# MNIST_TFX_SCHEDULE …) are written into env.sh, so the DAG sees them under every airflow command.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN="$REPO/.venv/bin"
if [[ ! -x "$BIN/airflow" ]]; then
  echo "airflow: $BIN/airflow not found; install the 'airflow' extra (make setup installs the lock)" >&2
  exit 1
fi

HOME_DIR=$("$BIN/python" -c 'from pipeline import configs; print(configs.default_home())')
AIRFLOW_HOME_DIR="$HOME_DIR/airflow"
mkdir -p "$AIRFLOW_HOME_DIR/dags"
ln -sfn "$REPO/pipeline/airflow_dag.py" "$AIRFLOW_HOME_DIR/dags/mnist_tfx_dag.py"

ENV_FILE="$AIRFLOW_HOME_DIR/env.sh"
{
  echo "# Written by scripts/airflow.sh; source it before any airflow command."
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
  printf 'export AIRFLOW_HOME=%q\n' "$AIRFLOW_HOME_DIR"
  printf 'export AIRFLOW__CORE__DAGS_FOLDER=%q\n' "$AIRFLOW_HOME_DIR/dags"
  echo 'export AIRFLOW__CORE__LOAD_EXAMPLES=False'
  echo '# Importing the TFX DAG takes 60-80 s: the 30 s defaults would fail it.'
  echo 'export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=600'
  echo 'export AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT=600'
  echo '# Re-parse the DAG file every 10 min, not every 30 s (each parse costs a CPU-minute).'
  echo 'export AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL=600'
  printf 'export MNIST_TFX_HOME=%q\n' "$HOME_DIR"
  while IFS='=' read -r name value; do
    [[ $name == MNIST_TFX_HOME ]] || printf 'export %s=%q\n' "$name" "$value"
  done < <(env | grep -E '^MNIST_TFX_[A-Z_]+=' | sort)
} > "$ENV_FILE"
# shellcheck source=/dev/null
source "$ENV_FILE"

DATA_DIR="${MNIST_TFX_DATA_ROOT:-$HOME_DIR/data}"
if compgen -G "$DATA_DIR/span-*" > /dev/null; then
  echo "data: $DATA_DIR holds data spans (mnist-tfx data --span N --of K adds the next one)"
else
  "$BIN/mnist-tfx" data --dest "$DATA_DIR" | tail -n 1
fi
started=$(date +%s)
airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 \
  || { tail -n 20 "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
echo "airflow: metadata database migrated in $(( $(date +%s) - started )) s ($AIRFLOW_HOME/airflow.db)"

cat <<EOF
airflow: AIRFLOW_HOME=$AIRFLOW_HOME, DAG file $AIRFLOW__CORE__DAGS_FOLDER/mnist_tfx_dag.py
next:
  source $ENV_FILE
  airflow dags list                                   # mnist-tfx (the import takes about a minute)
  airflow dags test mnist-tfx \$(date -u +%F)          # one run now, in this process, every task
  airflow standalone                                  # scheduler + webserver on :8080, runs on schedule
  airflow dags unpause mnist-tfx                      # new DAGs start paused
task logs: $AIRFLOW_HOME/logs/dag_id=mnist-tfx/run_id=<run>/task_id=<component>/attempt=<n>.log
EOF
