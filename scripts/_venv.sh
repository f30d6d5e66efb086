# Sourced by the other scripts: make sure .venv exists (Debian needs python3-venv for that).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "python3 -m venv is missing; installing Debian's python3-venv" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "python3 -m venv is missing: run 'sudo apt-get install python3-venv' and try again" >&2
      exit 1
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi
