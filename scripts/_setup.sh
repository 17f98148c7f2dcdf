# Shared set-up for scripts/test and scripts/bench, sourced by both: a .venv with the
# project and its dev and peer extras, and (install_redis) Debian's redis-server, redis-sentinel
# and redis-tools when they are missing. Expects to run from the repository root.
# shellcheck shell=bash

ROOT=$PWD
PYTHON=${PYTHON:-python3}

section() { printf '\n==> %s\n' "$*"; }
die() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "needs root for: $*"
    fi
}

# --- Python environment --------------------------------------------------------------------
section "Python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is older than 3.11 (set PYTHON=...)"
    if ! "$PYTHON" -m venv .venv; then
        # Debian's own python3 keeps venv/ensurepip in a separate package.
        command -v apt-get >/dev/null 2>&1 || die "could not create .venv"
        rm -rf .venv
        if ! { as_root apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv &&
            "$PYTHON" -m venv .venv; }; then
            die "could not create .venv"
        fi
    fi
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "pip install -e '.[dev,peers]'"
    pip_log=$(mktemp) || die "mktemp failed"
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,peers]' \
        >"$pip_log" 2>&1; then
        cat "$pip_log"
        rm -f "$pip_log"
        die "pip install -e '.[dev,peers]' failed"
    fi
    rm -f "$pip_log"
    touch .venv/.installed
else
    echo "up to date (.venv/.installed is newer than pyproject.toml)"
fi
export VIRTUAL_ENV=$ROOT/.venv
export PATH=$ROOT/.venv/bin:$PATH
unset PYTHONHOME


install_redis() {
    # --- Redis binaries ------------------------------------------------------------------------
    section "Redis"
    have_redis() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }
    if ! have_redis; then
        command -v apt-get >/dev/null 2>&1 ||
            die "redis-server/redis-cli not on PATH and no apt-get: install Redis 7 by hand"
        echo "apt-get install redis-server redis-sentinel redis-tools"
        if ! { as_root apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                redis-server redis-sentinel redis-tools >/dev/null; }; then
            die "apt-get install of Redis failed"
        fi
        have_redis || die "redis-server/redis-cli still not on PATH after apt-get install"
        # The packages may have started their services (port 6379, 26379): the tests use their
        # own servers, so stop those rather than leave them running.
        for service in redis-sentinel redis-server; do
            if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service"; then
                as_root systemctl stop "$service" || true
            elif [ -x "/etc/init.d/$service" ]; then
                as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
            fi
        done
    fi
    redis-server --version

}
