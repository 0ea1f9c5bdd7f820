# shellcheck shell=bash
#
# Real backend servers for polygate's tests, each private to one test run:
#   - PostgreSQL: a throw-away cluster (initdb in a temp dir), never the system one on 5432;
#   - SecantusDB (PyPI `secantusdb`), a MongoDB wire-protocol server, in memory;
#   - osmem (PyPI `osmem-server`), an in-memory OpenSearch-compatible REST server.
# Each listens on a free loopback port. The Python packages live in a venv at
# <repo>/.test-venv, created on first use and reused afterwards.
#
# Usage (bash; `set -euo pipefail` in the caller is fine):
#   source tests/backends.sh
#   trap polygate_backends_stop EXIT
#   polygate_backends_start
#
# polygate_backends_start exports
#   POLYGATE_TEST_PG_URL=postgres://postgres@127.0.0.1:PORT/postgres   (trust auth)
#   POLYGATE_TEST_MONGO_URL=mongodb://127.0.0.1:PORT
#   POLYGATE_TEST_ES_URL=http://127.0.0.1:PORT
# A variable the caller has already set is kept as it is and its server is not started, so
# the tests can be pointed at other servers. Call it directly, not in $(...) or a pipeline:
# it keeps what it started in shell variables for polygate_backends_stop. If it fails, it
# prints why and stops whatever it had started before returning non-zero.
#
# Optional settings:
#   POLYGATE_TEST_BACKEND_TIMEOUT  seconds to wait for each server to come up (default 120;
#                                  SecantusDB is a Python server and starts slowly on a busy
#                                  machine)
#   POLYGATE_TEST_PG_BINDIR        directory holding initdb/pg_ctl/postgres to use, instead of
#                                  searching PATH, /usr/local/bin and /usr/lib/postgresql/*/bin
#
# Logs go to <repo>/target/test-backends/run-*/ (the newest few runs are kept); a server
# that fails to start has its log tail printed along with that directory.

_PGB_REPO=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
_PGB_VENV=$_PGB_REPO/.test-venv
_PGB_PY_PACKAGES=(secantusdb osmem-server)

# State of the current run; polygate_backends_stop clears it.
_PGB_RUN_DIR=''     # logs, and the `servers` record of what this run started
_PGB_TMP=''         # server data, removed at stop
_PGB_PG_ROOT=''
_PGB_PG_OWNER=''
_PGB_STARTED_PID=''
_PGB_EXPORTED=()

_pgb_say() { printf 'backends: %s\n' "$*" >&2; }

# Reports a failure with the tail of the log that explains it; always returns 1.
_pgb_fail() {
    local msg=$1 log=${2:-}
    _pgb_say "ERROR: $msg"
    if [[ -n $log && -s $log ]]; then
        _pgb_say "last lines of $log:"
        tail -n 40 -- "$log" | sed 's/^/    /' >&2 || true
    elif [[ -n $log ]]; then
        _pgb_say "(nothing in $log)"
    fi
    return 1
}

_pgb_timeout() { printf '%s\n' "${POLYGATE_TEST_BACKEND_TIMEOUT:-120}"; }

# Prints a loopback port that nothing listens on right now. The kernel never hands out a
# port that a listening socket holds, so picking each port just before its server binds it
# keeps the three ports distinct.
_pgb_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls "$@" until it succeeds. Gives up when the timeout passes or when the process $pid
# (if given) has died, since a crashed server would otherwise cost the whole timeout.
_pgb_wait() {
    local name=$1 log=$2 pid=$3
    shift 3
    local timeout
    timeout=$(_pgb_timeout)
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            _pgb_fail "$name exited during startup" "$log"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            _pgb_fail "$name did not answer within ${timeout}s" "$log"
            return 1
        fi
        sleep 0.25
    done
}

_pgb_export() {
    export "$1=$2"
    _PGB_EXPORTED+=("$1")
}

# ---------------------------------------------------------------------------------------
# What a run started is written, as it starts it, to the `servers` file of its run
# directory, which polygate_backends_stop works from and then deletes. A run whose shell
# was killed before it could stop its servers leaves that file behind, and the next run
# stops those servers: on a reused CI machine nothing piles up.

_pgb_record() {
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$_PGB_RUN_DIR/servers"
}

