#!/bin/sh
# Entrypoint of the job images (prepare, tokenizer, train, evaluate, export, register, deploy).
#
# SageMaker mounts /opt/ml for training and processing jobs owned by root and runs the image's USER.
# Started as uid 1000, a stage could not write /opt/ml/model, /opt/ml/output/{data,failure},
# /opt/ml/checkpoints or /opt/ml/processing/output/<name> (tests/containers/test_sagemaker_mounts.py
# saw "PermissionError: /opt/ml/output/data"). So these images start as root, and this script:
#   1. hands exactly the folders a stage writes to uid 1000: those under the ML root, any path an
#      orchestrator passes as --output-path NAME PATH (Kubeflow's artifact paths), and the folder of a
#      --metric-file NAME PATH or --result PATH (Kubeflow's output parameters);
#   2. drops to uid 1000 with setpriv (no groups, no capabilities, no_new_privs) before any Python runs.
# The trade-off: root exists in the container for these few shell lines, never for the stage code that
# parses untrusted audio. Started as any other user (compose runs ${SPEECHOPS_UID}), it only runs the command.
set -eu
if [ "$(id -u)" != 0 ]; then exec "$@"; fi
root=${SPEECHOPS_ML_ROOT:-/opt/ml}
user=${SPEECHOPS_RUN_AS:-1000:1000}
mkdir -p "$root/output"
for dir in "$root/model" "$root/output" "$root/checkpoints" "$root/processing/output"; do
  if [ -d "$dir" ]; then chown -R "$user" "$dir"; fi
done
before= last=
for arg in "$@"; do
  if [ "$before" = --output-path ]; then mkdir -p "$arg" && chown -R "$user" "$arg"; fi
  if [ "$before" = --metric-file ] || [ "$last" = --result ]; then
    folder=$(dirname "$arg") && mkdir -p "$folder" && chown "$user" "$folder"
  fi
  before=$last last=$arg
done
exec setpriv --reuid="${user%%:*}" --regid="${user##*:}" --clear-groups --no-new-privs --inh-caps=-all \
  --bounding-set=-all -- "$@"
