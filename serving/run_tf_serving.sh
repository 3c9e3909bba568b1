#!/usr/bin/env bash
# Serve <home>/serving_model/mnist with the real TensorFlow Serving: the tensorflow/serving
# Docker image, or a local tensorflow_model_server when one is on PATH (or --local).
#   serving/run_tf_serving.sh [HOME] [--local]
# HOME defaults to $MNIST_TFX_HOME. REST: 127.0.0.1:8501, gRPC: 127.0.0.1:8500.
set -euo pipefail

home="${MNIST_TFX_HOME:-}"
local_binary=false
for arg in "$@"; do
  case "$arg" in
    --local) local_binary=true ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) home="$arg" ;;
  esac
done
[[ -n "$home" ]] || { echo "usage: $0 HOME (or set MNIST_TFX_HOME)" >&2; exit 2; }
# The model name and its folder under the home, from the project's config (defined there once).
REPO=$(cd "$(dirname "$0")/.." && pwd)
layout() {
  "$REPO/.venv/bin/python" -c "import sys; from pathlib import Path; from components import features
from pipeline.configs import PipelineConfig
print(features.MODEL_NAME if sys.argv[2] == 'name' else PipelineConfig(home=Path(sys.argv[1])).serving_model_dir)" "$home" "$1"
}
model_name=$(layout name)
base_path=$(layout base_path)
model_dir="$(cd "$base_path" 2>/dev/null && pwd)" \
  || { echo "no pushed model under $base_path: run the pipeline first" >&2; exit 1; }
version="${TF_SERVING_VERSION:-2.16.1}"

if $local_binary || { command -v tensorflow_model_server >/dev/null && ! command -v docker >/dev/null; }; then
  exec tensorflow_model_server --port=8500 --rest_api_port=8501 \
    --model_name="$model_name" --model_base_path="$model_dir"
fi
command -v docker >/dev/null || { echo "neither docker nor tensorflow_model_server found" >&2; exit 1; }
exec docker run --rm --init \
  -p 127.0.0.1:8500:8500 -p 127.0.0.1:8501:8501 \
  --mount "type=bind,source=$model_dir,target=/models/$model_name,readonly" \
  -e MODEL_NAME="$model_name" \
  "tensorflow/serving:$version"
