#!/usr/bin/env bash
# Install everything the test suite needs (Python packages, the PostgreSQL server the store tests start, Debian's
# chromium for the browser tests) and run it. Playwright drives /usr/bin/chromium: never `playwright install`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
[ -x /usr/bin/chromium ] || apt_install chromium

exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
