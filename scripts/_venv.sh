# Shared by scripts/run and scripts/test: make .venv and install duly into it when needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
# pytest on every core, at most 4 (scripts/test, scripts/soak). xdist's default distribution,
# `load`, spreads single tests; loadfile/loadscope would run only the first schemathesis case
# (they all share one test id).
PYTEST_WORKERS=(-n auto --maxprocesses 4)
