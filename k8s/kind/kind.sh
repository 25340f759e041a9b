#!/usr/bin/env bash
# A kind cluster with Kubeflow Pipelines standalone, SeaweedFS and MLflow, for trying lumbar's pipelines
# on a laptop. Needs Docker, kind and kubectl, and network access to pull images and the KFP
# manifests. Used by `make kind-up`, `make kind-down` and `make kind-e2e`.
set -euo pipefail

CLUSTER=lumbar
KFP_VERSION="${KFP_VERSION:-2.14.3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
SECRETS="$HERE/secrets.env"

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (see README, 'Run on a cluster')" >&2; exit 2; }
  done
  docker info >/dev/null 2>&1 || { echo "error: the Docker engine is not reachable (docker info failed)" >&2; exit 2; }
}

value() {  # value KEY : its value in secrets.env
  local found
  found="$(grep -E "^${1}=" "$SECRETS" | head -n 1 | cut -d= -f2-)"
  [ -n "$found" ] || { echo "error: $SECRETS has no $1" >&2; exit 2; }
  printf '%s' "$found"
}

secret() {  # secret NAMESPACE NAME KEY=SECRETS_ENV_KEY... : a generic secret from secrets.env
  local ns=$1 name=$2; shift 2
  local args=()
  for pair in "$@"; do
    args+=("--from-literal=${pair%%=*}=$(value "${pair#*=}")")
  done
  kubectl -n "$ns" create secret generic "$name" "${args[@]}" --dry-run=client -o yaml | kubectl apply -f -
}

s3_config() {  # SeaweedFS's identities (k8s/secrets/seaweedfs-s3.example.json) with the keys of secrets.env
  local config
  config="$(cat "$ROOT/k8s/secrets/seaweedfs-s3.example.json")"
  for role in ADMIN DATASETS TRAINING MLFLOW; do
    local lower; lower="$(echo "$role" | tr 'A-Z' 'a-z')"
    config="${config//\"accessKey\": \"lumbar-${lower}\"/\"accessKey\": \"$(value "S3_${role}_ACCESS_KEY")\"}"
    config="${config//change-me-${lower}-to-a-long-random-string/$(value "S3_${role}_SECRET_KEY")}"
  done
  kubectl -n lumbar create secret generic lumbar-seaweedfs-s3 --from-literal=s3.json="$config" \
    --dry-run=client -o yaml | kubectl apply -f -
}

up() {
  need docker kind kubectl
  [ -f "$SECRETS" ] || { echo "error: copy k8s/kind/secrets.env.example to k8s/kind/secrets.env and set its values" >&2; exit 2; }
  kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config "$HERE/cluster.yaml"
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
  kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"
  eval "$("$BIN/python" -m components.images --shell)"
  # kind has no GPU: pipelines compiled --no-gpu train in the training image's CPU variant
  for image in "$BASE_IMAGE" "$TRAIN_CPU_IMAGE" "$MLFLOW_IMAGE" "$SEAWEEDFS_IMAGE" "$POSTGRES_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "error: build the images first (make images)" >&2; exit 2; }
    kind load docker-image --name "$CLUSTER" "$image"
  done
  kubectl create namespace lumbar --dry-run=client -o yaml | kubectl apply -f -
  s3_config
  secret lumbar lumbar-s3-admin AWS_ACCESS_KEY_ID=S3_ADMIN_ACCESS_KEY AWS_SECRET_ACCESS_KEY=S3_ADMIN_SECRET_KEY
  secret lumbar lumbar-s3-mlflow AWS_ACCESS_KEY_ID=S3_MLFLOW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=S3_MLFLOW_SECRET_KEY
  secret lumbar lumbar-postgres POSTGRES_USER=POSTGRES_USER POSTGRES_PASSWORD=POSTGRES_PASSWORD
  secret lumbar lumbar-mlflow-auth MLFLOW_AUTH_ADMIN_USERNAME=MLFLOW_ADMIN_USERNAME \
    MLFLOW_AUTH_ADMIN_PASSWORD=MLFLOW_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY=MLFLOW_FLASK_SECRET_KEY
  secret kubeflow lumbar-s3-datasets AWS_ACCESS_KEY_ID=S3_DATASETS_ACCESS_KEY AWS_SECRET_ACCESS_KEY=S3_DATASETS_SECRET_KEY
  secret kubeflow lumbar-s3-training AWS_ACCESS_KEY_ID=S3_TRAINING_ACCESS_KEY AWS_SECRET_ACCESS_KEY=S3_TRAINING_SECRET_KEY
  secret kubeflow lumbar-mlflow-client MLFLOW_TRACKING_USERNAME=MLFLOW_ADMIN_USERNAME \
    MLFLOW_TRACKING_PASSWORD=MLFLOW_ADMIN_PASSWORD
  secret kubeflow lumbar-pseudonym LUMBAR_PSEUDONYM_SECRET=LUMBAR_PSEUDONYM_SECRET
  kubectl apply -k "$ROOT/k8s/overlays/kind"
  kubectl -n lumbar rollout status statefulset/seaweedfs --timeout=600s
  kubectl -n lumbar wait --for=condition=complete --timeout=600s job/lumbar-bucket
  kubectl -n lumbar rollout status deployment/mlflow --timeout=600s
  kubectl -n kubeflow wait --for=condition=available --timeout=900s deployment/ml-pipeline deployment/ml-pipeline-ui
  cat <<MSG
Cluster '$CLUSTER' is up.
  Kubeflow Pipelines UI and API: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80  -> http://localhost:8080
  MLflow UI:                     http://localhost:5000
  Object store (S3):             http://localhost:9000 (keys in k8s/kind/secrets.env)
MSG
}

down() {
  command -v kind >/dev/null || { echo "error: kind is needed" >&2; exit 2; }
  kind delete cluster --name "$CLUSTER"
}

e2e() {
  need docker kind kubectl
  export LUMBAR_S3_ENDPOINT=http://127.0.0.1:9000 AWS_REGION=us-east-1
  AWS_ACCESS_KEY_ID="$(value S3_ADMIN_ACCESS_KEY)" AWS_SECRET_ACCESS_KEY="$(value S3_ADMIN_SECRET_KEY)"
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 >/dev/null 2>&1 &
  local forward=$!
  trap 'kill $forward 2>/dev/null || true' EXIT
  sleep 3
  # the cluster has what the pipelines read (namespace, config map, secrets, KFP >= the minimum) before any run
  "$BIN/lumbar" cluster check --namespace kubeflow --no-gpu --kfp-host http://localhost:8080
  local work; work="$(mktemp -d)"
  "$BIN/lumbar" synth pacs "$work/export" --patients 8 --size 128 --seed 0
  "$BIN/lumbar" store cp "$work/export" s3://lumbar/exports/kind-e2e
  "$BIN/lumbar" pipeline submit dataset_c --host http://localhost:8080 --no-gpu --wait 1800 \
    export_uri=s3://lumbar/exports/kind-e2e publish_to=s3://lumbar
  "$BIN/lumbar" pipeline submit procedure1 --host http://localhost:8080 --no-gpu --wait 3600 \
    dataset_uri=s3://lumbar/datasets/dataset-c/latest backbones=mobilenetv2 weights=none epochs=1 image_size=32
  echo "kind-e2e: dataset_c and procedure1 succeeded; see http://localhost:8080 and http://localhost:5000"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  e2e) e2e ;;
  *) echo "usage: $0 up|down|e2e" >&2; exit 2 ;;
esac
