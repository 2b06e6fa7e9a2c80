# Sourced by the test tools' run scripts (tests/autobahn/run.sh, tests/schemathesis/run.sh):
# installs one pinned PyPI tool into its own venv, once, shared by concurrent runs.
#
#   pyvenv_ensure TAG HOME VENV SPEC MODULE [PYTHON]
#
# TAG names the tool in messages; HOME holds the logs and the install lock; VENV is created
# with SPEC (`name==version`) installed and MODULE importable; PYTHON (optional) is tried
# before python3/python3.1x. On a fresh Debian without python3 or python3-venv, installs them
# with apt-get when root. Exits 2 when the tool cannot be installed.

pyvenv_die() { echo "$PYVENV_TAG: ERROR: $*" >&2; exit 2; }

pyvenv_python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }

pyvenv_find_python() {
    local c
    for c in ${PYVENV_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$c" >/dev/null 2>&1 && pyvenv_python_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

pyvenv_apt_install() {
    # Fresh Debian: no python3, or python3 without ensurepip (python3-venv).
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    echo "$PYVENV_TAG: apt-get install $* (log: $PYVENV_HOME/apt.log)" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
            >"$PYVENV_HOME/apt.log" 2>&1; then
        tail -n 20 "$PYVENV_HOME/apt.log" >&2
        return 1
    fi
}

pyvenv_ready() {
    [ -f "$PYVENV_VENV/.ok" ] && "$PYVENV_VENV/bin/python" -c "import $PYVENV_MODULE" >/dev/null 2>&1
}

pyvenv_install() {
    local py
    echo "$PYVENV_TAG: installing $PYVENV_SPEC into $PYVENV_VENV" >&2
    if ! py=$(pyvenv_find_python); then
        pyvenv_apt_install python3 python3-venv || pyvenv_die "no Python >= 3.10 found"
        py=$(pyvenv_find_python) || pyvenv_die "no Python >= 3.10 found after apt-get"
    fi
    rm -rf "$PYVENV_VENV"
    if ! "$py" -m venv "$PYVENV_VENV" >"$PYVENV_HOME/venv.log" 2>&1; then
        rm -rf "$PYVENV_VENV"
        echo "$PYVENV_TAG: '$py -m venv' failed (no ensurepip?), trying python3-venv" >&2
        pyvenv_apt_install python3-venv || pyvenv_die "'$py -m venv' failed (install python3-venv)"
        "$py" -m venv "$PYVENV_VENV" >&2 || pyvenv_die "'$py -m venv' failed"
    fi
    "$PYVENV_VENV/bin/python" -m pip install --disable-pip-version-check -q "$PYVENV_SPEC" >&2 \
        || pyvenv_die "pip install $PYVENV_SPEC failed"
    "$PYVENV_VENV/bin/python" -c "import $PYVENV_MODULE" || pyvenv_die "$PYVENV_MODULE does not import after install"
    touch "$PYVENV_VENV/.ok"
}

pyvenv_ensure() {
    PYVENV_TAG=$1 PYVENV_HOME=$2 PYVENV_VENV=$3 PYVENV_SPEC=$4 PYVENV_MODULE=$5 PYVENV_PYTHON=${6:-}
    mkdir -p "$PYVENV_HOME"
    pyvenv_ready && return 0
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$PYVENV_HOME/.install.lock"
        flock 9
    fi
    pyvenv_ready || pyvenv_install
    if command -v flock >/dev/null 2>&1; then
        exec 9>&-
    fi
}
