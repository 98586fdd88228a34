#!/usr/bin/env bash
# Build the stage images and push them to ECR, named and tagged the way the SageMaker backend
# expects them (one rule, pipelines/images.py: <registry>/speechops-<image>:<tag>).
#
#   infra/push_images.sh                          # this account and region, tag = git commit
#   infra/push_images.sh --tag v1 --only train --only serve
#   infra/push_images.sh --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com --dry-run   # print only
#
# Options:
#   --registry HOST   ECR registry (default: <account of the caller>.dkr.ecr.<region>.amazonaws.com)
#   --region REGION   default: AWS_REGION, AWS_DEFAULT_REGION or 'aws configure get region'
#   --tag TAG         default: the git commit, 12 hex digits (the SageMaker backend's default tag)
#   --only IMAGE      build only this image (repeatable): prepare tokenizer train evaluate export
#                     register deploy serve
#   --dry-run         print the commands, run nothing (no AWS call, no build)
# The repositories' tags are immutable (infra/ecr.yaml): a tag is pushed once and names that image
# forever, so there is no moving :latest; pushing an existing tag again fails (use a new commit or tag).
# Environment:
#   DOCKER              docker (default) or podman
#   BUILD_ARGS          extra arguments for containers/build.py, e.g. "--base-image my/debian:bookworm --ca-bundle ca.pem"
# Prerequisites: the repositories of infra/ecr.yaml, the AWS CLI, and credentials allowed to
# ecr:GetAuthorizationToken and to push to the speechops-* repositories.
set -euo pipefail

cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
BUILD_ARGS=${BUILD_ARGS:-}
PYTHON=${PYTHON:-python}
registry="" region="" tag="" dry_run=0
only=()

while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry=$2; shift 2 ;;
    --region) region=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

run() {  # echo a command; run it unless --dry-run
  echo "+ $*"
  if [ "$dry_run" = 0 ]; then "$@"; fi
}

if [ -z "$tag" ]; then
  tag=$("$PYTHON" -m pipelines.images --print-commit-tag || true)
  if [ -z "$tag" ]; then echo "no git commit to tag the images with: pass --tag" >&2; exit 2; fi
fi
if [ -z "$registry" ]; then
  if [ "$dry_run" = 1 ]; then
    echo "--dry-run needs --registry (it makes no AWS call)" >&2; exit 2
  fi
  region=${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}}
  if [ -z "$region" ]; then echo "no region: pass --region or set AWS_REGION" >&2; exit 2; fi
  account=$(aws sts get-caller-identity --query Account --output text)
  registry="$account.dkr.ecr.$region.amazonaws.com"
fi
region=${region:-$(echo "$registry" | sed -n 's/^[0-9]*\.dkr\.ecr\.\([a-z0-9-]*\)\.amazonaws\.com.*/\1/p')}

# image, repository and URI, from the one naming rule
mapfile -t lines < <("$PYTHON" -m pipelines.images --registry "$registry" --tag "$tag")
[ "${#lines[@]}" -gt 0 ] || { echo "pipelines.images printed nothing" >&2; exit 1; }

if [ "$dry_run" = 1 ]; then
  echo "+ aws ecr get-login-password --region $region | $DOCKER login --username AWS --password-stdin $registry"
else
  aws ecr get-login-password --region "$region" | "$DOCKER" login --username AWS --password-stdin "$registry"
fi

# build the bases and the images with containers/build.py (same names, same build arguments)
build=("$PYTHON" containers/build.py --registry "$registry" --tag "$tag" --engine "$DOCKER")
for image in "${only[@]}"; do build+=(--only "$image"); done
# shellcheck disable=SC2206  # BUILD_ARGS is a list of words on purpose
build+=($BUILD_ARGS)
if [ "$dry_run" = 1 ]; then build+=(--dry-run); fi
"${build[@]}"

for line in "${lines[@]}"; do
  read -r image repository uri <<<"$line"
  if [ "${#only[@]}" -gt 0 ] && [[ ! " ${only[*]} " == *" $image "* ]]; then
    continue
  fi
  run "$DOCKER" push "$uri"
done
echo "pushed to $registry with tag $tag: run.py ... --backend sagemaker --sagemaker-image-registry $registry --sagemaker-image-tag $tag"
