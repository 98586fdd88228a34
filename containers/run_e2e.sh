#!/usr/bin/env bash
# Build everything and run a pipeline end to end in containers, then serve its model from the
# serving container and send it a real request. Works with podman alone: no Docker engine and no
# registry needed (the Debian base comes from Debian's packages through containers/debian_base.sh).
#
#   containers/run_e2e.sh                                  # whisper_intensity, tiny profile
#   containers/run_e2e.sh --pipeline ctc_asr --set train.epochs=1
#   containers/run_e2e.sh --no-build                       # reuse the images already built
#
# Options:
#   --pipeline NAME      default whisper_intensity
#   --profile NAME       default tiny
#   --set KEY=VALUE      config override (repeatable)
#   --runs-dir DIR       default ./runs (the local backend's, so the two runs can be compared)
#   --ca-bundle FILE     extra CA bundle for the image builds (default: the system bundle, which
#                        carries a TLS-inspecting proxy's CA where there is one)
#   --base-image IMAGE   default: localhost/speechops-debian:bookworm, built when missing
#   --no-build           skip building images
# Prints each phase's wall time, the stage summary, the metrics next to the latest local run's,
# and the serving container's answers to /ping and /invocations.
set -euo pipefail
cd "$(dirname "$0")/.."

pipeline=whisper_intensity profile=tiny runs_dir=$PWD/runs build=1
ca_bundle=/etc/ssl/certs/ca-certificates.crt base_image=localhost/speechops-debian:bookworm
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pipeline) pipeline=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --set) overrides+=(--set "$2"); shift 2 ;;
    --runs-dir) runs_dir=$(realpath -m "$2"); shift 2 ;;
    --ca-bundle) ca_bundle=$2; shift 2 ;;
    --base-image) base_image=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python}
engine=$($PYTHON -c "from pipelines.containers import detect; print(detect().name)")
[ "$engine" = podman ] && podman_args=$($PYTHON -c "from pipelines.containers import detect; print(' '.join(detect().global_args))") || podman_args=""
started=$(date +%s)
phase() { echo; echo "== $* ($(( $(date +%s) - started ))s elapsed)"; }

if [ "$build" = 1 ]; then
  if [ "$base_image" = localhost/speechops-debian:bookworm ] && ! "$engine" image inspect "$base_image" >/dev/null 2>&1; then
    phase "building the Debian base image from Debian's packages"
    containers/debian_base.sh --name "$base_image"
  fi
  phase "building the images"
  ca_args=()
  [ -n "$ca_bundle" ] && [ -f "$ca_bundle" ] && ca_args=(--ca-bundle "$ca_bundle")
  $PYTHON containers/build.py --base-image "$base_image" "${ca_args[@]}"
fi

run_id=containers-$(date -u +%Y%m%d-%H%M%S)
phase "running $pipeline ($profile) in containers, run $run_id"
t0=$(date +%s)
$PYTHON pipelines/run.py --pipeline "$pipeline" --profile "$profile" --backend compose --gpu auto \
  --runs-dir "$runs_dir" --run-id "$run_id" "${overrides[@]}"
echo "pipeline in containers: $(( $(date +%s) - t0 ))s"
run_dir=$runs_dir/$pipeline/$run_id

