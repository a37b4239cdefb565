#!/usr/bin/env bash
# Runs once, when the postgres container initializes an empty volume (the image runs the files
# of /docker-entrypoint-initdb.d). Creates the roles of deploy/postgres/roles.sql and sets
# their passwords from the environment; the passwords go through psql variables, never into
# a file or a command line.
set -euo pipefail

: "${MODEL_LENS_OWNER_PASSWORD:?set MODEL_LENS_OWNER_PASSWORD (deploy/.env)}"
: "${MODEL_LENS_APP_PASSWORD:?set MODEL_LENS_APP_PASSWORD (deploy/.env)}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -f /model-lens/roles.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_password="$MODEL_LENS_OWNER_PASSWORD" -v app_password="$MODEL_LENS_APP_PASSWORD" <<'SQL'
ALTER ROLE model_lens_owner PASSWORD :'owner_password';
ALTER ROLE model_lens_app PASSWORD :'app_password';
SQL
