#!/usr/bin/env bash
# rtwidgets developer entry point. Idempotent: a second run only checks.
#   bash scripts/dev.sh setup   install everything (Debian packages, venv, JS bundle)
#   bash scripts/dev.sh lab     setup, then JupyterLab on notebooks/01_quickstart.ipynb
#   bash scripts/dev.sh test    setup, then the whole test suite (what .ci/run calls)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RTW_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)

setup() {
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "[setup] apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  if [ ! -x "$PY" ]; then
    echo "[setup] creating venv $VENV"
    python3 -m venv "$VENV"
  fi
  # The JS bundles before `pip install -e`: its build hook (hatch-jupyter-builder, see
  # pyproject.toml) then finds them newer than js/src and skips npm instead of running
  # `npm install` + the build itself.
  if [ -f "$ROOT/js/package.json" ]; then
    if [ ! -d "$ROOT/js/node_modules" ] || [ "$ROOT/js/package-lock.json" -nt "$ROOT/js/node_modules" ]; then
      echo "[setup] npm ci (js/)"
      (cd "$ROOT/js" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
    fi
    echo "[setup] building the JS bundle"
    (cd "$ROOT/js" && npm run --silent build)
  fi
  local stamp="$VENV/.rtw-installed"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "[setup] pip install -e .[dev]"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e "$ROOT[dev]"
    touch "$stamp"
  fi
}

cmd="${1:-test}"; shift || true
case "$cmd" in
  setup) setup ;;
  lab)
    setup
    export JUPYTER_CONFIG_DIR="${JUPYTER_CONFIG_DIR:-$ROOT/.jupyter/config}"
    export JUPYTER_RUNTIME_DIR="${JUPYTER_RUNTIME_DIR:-$ROOT/.jupyter/runtime}"
    export IPYTHONDIR="${IPYTHONDIR:-$ROOT/.jupyter/ipython}"
    exec "$PY" -m jupyterlab --ServerApp.ip=127.0.0.1 --allow-root \
      --notebook-dir "$ROOT/notebooks" "$@" "$ROOT/notebooks/01_quickstart.ipynb"
    ;;
  test)
    setup
    cd "$ROOT"
    "$VENV/bin/ruff" check rtwidgets tests benchmarks notebooks apps
    NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$ROOT/site"   # docs: broken links fail
    # [tool.mypy] in pyproject.toml names the checked files; .mypy_cache keeps reruns fast.
    "$VENV/bin/mypy" --config-file "$ROOT/pyproject.toml" --cache-dir "$ROOT/.mypy_cache"
    if [ -f "$ROOT/js/package.json" ]; then (cd "$ROOT/js" && npm test --silent); fi
    exec "$PY" -m pytest "$@"
    ;;
  *) echo "usage: $0 setup|lab|test [args]" >&2; exit 2 ;;
esac
