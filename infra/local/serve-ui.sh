#!/usr/bin/env bash
# Serve the Prefect UI and the MLflow dashboard for this checkout's embedded stores, on loopback.
#   infra/local/serve-ui.sh [EXPERIMENT]      (default: demo)
# Prefect: the project-local home (.prefect/, where `xlm run` keeps its ephemeral database).
# MLflow:  work/<EXPERIMENT>/mlflow.db with its artifacts beside it.
# Set HOST=0.0.0.0 to expose them beyond this machine (and put them behind authentication).
set -euo pipefail
cd "$(dirname "$0")/../.."
EXPERIMENT=${1:-demo}
HOST=${HOST:-127.0.0.1}
PREFECT_PORT=${PREFECT_PORT:-4200}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
WORK="$PWD/work/$EXPERIMENT"
[[ -f "$WORK/mlflow.db" ]] || { echo "no MLflow store at $WORK/mlflow.db: run 'make demo' (or xlm run) first" >&2; exit 1; }

export PREFECT_HOME="$PWD/.prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/prefect server start --host "$HOST" --port "$PREFECT_PORT" &
prefect_pid=$!
.venv/bin/mlflow server --backend-store-uri "sqlite:///$WORK/mlflow.db" \
  --default-artifact-root "$WORK/mlartifacts" --host "$HOST" --port "$MLFLOW_PORT" --workers 1 &
mlflow_pid=$!
trap 'kill $prefect_pid $mlflow_pid 2>/dev/null || true' EXIT INT TERM
echo "Prefect UI:       http://$HOST:$PREFECT_PORT"
echo "MLflow dashboard: http://$HOST:$MLFLOW_PORT"
wait
