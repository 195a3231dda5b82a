#!/usr/bin/env bash
# Serve the model version that a registry alias points to, with `explainable-model serve`.
#
# Usage: serving/serve_alias.sh NAME ALIAS [SERVE OPTIONS...]
#   NAME     registered model name, e.g. credit
#   ALIAS    alias to serve, e.g. champion
#   options  passed to `explainable-model serve` after the defaults -h 127.0.0.1 -p 5000,
#            so they override them: -h HOST, -p PORT, -w WORKERS, -t TIMEOUT
# Environment:
#   MLFLOW_TRACKING_URI  registry to read (default: sqlite:///mlflow.db, MLflow's local default)
#
# The alias is resolved once, when the server starts; restart the server after moving it.
# With several workers, set EXPLAINABLE_MODEL_N_JOBS to the cores each worker may use.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 NAME ALIAS [-h HOST] [-p PORT] [-w WORKERS] [-t TIMEOUT]" >&2
    exit 2
fi
name="$1"
alias="$2"
shift 2

export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}"

# Use the repository's virtual environment when the script runs from a checkout that has one.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command="explainable-model"
if [[ -x "$root/.venv/bin/explainable-model" ]]; then
    command="$root/.venv/bin/explainable-model"
fi

exec "$command" serve "models:/${name}@${alias}" -h 127.0.0.1 -p 5000 "$@"