# Stops a process started by _pgb_spawn: politely first, then for good.
_pgb_kill() {
    local pid=$1 i
    if kill "$pid" 2>/dev/null; then
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it when it is this shell's child, so no zombie or job notice is left.
    wait "$pid" 2>/dev/null || true
}

_pgb_pg_stop() {
    local data=$1 bindir=$2 owner=$3
    [[ -f $data/postmaster.pid ]] || return 0
    local -a as_owner=()
    [[ -z $owner ]] || as_owner=(runuser -u "$owner" --)
    (cd -- "$(dirname -- "$data")" && "${as_owner[@]}" "$bindir/pg_ctl" stop -D "$data" -m immediate -w) \
        </dev/null >/dev/null 2>&1 || true
}

# Stops everything listed in a `servers` file. For another run's file ($stale = 1) a pid
# is only killed while its command line still names the server, in case it was reused.
_pgb_stop_recorded() {
    local file=$1 stale=$2 kind a b c dir
    local -a tmp_dirs=()
    [[ -f $file ]] || return 0
    while IFS=$'\t' read -r kind a b c; do
        case $kind in
        pid)
            if ((stale)) && [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$a/cmdline") != *"$b"* ]]; then
                continue
            fi
            _pgb_kill "$a"
            ;;
        pg) _pgb_pg_stop "$a" "$b" "$c" ;;
        tmp) tmp_dirs+=("$a") ;;
        esac
    done <"$file"
    for dir in "${tmp_dirs[@]}"; do
        rm -rf -- "$dir"
    done
    rm -f -- "$file"
}

# Each run gets its own log directory, so concurrent runs do not mix logs. Older runs are
# cleaned up here: servers of dead runs stopped, logs beyond the newest few deleted.
_pgb_make_run_dir() {
    local base=$_PGB_REPO/target/test-backends
    mkdir -p -- "$base" || return 1
    _PGB_RUN_DIR=$(mktemp -d "$base/run-$(date +%Y%m%d-%H%M%S)-XXXX") || return 1
    chmod 755 -- "$_PGB_RUN_DIR"
    _pgb_record owner "$$"

    local dir owner kept=0
    while IFS= read -r dir; do
        [[ $dir != "$_PGB_RUN_DIR" ]] || continue
        if [[ -f $dir/servers ]]; then
            owner=$(awk -F '\t' '$1 == "owner" { print $2 }' "$dir/servers")
            if [[ -n $owner ]] && kill -0 "$owner" 2>/dev/null; then
                continue # still running
            fi
            _pgb_say "stopping servers left behind by $dir"
            _pgb_stop_recorded "$dir/servers" 1
        fi
        kept=$((kept + 1))
        ((kept <= 5)) || rm -rf -- "$dir"
    done < <(find "$base" -mindepth 1 -maxdepth 1 -type d -name 'run-*' | sort -r)
}

# Server data (the PostgreSQL cluster, SecantusDB's WiredTiger files) goes to one temp dir.
# It is under /tmp rather than target/ because the PostgreSQL unix socket path must stay
# short (about 100 bytes at most) and the `postgres` user must be able to reach it; 711
# lets that user through without letting it list anything.
_pgb_make_tmp_dir() {
    _PGB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/polygate-backends.XXXXXX") || return 1
    _pgb_record tmp "$_PGB_TMP"
    chmod 711 -- "$_PGB_TMP"
}

# Starts "$@" in the background, in directory $dir, with its output in $log, and records
# it; the pid ends up in _PGB_STARTED_PID. stdin and stdout/stderr are redirected so that
# the server never holds the caller's terminal or pipes open; the working directory keeps
# whatever a server writes next to itself out of the caller's tree.
_pgb_spawn() {
    local dir=$1 log=$2 name=$3
    shift 3
    (cd -- "$dir" && exec "$@") </dev/null >>"$log" 2>&1 &
    _PGB_STARTED_PID=$!
    _pgb_record pid "$_PGB_STARTED_PID" "$name"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL

# Prints the directory of a PostgreSQL installation that has initdb, pg_ctl and postgres,
# with symlinks resolved so that pg_isready and psql of the same version sit beside them.
_pgb_pg_bindir() {
    local d found
    local -a candidates=()
    if [[ -n ${POLYGATE_TEST_PG_BINDIR:-} ]]; then
        candidates=("$POLYGATE_TEST_PG_BINDIR")
    else
        if found=$(command -v initdb 2>/dev/null); then
            candidates+=("$(dirname -- "$found")")
        fi
        candidates+=(/usr/local/bin)
        # Newest major version first.
        while IFS= read -r d; do
            candidates+=("$d")
        done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -rV)
    fi
    for d in "${candidates[@]}"; do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
            dirname -- "$(readlink -f -- "$d/pg_ctl")"
            return 0
        fi
    done
    return 1
}

