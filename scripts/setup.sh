#!/usr/bin/env bash
# One-command set-up, run by `make setup` (and so by `make demo` / `make test`).
# Idempotent: every step checks a stamp or a file first, so a re-run with everything in place takes seconds.
#   1. .venv with python3.11            (skipped when .venv/bin/python exists)
#   2. pip install -e '.[dev]'          (only when pyproject.toml's hash differs from .venv/.tootlake-pyproject.sha)
#   3. jars/spark, jars/kafka; jars/s3a (hadoop-aws + AWS SDK bundle) and jars/s3proxy on request
#                                       (mvn copy-dependencies; only when the pom's hash differs from the stamp)
#   4. PostgreSQL 15 server binaries    (apt-get, only when /usr/lib/postgresql/15/bin/initdb is missing)
#   5. Chromium                         (apt-get, only when `chromium` is not on PATH; the dq report test)
# Quiet on success (one line per step with its time); on failure the step's output is shown.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
SETUP_LOG_DIR="$ROOT/var/log"
mkdir -p "$SETUP_LOG_DIR"
STEP_LOG="$SETUP_LOG_DIR/setup-step.log"

now_ms() { date +%s%3N; }
T_ALL=$(now_ms)

# run_step NAME CMD...: runs CMD with its output captured; prints the time, or the output on failure.
run_step() {
    local name="$1"; shift
    local t0; t0=$(now_ms)
    if "$@" >"$STEP_LOG" 2>&1; then
        printf 'setup: %-28s %6.1f s\n' "$name" "$(( $(now_ms) - t0 ))e-3"
    else
        local rc=$?
        echo "setup: FAILED at step '$name' (exit $rc); its output:" >&2
        tail -n 60 "$STEP_LOG" >&2
        echo "setup: full output in $STEP_LOG" >&2
        exit "$rc"
    fi
}
skip() { printf 'setup: %-28s %8s\n' "$1" "ok"; }

hash_of() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- 1. venv -------------------------------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
    PYTHON311="${PYTHON311:-$(command -v python3.11 || true)}"
    if [[ -z "$PYTHON311" ]]; then
        echo "setup: python3.11 not found; install it (e.g. apt-get install python3.11 python3.11-venv) or set PYTHON311=/path/to/python3.11" >&2
        exit 1
    fi
    run_step "venv (python3.11)" "$PYTHON311" -m venv "$VENV"
else
    skip "venv"
fi

# --- 2. package ----------------------------------------------------------------------------------------
PIP_STAMP="$VENV/.tootlake-pyproject.sha"
want=$(hash_of pyproject.toml)
if [[ "$(cat "$PIP_STAMP" 2>/dev/null || true)" != "$want" ]]; then
    run_step "pip install -e .[dev]" "$PY" -m pip install --disable-pip-version-check -q -e '.[dev]'
    echo "$want" >"$PIP_STAMP"
else
    skip "package (pyproject unchanged)"
fi

# --- 3. jars -------------------------------------------------------------------------------------------
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is needed for $2 but is not on PATH; install it (Debian: apt-get install -y $3)" >&2; exit 1; }
}

fetch_jars() {  # fetch_jars NAME: scripts/jars/NAME/pom.xml -> jars/NAME
    local name="$1" pom="scripts/jars/$1/pom.xml" out="jars/$1"
    local stamp="$out/.pom.sha" want
    want=$(hash_of "$pom")
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$out/*.jar" >/dev/null; then
        skip "jars/$name"
        return
    fi
    need_cmd mvn "fetching jars" maven
    need_cmd java "fetching jars and running Kafka" openjdk-17-jre-headless
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    run_step "jars/$name (maven)" mvn -B -q -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$ROOT/$out.tmp"
    if [[ "$name" == spark || "$name" == s3a ]]; then   # both go on Spark's classpath
        prune_spark_jars "$out.tmp"
    fi
    echo "$want" >"$out.tmp/.pom.sha"
    rm -rf "$out" && mv "$out.tmp" "$out"   # swap in whole: a failed fetch never leaves half a folder
}

# Spark's own jars (pyspark/jars) must win: a jar whose artifact is already there (any version), e.g. an
# older jackson or hadoop pulled in transitively, would shadow Spark's copy on the classpath.
prune_spark_jars() {
    local dir="$1" pyspark_jars base jar removed=0
    pyspark_jars="$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
    [[ -d "$pyspark_jars" ]] || { echo "setup: pyspark jars folder not found at $pyspark_jars" >&2; exit 1; }
    for jar in "$dir"/*.jar; do
        base=$(basename "$jar" | sed -E 's/-[0-9][^-]*(-[0-9]+)?\.jar$//')
        # a glob, not `ls | grep -q`: under pipefail grep's early exit makes ls fail with SIGPIPE
        if compgen -G "$pyspark_jars/${base}-[0-9]*.jar" >/dev/null; then
            rm -f "$jar"; removed=$((removed + 1))
        fi
    done
    printf 'setup: %-28s %8s\n' "  pruned (in pyspark)" "$removed jars"
}

fetch_jars spark
fetch_jars kafka
# Object storage only on request (~0.8 GB, the AWS SDK bundle): `make setup-objectstore`, or kept up to date
# once fetched.
if [[ "${TOOTLAKE_OBJECTSTORE:-0}" == 1 || -d jars/s3a ]]; then
    fetch_jars s3a       # the s3a:// filesystem for Spark (lake / checkpoints on object storage)
    fetch_jars s3proxy   # the embedded S3-compatible store of `services up` (lake on s3a://, no S3_ENDPOINT)
else
    skip "jars/s3a, jars/s3proxy (make setup-objectstore)"
fi

# --- 4. PostgreSQL 15 ----------------------------------------------------------------------------------
if [[ ! -x /usr/lib/postgresql/15/bin/initdb ]]; then
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo -n)
        else
            echo "setup: PostgreSQL 15 is missing and you are not root (no sudo either)." >&2
            echo "       Ask an admin to run: apt-get update && apt-get install -y postgresql-15" >&2
            echo "       or point POSTGRES_DSN at an existing database (see .env.example)." >&2
            exit 1
        fi
    fi
    install_pg() {
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q postgresql-15
    }
    run_step "postgresql-15 (apt-get)" install_pg
    # The Debian package starts a system cluster on 5432; ours is private and on its own port, so it is
    # left alone (stop it with `service postgresql stop` if you do not want it).
else
    skip "postgresql-15"
fi

# --- 5. Chromium (headless: the dq report test renders the page) ---------------------------------------
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo -n)
        else
            echo "setup: chromium is missing and you are not root (no sudo either); the dq report render" >&2
            echo "       test will be skipped. Ask an admin to run: apt-get update && apt-get install -y chromium" >&2
        fi
    fi
    if [[ "$(id -u)" == 0 || ${#SUDO[@]} -gt 0 ]]; then
        install_chromium() {
            DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q chromium
        }
        run_step "chromium (apt-get)" install_chromium
    fi
else
    skip "chromium"
fi

printf 'setup: %-28s %6.1f s\n' "done" "$(( $(now_ms) - T_ALL ))e-3"
