#!/usr/bin/env bash
# Idempotent set-up: Python 3.10 venv in .venv (with pip), pinned deps from requirements.lock via uv,
# and this project installed editable. Re-runs take a second when nothing changed.
# `setup.sh test` also installs the system tools only the tests need (Debian's chromium +
# chromedriver for the browser tests, wrk for the quick serving benchmark); `setup.sh bench`, wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  test) tools=(chromium:chromium chromedriver:chromium-driver wrk:wrk) ;;
  bench) tools=(wrk:wrk) ;;
  *) tools=() ;;
esac
missing=()
for tool in "${tools[@]}"; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: ${missing[*]} missing and not root: install them (apt-get install ${missing[*]});" \
      "the browser tests and serving benchmark rows that need them are skipped" >&2
  fi
fi

VENV=.venv
STAMP="$VENV/.setup-stamp"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi

find_python310() {
  local candidate
  for candidate in "${PYTHON310:-}" "$(command -v python3.10 2>/dev/null || true)"; do
    if [[ -n "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/3.10*/bin/python3.10; do
      if [[ -x "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        echo "$candidate"; return 0
      fi
    done
  fi
  return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
  if ! PY=$(find_python310); then
    cat >&2 <<'MSG'
setup: Python 3.10 not found. TFX 1.16 needs Python >=3.9,<3.11; this project pins 3.10.
  Install it, e.g. `pyenv install 3.10.13`, or your OS package `python3.10` (with venv),
  or point PYTHON310=/path/to/python3.10 at one, then run `make test` again.
MSG
    exit 1
  fi
  echo "setup: creating $VENV with $PY"
  "$PY" -m venv "$VENV"   # venv seeds pip: TFX pip-installs the module file at run time
fi

if [[ ! -x "$VENV/bin/uv" ]]; then
  command -v uv >/dev/null 2>&1 && UV=$(command -v uv) || { "$VENV/bin/python" -m pip install --quiet uv; UV="$VENV/bin/uv"; }
else
  UV="$VENV/bin/uv"
fi
echo "setup: installing pinned dependencies (requirements.lock)"
"$UV" pip install --python "$VENV/bin/python" --quiet --require-hashes -r requirements.lock
"$UV" pip install --python "$VENV/bin/python" --quiet --no-deps -e .
echo "$want" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" --version), $VENV)"
