# shellcheck shell=bash
#
# The PostgreSQL clients of the client-compatibility suite (tests/tests/client_compat.rs):
# Python psycopg 3 and SQLAlchemy 2 from PyPI, node-postgres from npm, and pgjdbc from Debian's
# libpostgresql-jdbc-java (with a JDK to compile the Java client). Each is installed only when
# missing, under <repo>/.test-clients (Python and npm packages) or system-wide (Debian).
#
#   source tests/clients.sh && polygate_clients_install
#
# exports POLYGATE_TEST_CLIENT_PYTHON, POLYGATE_TEST_CLIENT_NODE_PATH and
# POLYGATE_TEST_PGJDBC_JAR for the tests.

_PGC_REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
_PGC_DIR=$_PGC_REPO/.test-clients
_PGC_PY_PACKAGES=("psycopg[binary]>=3.2,<4" "sqlalchemy>=2.0,<3")
_PGC_NPM_PACKAGES=("pg@8")
_PGC_JAR=/usr/share/java/postgresql.jar

_pgc_fail() {
    echo "clients: $1" >&2
    [[ -n ${2:-} && -f $2 ]] && tail -n 30 "$2" >&2
    return 1
}

_pgc_apt_install() {
    local log=$_PGC_DIR/apt.log
    command -v apt-get >/dev/null 2>&1 || _pgc_fail "cannot install $*: no apt-get" || return 1
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; } </dev/null >"$log" 2>&1; then
        _pgc_fail "apt-get install $* failed" "$log"
        return 1
    fi
}

polygate_clients_install() {
    mkdir -p "$_PGC_DIR"
    local log=$_PGC_DIR/pip.log packages=()

    # psql comes with PostgreSQL's client package.
    command -v psql >/dev/null 2>&1 || _pgc_apt_install postgresql-client || return 1

    # Python: a venv of its own.
    if ! "$_PGC_DIR/venv/bin/python" -c 'import psycopg, sqlalchemy' >/dev/null 2>&1; then
        python3 -m venv "$_PGC_DIR/venv" >"$log" 2>&1 || { _pgc_fail "cannot create $_PGC_DIR/venv" "$log"; return 1; }
        "$_PGC_DIR/venv/bin/python" -m pip install "${_PGC_PY_PACKAGES[@]}" </dev/null >>"$log" 2>&1 ||
            { _pgc_fail "pip install ${_PGC_PY_PACKAGES[*]} failed" "$log"; return 1; }
    fi

    # Node.js and node-postgres.
    command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
    # A JDK and pgjdbc.
    command -v javac >/dev/null 2>&1 || packages+=(default-jdk-headless)
    [[ -f $_PGC_JAR ]] || packages+=(libpostgresql-jdbc-java)
    if ((${#packages[@]})); then
        _pgc_apt_install "${packages[@]}" || return 1
    fi
    if [[ ! -d $_PGC_DIR/node/node_modules/pg ]]; then
        mkdir -p "$_PGC_DIR/node"
        npm install --prefix "$_PGC_DIR/node" --no-audit --no-fund "${_PGC_NPM_PACKAGES[@]}" \
            </dev/null >"$_PGC_DIR/npm.log" 2>&1 ||
            { _pgc_fail "npm install ${_PGC_NPM_PACKAGES[*]} failed" "$_PGC_DIR/npm.log"; return 1; }
    fi

    export POLYGATE_TEST_CLIENT_PYTHON=$_PGC_DIR/venv/bin/python
    export POLYGATE_TEST_CLIENT_NODE_PATH=$_PGC_DIR/node/node_modules
    export POLYGATE_TEST_PGJDBC_JAR=$_PGC_JAR
    echo "clients: psql, psycopg $("$POLYGATE_TEST_CLIENT_PYTHON" -c 'import psycopg; print(psycopg.__version__)'), SQLAlchemy $("$POLYGATE_TEST_CLIENT_PYTHON" -c 'import sqlalchemy; print(sqlalchemy.__version__)'), node-postgres, pgjdbc ($_PGC_JAR)"
}
