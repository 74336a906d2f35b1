#!/usr/bin/env bash
# What a user runs. First use creates .venv and installs the pinned dependencies; then
#   bash run.sh [launch.py options]   starts the web UI (see `bash run.sh --help`)
#   bash run.sh test [pytest args]    runs the whole test suite (installs the distributed extra too)
#   bash run.sh install [EXTRA...]    installs only, e.g. `install distributed` for `python -m asr job`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

install_deps() {
  # One install serves both the app and the tests (the test extras are small). Extras installed
  # once stay installed: the stamp keeps them, and a reinstall asks for them again.
  local extras=test${1:+,$1} had="" had_hash=""
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[run.sh] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  local hash extra missing=""
  hash=$(sha1sum pyproject.toml | cut -c1-12)
  if [ -f "$STAMP" ]; then read -r had had_hash < "$STAMP" || true; fi
  for extra in ${extras//,/ }; do
    case ",$had," in *",$extra,"*) ;; *) missing=1 ;; esac
  done
  extras=$(printf '%s\n' ${had//,/ } ${extras//,/ } | sort -u | paste -sd, -)
  local want="$extras $hash"
  if [ -n "$missing" ] || [ "$had_hash" != "$hash" ]; then
    echo "[run.sh] installing dependencies${extras:+ ($extras)} (first run takes a few minutes)"
    "$VENV/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
    echo "$want" > "$STAMP"
  fi
}

ensure_browser() {
  # The browser tests drive Debian's Chromium; a CJK font makes Chinese labels render.
  if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "noto.*cjk"; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[run.sh] installing chromium and fonts-noto-cjk for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "[run.sh] chromium not found and not root: browser tests will be skipped" >&2
  fi
}

if [ "${1:-}" = "install" ]; then
  shift
  install_deps "$(IFS=,; echo "$*")"
  echo "[run.sh] installed${*:+ with: $*}"
  exit 0
fi
if [ "${1:-}" = "test" ]; then
  shift
  install_deps distributed  # so CI runs tests/test_job.py on Ray (about 140 MB to download once)
  ensure_browser
  exec "$VENV/bin/python" -m pytest "$@"
fi
install_deps
exec "$VENV/bin/python" launch.py "$@"
