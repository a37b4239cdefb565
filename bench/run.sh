#!/usr/bin/env bash
# Benchmarks `model-lens-sync sync` on N synthetic Hugging Face models (see bench/README.md):
# builds the release binary, starts a throwaway PostgreSQL cluster in a temp dir (Unix socket in
# that dir + a free TCP port on 127.0.0.1, trust auth), runs bench/hf_sync_bench.py against it,
# and stops and deletes the cluster on exit (kept with --keep).
#
#   bench/run.sh                      # N = 10,000, one run
#   bench/run.sh --n 300000 --runs 3  # bigger, medians of three
#   bench/run.sh --n 50000 --dlt      # also time a dlt pipeline (installs dlt into bench/.venv)
#   bench/run.sh --catalog --n 300000 # instead: latency of GET /api/models (bench/catalog_bench.py)
#
# Other options go to hf_sync_bench.py (--help). Environment: BENCH_PG_BINDIR (PostgreSQL server
# binaries), BENCH_NO_BUILD=1 (use the binary as built), BENCH_TMPDIR (where the cluster goes),
# BENCH_PG_OPTIONS (extra `postgres` options, e.g. "-c shared_buffers=1GB").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"
keep=0
script="${here}/hf_sync_bench.py"
for argument in "$@"; do
  case "${argument}" in
    --keep) keep=1 ;;
    --catalog) script="${here}/catalog_bench.py" ;;
    -h | --help) exec python3 "${here}/hf_sync_bench.py" --help ;;
  esac
done

say() { printf '[bench] %s\n' "$*" >&2; }

# 1. The binary.
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
  say "cargo build --release"
  cargo build --release --manifest-path "${repo}/Cargo.toml" --bin model-lens-sync
fi

# 2. PostgreSQL server binaries: BENCH_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin,
#    else pg_config --bindir, else PATH.
find_bindir() {
  if [[ -n "${BENCH_PG_BINDIR:-}" ]]; then
    echo "${BENCH_PG_BINDIR}"
    return
  fi
  local dir
  dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  if [[ -n "${dir}" && -x "${dir}/initdb" ]]; then
    echo "${dir}"
    return
  fi
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir
    return
  fi
  if command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
    return
  fi
  return 1
}
if ! bindir="$(find_bindir)"; then
  say "no PostgreSQL server binaries (initdb, postgres): install e.g. postgresql-15"
  say "(apt-get install postgresql-15) or set BENCH_PG_BINDIR"
  exit 2
fi

# 3. A throwaway cluster. As root, PostgreSQL refuses to run: run it as `postgres`.
cluster="$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/hf-sync-bench.XXXXXX")"
data="${cluster}/data"
work="$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/hf-sync-bench-work.XXXXXX")"
as_owner=()
if [[ "$(id -u)" == 0 ]]; then
  if ! id postgres >/dev/null 2>&1; then
    say "running as root but there is no 'postgres' user to run the cluster as"
    exit 2
  fi
  chown postgres: "${cluster}"
  as_owner=(runuser -u postgres --)
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="postgresql://postgres@127.0.0.1:${port}/bench"

stop_cluster() {
  local status=$?
  if [[ "${keep}" == 1 ]]; then
    say "cluster kept: psql ${url}"
    say "  stop it with: ${as_owner[*]} ${bindir}/pg_ctl -D ${data} stop; rm -rf ${cluster}"
  else
    if [[ -f "${data}/postmaster.pid" ]]; then
      "${as_owner[@]}" "${bindir}/pg_ctl" -D "${data}" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "${cluster}"
  fi
  if [[ "${keep}" == 1 || "${status}" != 0 ]]; then
    say "work files (binary output, logs) kept in ${work}"
  else
    rm -rf "${work}"
  fi
  return "${status}"
}
bench_pid=""
interrupted() {
  # The benchmark runs in the background (so this trap runs at once); it stops its child too.
  [[ -n "${bench_pid}" ]] && kill -TERM "${bench_pid}" 2>/dev/null && wait "${bench_pid}" 2>/dev/null
  exit "$1"
}
trap stop_cluster EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

say "PostgreSQL $("${bindir}/postgres" --version | awk '{print $3}') from ${bindir}; cluster in ${cluster}"
"${as_owner[@]}" "${bindir}/initdb" -D "${data}" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
  --no-sync >"${cluster}/initdb.log" 2>&1 || {
  cat "${cluster}/initdb.log" >&2
  exit 2
}
# shellcheck disable=SC2086 # BENCH_PG_OPTIONS is a list of options
"${as_owner[@]}" "${bindir}/pg_ctl" -D "${data}" -l "${cluster}/postgres.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${cluster} ${BENCH_PG_OPTIONS:-}" \
  >/dev/null || {
  cat "${cluster}/postgres.log" >&2
  exit 2
}
"${bindir}/createdb" -h 127.0.0.1 -p "${port}" -U postgres bench

# 4. The benchmark.
say "database ${url}"
python3 "${script}" --database-url "${url}" --pg-bindir "${bindir}" --pg-data "${data}" \
  --repo "${repo}" --work-dir "${work}" "$@" &
bench_pid=$!
wait "${bench_pid}"
