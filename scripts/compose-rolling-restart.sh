#!/usr/bin/env bash
# Rolling restart of the compose deployment's replicas: migrations first, then one replica at a
# time is drained (SIGTERM: it finishes what it serves, nginx sends new requests to the others),
# recreated from the current image, config and secrets, and awaited healthy before the next.
#
#   scripts/compose-rolling-restart.sh            # after `docker compose build` or a secret change
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
compose() { docker compose -f "$ROOT/deploy/compose.yaml" "$@"; }

compose run --rm migrate
for replica in switchyard-1 switchyard-2 switchyard-3; do
  echo "restarting $replica"
  # --wait: until the new container's healthcheck (/readyz) passes.
  compose up -d --no-deps --force-recreate --wait --wait-timeout 180 "$replica"
done
echo "all replicas restarted"
