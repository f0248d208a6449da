# shellcheck shell=bash
# Shared set-up for scripts/test and scripts/run (sourced, not run): system packages
# through apt-get when they are missing, then the project's .venv with the package
# installed editable. Needs only python3 (3.10+) on a Debian/Ubuntu machine.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"
SYSTEM_PACKAGES=(libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox tmux)

# as root when we are root, through sudo when it exists; otherwise fail with the command
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "need root (and no sudo) to run: $*" >&2
    return 1
  fi
}

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return 1
}

missing_packages() {
  local p
  for p in "${SYSTEM_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      echo "$p"
    fi
  done
}

ensure_system_packages() {
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    echo "no apt-get here: install ${SYSTEM_PACKAGES[*]} (or equivalents) yourself" >&2
    return 0
  fi
  local missing
  missing="$(missing_packages)"
  if [ -n "$missing" ]; then
    echo "installing system packages: $(echo "$missing" | tr '\n' ' ')"
    # shellcheck disable=SC2086  # one package name per word
    apt_install $missing || return 1
  fi
}

# python3 -m venv fails on Debian/Ubuntu until python3-venv (ensurepip) is installed
ensure_venv() {
  # a venv whose python moved, or one left without pip by a failed `python3 -m venv`
  if [ -e "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "the existing $VENV is broken: recreating it"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      if ! command -v apt-get >/dev/null 2>&1; then
        echo "$PYTHON -m venv failed and there is no apt-get to install python3-venv" >&2
        return 1
      fi
      local ver
      ver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      echo "installing python3-venv"
      apt_install python3-venv || apt_install "python$ver-venv" || return 1
      "$PYTHON" -m venv "$VENV" || return 1
    fi
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # (pip's notes about missing find-links directories in a machine's pip.conf are noise)
  # the optional extras too: their tests must run (and fail when missing), never skip
  "$VENV/bin/python" -m pip install -q -e "$REPO[test,mcp,aec]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  [ "${PIPESTATUS[0]}" = 0 ] || return 1
  # the echo canceller (the aec extra): CI tests it, never skips it
  if ! "$VENV/bin/python" -c "from livekit.rtc import AudioProcessingModule" 2>/dev/null; then
    echo "the aec extra (livekit's AudioProcessingModule) does not import here" >&2
    [ "${CI:-}" != true ] || return 1
    echo "(its tests will be skipped; under CI=true this fails)" >&2
  fi
  export PATH="$VENV/bin:$PATH"
  export VIRTUAL_ENV="$VENV"
}

# Functions here do not rely on set -e (it is off inside `cmd || ...`): each failure
# returns explicitly.

# run "$@" and print how long it took: timed NAME command...
timed() {
  local name="$1" start end status=0
  shift
  start="${EPOCHREALTIME/,/.}"
  "$@" || status=$?
  end="${EPOCHREALTIME/,/.}"
  awk -v n="$name" -v s="$start" -v e="$end" -v st="$status" \
    'BEGIN { printf "== %-16s %7.1f s%s\n", n, e - s, (st == 0 ? "" : "  FAILED (exit " st ")") }'
  return "$status"
}
