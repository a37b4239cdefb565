#!/usr/bin/env bash
# A real sync without internet: serves the recorded payloads of ../shared/fixtures on a local
# port and points every source at it, then runs `model-lens-sync sync` (embedded PostgreSQL
# unless DATABASE_URL is set). Extra arguments go to `sync` (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${FIXTURE_PORT:-9876}"
cargo build --release --quiet --bin model-lens-sync --example fixture_server
target/release/examples/fixture_server "127.0.0.1:${port}" >/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break
  sleep 0.1
done
base="http://127.0.0.1:${port}/ok"
export MODEL_LENS_SOURCES__MODELS_DEV__BASE_URL="$base"
export MODEL_LENS_SOURCES__OPENROUTER__BASE_URL="$base"
export MODEL_LENS_SOURCES__HUGGINGFACE__BASE_URL="$base"
export MODEL_LENS_SOURCES__ARTIFICIAL_ANALYSIS__BASE_URL="$base"
export ARTIFICIAL_ANALYSIS_API_KEY="${ARTIFICIAL_ANALYSIS_API_KEY:-offline-demo}"
target/release/model-lens-sync sync "$@"
