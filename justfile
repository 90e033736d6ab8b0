# Recipes a newcomer needs. The README's two commands work without `just`; these are shortcuts.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The embedded cluster's directory (as in the default configuration).
data_dir := ".data/pg"

default:
    @just --list

# Serve the API; without FODI__DATABASE__URL it starts and migrates ./.data/pg.
run *ARGS:
    cargo run -p api-server -- {{ARGS}}

# Run every test (real PostgreSQL: a shared test cluster is started on first use).
test *ARGS:
    cargo test --workspace {{ARGS}}

# What CI checks before the tests: formatting, clippy with warnings denied, layering.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    .ci/check-layering

# Migrate the configured database (or ./.data/pg): `just migrate status`, `just migrate up --dry-run`.
migrate *ARGS="up":
    cargo run -p migrator -- {{ARGS}}

# Benchmarks of an area against references measured in the same run (ledger, ai, analytics, supervisor, api).
bench AREA *ARGS:
    cargo run --release -p bench -- {{AREA}} {{ARGS}}

# Start the embedded cluster and leave it running (for psql -h .data/pg -U postgres fodi).
db-start:
    cargo run -p migrator -- status >/dev/null
    just _pg_ctl start -w -l "$PWD/{{data_dir}}/postgres.log"
    @echo "psql -h $PWD/{{data_dir}} -U postgres fodi"

# Stop the embedded cluster and the shared test cluster, if running.
db-stop:
    -just _pg_ctl stop -m fast
    -just _pg_ctl_dir "${TMPDIR:-/tmp}/fodi-test-pg-$(id -u)/data" stop -m fast

_pg_ctl *ARGS:
    just _pg_ctl_dir "$PWD/{{data_dir}}/data" {{ARGS}}

_pg_ctl_dir DIR *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if [[ -n "${PG_BIN:-}" ]]; then
        pg_ctl="$PG_BIN/pg_ctl"
    else
        pg_ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
        pg_ctl=${pg_ctl:-pg_ctl}
    fi
    if [[ $(id -u) == 0 ]]; then
        su postgres -s /bin/sh -c "'$pg_ctl' -D '{{DIR}}' {{ARGS}}"
    else
        "$pg_ctl" -D "{{DIR}}" {{ARGS}}
    fi
