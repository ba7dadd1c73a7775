#!/usr/bin/env bash
# N local Switchyard replicas on their own ports, behind Debian's nginx, sharing the config's Redis
# and PostgreSQL (start those with scripts/ensure-services.sh). The work is done by bench/cluster.py,
# which tests and the benchmark also use from Python.
#
#   scripts/local-cluster.sh up --config deploy/config/local-cluster.yaml [--replicas 3] [--port 8080]
#   scripts/local-cluster.sh status
#   scripts/local-cluster.sh restart      # rolling: drain, restart and wait for each replica in turn
#   scripts/local-cluster.sh down
#
# Every command takes --dir DIR (default .cluster): logs, the generated nginx.conf, cluster.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m bench.cluster "$@"