_pgb_install_pg() {
    local log=$_PGB_RUN_DIR/apt.log
    if ((EUID != 0)); then
        _pgb_fail "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install PostgreSQL or set POLYGATE_TEST_PG_BINDIR"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        _pgb_fail "PostgreSQL server binaries not found and there is no apt-get to install them"
        return 1
    fi
    _pgb_say "PostgreSQL server binaries not found: installing Debian's postgresql package"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } </dev/null >"$log" 2>&1; then
        _pgb_fail "apt-get install postgresql failed" "$log"
        return 1
    fi
}

# Runs a PostgreSQL tool as the cluster's owner. initdb and postgres refuse to run as root,
# so under root they run as the `postgres` OS user; the working directory is moved to the
# cluster's dir because that user may not be allowed into the caller's one.
_pgb_pg_run() {
    local -a as_owner=()
    [[ -z $_PGB_PG_OWNER ]] || as_owner=(runuser -u "$_PGB_PG_OWNER" --)
    (cd -- "$_PGB_PG_ROOT" && "${as_owner[@]}" "$@")
}

_pgb_start_pg() {
    local bindir
    if ! bindir=$(_pgb_pg_bindir); then
        if [[ -n ${POLYGATE_TEST_PG_BINDIR:-} ]]; then
            _pgb_fail "POLYGATE_TEST_PG_BINDIR=$POLYGATE_TEST_PG_BINDIR lacks initdb, pg_ctl or postgres"
            return 1
        fi
        _pgb_install_pg || return 1
        if ! bindir=$(_pgb_pg_bindir); then
            _pgb_fail "postgresql is installed but initdb/pg_ctl/postgres are still not found" "$_PGB_RUN_DIR/apt.log"
            return 1
        fi
    fi

    _PGB_PG_ROOT=$_PGB_TMP/pg
    mkdir -m 700 -- "$_PGB_PG_ROOT" || return 1
    if ((EUID == 0)); then
        if ! id -u postgres >/dev/null 2>&1; then
            _pgb_fail "running as root, but there is no 'postgres' OS user to own the test cluster"
            return 1
        fi
        _PGB_PG_OWNER=postgres
        chown postgres: -- "$_PGB_PG_ROOT" || return 1
    fi

    local data=$_PGB_PG_ROOT/data log=$_PGB_RUN_DIR/postgres.log port
    # C locale: the same collation and sort order on every machine.
    if ! _pgb_pg_run "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        </dev/null >"$_PGB_RUN_DIR/initdb.log" 2>&1; then
        _pgb_fail "initdb failed" "$_PGB_RUN_DIR/initdb.log"
        return 1
    fi

    port=$(_pgb_free_port) || return 1
    # Durability is pointless for a cluster deleted after the run; turning it off makes
    # the many CREATE/DROP DATABASE of the tests much cheaper. Tests run in parallel, each
    # with its own connections, hence more than the default 100. Logical decoding is on, as a
    # cache's change feed needs it.
    cat >>"$data/postgresql.conf" <<EOF

# polygate test cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$_PGB_PG_ROOT'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
# Caches follow tables through logical replication (pgoutput), each on a polygate_* slot.
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
EOF

    _pgb_record pg "$data" "$bindir" "$_PGB_PG_OWNER"
    # Without -l the server writes to pg_ctl's stdout: the log file is then opened by this
    # shell, so it can live in a directory the `postgres` user cannot write to.
    if ! _pgb_pg_run "$bindir/pg_ctl" start -D "$data" -w -t "$(_pgb_timeout)" </dev/null >>"$log" 2>&1; then
        _pgb_fail "PostgreSQL did not start" "$log"
        return 1
    fi

    local isready=$bindir/pg_isready
    [[ -x $isready ]] || isready=pg_isready
    _pgb_wait PostgreSQL "$log" '' "$isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres || return 1
    _pgb_export POLYGATE_TEST_PG_URL "postgres://postgres@127.0.0.1:$port/postgres"
    _pgb_say "PostgreSQL $("$bindir/postgres" --version | awk '{ print $3 }') ($bindir) on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------------------
# Python servers (SecantusDB, osmem)

_pgb_osmem_bin() {
    local f
    for f in "$_PGB_VENV"/lib/python3.*/site-packages/osmem_server/bin/osmem-server; do
        if [[ -x $f ]]; then
            printf '%s\n' "$f"
            return 0
        fi
    done
    return 1
}

_pgb_venv_ready() {
    [[ -x $_PGB_VENV/bin/secantusd-py ]] && _pgb_osmem_bin >/dev/null
}

# Creates the venv and installs the servers only when they are missing, so that reruns
# start in seconds. A lock keeps concurrent runs from installing into it at once.
_pgb_ensure_venv() {
    local log=$_PGB_RUN_DIR/pip.log lock_fd rc=0

    if ! command -v python3 >/dev/null 2>&1; then
        _pgb_fail "python3 is needed for the SecantusDB and osmem test servers"
        return 1
    fi
    exec {lock_fd}>"$_PGB_REPO/target/test-backends/venv.lock"
    flock -w 900 "$lock_fd" || true

    # A venv whose interpreter has gone (Python upgraded or moved) cannot be repaired.
    if [[ -e $_PGB_VENV ]] && ! "$_PGB_VENV/bin/python" -c '' >/dev/null 2>&1; then
        rm -rf -- "$_PGB_VENV"
    fi
    if ! _pgb_venv_ready; then
        _pgb_say "installing ${_PGB_PY_PACKAGES[*]} into $_PGB_VENV"
        if [[ ! -x $_PGB_VENV/bin/python ]] && ! python3 -m venv "$_PGB_VENV" >"$log" 2>&1; then
            _pgb_fail "could not create the venv $_PGB_VENV" "$log"
            rc=1
        elif ! "$_PGB_VENV/bin/python" -m pip install "${_PGB_PY_PACKAGES[@]}" </dev/null >>"$log" 2>&1; then
            _pgb_fail "pip install ${_PGB_PY_PACKAGES[*]} failed" "$log"
            rc=1
        elif ! _pgb_venv_ready; then
            _pgb_fail "pip installed ${_PGB_PY_PACKAGES[*]} but secantusd-py or osmem-server is missing" "$log"
            rc=1
        fi
    fi

    exec {lock_fd}>&-
    return "$rc"
}

# Sends the MongoDB `ping` command as an OP_MSG and checks for {ok: 1}: proof that the server
# speaks the wire protocol, with no driver needed.
_pgb_mongo_ping() {
    "$_PGB_VENV/bin/python" - "$1" <<'EOF'
import socket, struct, sys

def bson(elements):
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"

db = b"admin\x00"
cmd = bson(b"\x10ping\x00" + struct.pack("<i", 1)
           + b"\x02$db\x00" + struct.pack("<i", len(db)) + db)
body = struct.pack("<I", 0) + b"\x00" + cmd  # flagBits, then one kind-0 section
msg = struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf

with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as sock:
    sock.sendall(msg)
    length, _, _, opcode = struct.unpack("<iiii", recv_exact(sock, 16))
    reply = recv_exact(sock, length - 16)

ok = (b"\x01ok\x00" + struct.pack("<d", 1.0), b"\x10ok\x00" + struct.pack("<i", 1))
sys.exit(0 if opcode == 2013 and any(o in reply for o in ok) else 1)
EOF
}

_pgb_http_ok() {
    curl -sf --noproxy '*' --max-time 5 -o /dev/null "$1"
}

_pgb_start_mongo() {
    local log=$_PGB_RUN_DIR/secantusdb.log dir=$_PGB_TMP/mongo port
    mkdir -- "$dir" || return 1
    # An explicit, empty --config turns off the search for secantusd.toml in ., ~/.secantus
    # and /etc/secantus, which could otherwise change the server under the tests.
    : >"$dir/secantusd.toml"
    port=$(_pgb_free_port) || return 1
    # ':memory:' still keeps WiredTiger files in a temp dir under $TMPDIR, removed only on a
    # clean shutdown; pointing TMPDIR into this run's temp dir keeps a killed server from
    # leaving them in /tmp.
    _pgb_spawn "$dir" "$log" secantusd-py env TMPDIR="$dir" "$_PGB_VENV/bin/secantusd-py" \
        --config "$dir/secantusd.toml" --host 127.0.0.1 --port "$port" --storage-path :memory:
    _pgb_wait SecantusDB "$log" "$_PGB_STARTED_PID" _pgb_mongo_ping "$port" || return 1
    _pgb_export POLYGATE_TEST_MONGO_URL "mongodb://127.0.0.1:$port"
    _pgb_say "SecantusDB $(_pgb_py_version secantusdb) on 127.0.0.1:$port"
}

_pgb_start_es() {
    local log=$_PGB_RUN_DIR/osmem.log port bin
    bin=$(_pgb_osmem_bin) || return 1
    port=$(_pgb_free_port) || return 1
    # -parent-pid: should this shell die without stopping it, osmem exits by itself.
    _pgb_spawn "$_PGB_TMP" "$log" osmem-server "$bin" -addr "127.0.0.1:$port" -no-stdin-watch -parent-pid "$$"
    _pgb_wait osmem "$log" "$_PGB_STARTED_PID" _pgb_http_ok "http://127.0.0.1:$port/" || return 1
    _pgb_export POLYGATE_TEST_ES_URL "http://127.0.0.1:$port"
    _pgb_say "osmem $(_pgb_py_version osmem-server) on 127.0.0.1:$port"
}

_pgb_py_version() {
    "$_PGB_VENV/bin/python" -c 'import sys
from importlib.metadata import version
print(version(sys.argv[1]))' "$1" 2>/dev/null || echo '(version unknown)'
}

# ---------------------------------------------------------------------------------------

polygate_backends_start() {
    local need_pg=1 need_mongo=1 need_es=1
    [[ -z ${POLYGATE_TEST_PG_URL:-} ]] || need_pg=0
    [[ -z ${POLYGATE_TEST_MONGO_URL:-} ]] || need_mongo=0
    [[ -z ${POLYGATE_TEST_ES_URL:-} ]] || need_es=0
    if ((need_pg + need_mongo + need_es == 0)); then
        _pgb_say "all backend URLs given by the caller; starting nothing"
        return 0
    fi
    if [[ -n $_PGB_RUN_DIR ]]; then
        _pgb_say "ERROR: backends already started (logs in $_PGB_RUN_DIR); call polygate_backends_stop first"
        return 1
    fi

    local started=$SECONDS
    if ! {
        _pgb_make_run_dir &&
            _pgb_make_tmp_dir &&
            { ((need_pg == 0)) || _pgb_start_pg; } &&
            { ((need_mongo + need_es == 0)) || _pgb_ensure_venv; } &&
            { ((need_mongo == 0)) || _pgb_start_mongo; } &&
            { ((need_es == 0)) || _pgb_start_es; }
    }; then
        _pgb_say "ERROR: backends did not start${_PGB_RUN_DIR:+ (logs in $_PGB_RUN_DIR)}"
        # Leave nothing running behind a failed start, whether or not the caller traps.
        polygate_backends_stop
        return 1
    fi
    ((need_pg)) || _pgb_say "PostgreSQL: using the caller's POLYGATE_TEST_PG_URL"
    ((need_mongo)) || _pgb_say "MongoDB: using the caller's POLYGATE_TEST_MONGO_URL"
    ((need_es)) || _pgb_say "Elasticsearch: using the caller's POLYGATE_TEST_ES_URL"
    _pgb_say "ready in $((SECONDS - started))s; logs in $_PGB_RUN_DIR"
}

# Stops what polygate_backends_start started, deletes its data and forgets the URLs it
# exported; servers the caller provided are left alone. Safe to call twice, or without a
# start.
polygate_backends_stop() {
    if [[ -n $_PGB_RUN_DIR ]]; then
        _pgb_stop_recorded "$_PGB_RUN_DIR/servers" 0
    fi
    local name
    for name in "${_PGB_EXPORTED[@]}"; do
        unset "$name"
    done
    _PGB_EXPORTED=()
    _PGB_RUN_DIR=''
    _PGB_TMP=''
    _PGB_PG_ROOT=''
    _PGB_PG_OWNER=''
    _PGB_STARTED_PID=''
    return 0
}
