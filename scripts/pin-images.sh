#!/usr/bin/env bash
# Refresh the base image digest pinned in deploy/Dockerfile (and, with --compose, print the
# digests of the images deploy/compose.yaml names, to pin them as IMAGE:TAG@sha256:...).
#
#   scripts/pin-images.sh              # rewrite the ARG PYTHON_IMAGE line with the tag's current digest
#   scripts/pin-images.sh --compose    # also list the compose images' current digests
#
# Needs one of: crane, skopeo, or docker with buildx (no daemon is needed for any of them). The
# digest is the multi-platform index digest, so the pin holds for amd64 and arm64 alike. Review
# the diff (and the base image's release notes) like any other dependency upgrade.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERFILE="$ROOT/deploy/Dockerfile"

digest() {
  local ref=$1
  if command -v crane >/dev/null; then crane digest "$ref"
  elif command -v skopeo >/dev/null; then skopeo inspect --raw "docker://$ref" | sha256sum | sed 's/^/sha256:/; s/ .*//'
  elif docker buildx version >/dev/null 2>&1; then docker buildx imagetools inspect "$ref" --format '{{json .Manifest.Digest}}' | tr -d '"'
  else echo "need crane, skopeo or docker buildx to resolve $ref" >&2; return 1
  fi
}

line=$(grep -E '^ARG PYTHON_IMAGE=' "$DOCKERFILE")
ref=${line#ARG PYTHON_IMAGE=}
tag=${ref%@*}
new=$(digest "$tag")
[[ $new =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "unexpected digest for $tag: $new" >&2; exit 1; }
sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$tag@$new|" "$DOCKERFILE"
echo "deploy/Dockerfile: $tag@$new"

if [ "${1:-}" = "--compose" ]; then
  grep -E '^\s+image:' "$ROOT/deploy/compose.yaml" | sed 's/.*image: *//; s/ *#.*//' | sort -u | while read -r image; do
    [[ $image == switchyard-gateway:* ]] && continue
    echo "$image@$(digest "$image")"
  done
fi
