#!/usr/bin/env bash
# Build a Debian base image from Debian's own packages, for machines that can reach a Debian mirror
# but no container registry (no `docker pull`). The result stands in for `debian:bookworm-slim` as
# the BASE_IMAGE build argument of containers/base-cpu and containers/base-cuda.
#
#   containers/debian_base.sh                       # -> localhost/speechops-debian:bookworm
#   containers/debian_base.sh --name localhost/debian --suite bookworm --mirror http://deb.debian.org/debian
#
# Needs root, debootstrap and podman (or docker). About 80 s and 300 MB.
set -euo pipefail

name=localhost/speechops-debian:bookworm suite=bookworm mirror=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
engine=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

if [ -z "$mirror" ]; then  # the mirror this machine's apt already uses
  mirror=$(grep -hoE '(https?://[^ ]*debian)( |/? *$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | grep -v security | head -n1 | tr -d ' ' || true)
  mirror=${mirror%/}
  mirror=${mirror:-http://deb.debian.org/debian}
fi
rootfs=$(mktemp -d /tmp/speechops-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates,libsndfile1 \
  "$suite" "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$name"
echo "built $name"