phase "comparing with the latest local run of $pipeline"
$PYTHON - "$runs_dir" "$pipeline" "$run_id" <<'EOF'
import json, sys
from pathlib import Path
runs, pipeline, run_id = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def metrics(run_dir):
    out = {}
    for stage in ("evaluate", "export"):
        report = run_dir / stage / "report.json"
        if report.is_file():
            for key, value in (json.loads(report.read_text()).get("metrics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"{stage}.{key}"] = value
    return out
def succeeded(path):
    run = path / "run.json"  # local and compose runs have one; the SageMaker plan folder does not
    return run.is_file() and json.loads(run.read_text()).get("status") == "succeeded"
local = [p for p in sorted((runs / pipeline).iterdir()) if p.is_dir() and not p.is_symlink()
         and not p.name.startswith(("containers-", ".")) and succeeded(p)] if (runs / pipeline).is_dir() else []
mine = metrics(runs / pipeline / run_id)
if not local:
    print("no successful local run to compare with: python pipelines/run.py --pipeline", pipeline)
    print(json.dumps(mine, indent=1))
    sys.exit(0)
theirs = metrics(local[-1])
print(f"{'metric':40s} {'containers':>12s} {'local ' + local[-1].name:>24s}")
for key in sorted(set(mine) | set(theirs)):
    a, b = mine.get(key), theirs.get(key)
    fmt = lambda v: "-" if v is None else f"{v:.6g}"
    print(f"{key:40s} {fmt(a):>12s} {fmt(b):>24s}")
EOF

phase "serving the trained model from the serving container"
mapfile -t compose < <($PYTHON -c "from pipelines.containers import detect; print('\n'.join(detect().compose_command()))")
export SPEECHOPS_RUN_DIR=$run_dir SPEECHOPS_UID=1000 SPEECHOPS_GID=1000
project=speechops-e2e-$$
cleanup() { "${compose[@]}" -p "$project" -f "$run_dir/compose.yaml" --profile serve down >/dev/null 2>&1 || true; }
trap cleanup EXIT
"${compose[@]}" -p "$project" -f "$run_dir/compose.yaml" --profile serve up -d --no-deps serve
containers=$("$engine" $podman_args ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}}')
echo "serving containers: $(echo $containers)"
first=$(echo "$containers" | head -n1)
port_of() { "$engine" $podman_args port "$1" 8080 | head -n1 | sed 's/.*://'; }
port=$(port_of "$first")
for i in $(seq 1 90); do
  if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then break; fi
  sleep 2
done
for c in $containers; do
  p=$(port_of "$c")
  for i in $(seq 1 60); do curl -fsS "http://127.0.0.1:$p/ping" >/dev/null 2>&1 && break; sleep 2; done
  # the image's HEALTHCHECK, run on demand (podman schedules it with systemd timers, absent here)
  if [ "$engine" = podman ]; then
    podman $podman_args healthcheck run "$c" >/dev/null 2>&1 && health=healthy || health=unhealthy
  else
    health=$(docker inspect --format '{{.State.Health.Status}}' "$c" 2>/dev/null || echo unknown)
  fi
  echo "replica $c on port $p: /ping $(curl -sS -o /dev/null -w 'HTTP %{http_code}' "http://127.0.0.1:$p/ping"), health check: $health"
done
echo "GET /ping -> $(curl -sS -w ' (HTTP %{http_code})' "http://127.0.0.1:$port/ping")"
clip=$($PYTHON - "$run_dir" <<'EOF'
import json, sys
from pathlib import Path
data = Path(sys.argv[1]) / "prepare" / "data"
row = json.loads((data / "test.jsonl").read_text().splitlines()[0])
print(data / row["audio"], "|", row.get("text", ""))
EOF
)
audio=${clip%% | *}
echo "POST /invocations with $(basename "$audio") (reference: ${clip#* | })"
$PYTHON -c "import sys, soundfile as sf; x, sr = sf.read(sys.argv[1]); sf.write(sys.argv[2], x, sr, subtype='PCM_16')" \
  "$audio" /tmp/speechops-e2e-$$.wav
echo "  -> $(curl -sS -w ' (HTTP %{http_code})' -H 'Content-Type: audio/wav' --data-binary @/tmp/speechops-e2e-$$.wav \
  "http://127.0.0.1:$port/invocations")"
echo "  malformed request -> $(curl -sS -w ' (HTTP %{http_code})' -H 'Content-Type: application/json' -d '{"base64": 5}' \
  "http://127.0.0.1:$port/invocations")"
rm -f /tmp/speechops-e2e-$$.wav
phase "done"
