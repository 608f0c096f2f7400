#!/usr/bin/env bash
# Install everything the test suite needs (Python packages, PostgreSQL server) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  else
    sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
