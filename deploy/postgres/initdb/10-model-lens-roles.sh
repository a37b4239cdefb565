#!/usr/bin/env bash
# Runs once, when the postgres container initializes an empty volume (the image runs the files
# of /docker-entrypoint-initdb.d). Creates the roles of deploy/postgres/roles.sql and sets
# their passwords from the environment: psql reads them with \getenv, so they appear in no
# command line (ps) and no file.
set -euo pipefail

: "${MODEL_LENS_OWNER_PASSWORD:?set MODEL_LENS_OWNER_PASSWORD (deploy/.env)}"
: "${MODEL_LENS_APP_PASSWORD:?set MODEL_LENS_APP_PASSWORD (deploy/.env)}"

# Mounted there by deploy/docker-compose.yml; the tests point elsewhere.
roles_sql="${MODEL_LENS_ROLES_SQL:-/model-lens/roles.sql}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$roles_sql"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv owner_password MODEL_LENS_OWNER_PASSWORD
\getenv app_password MODEL_LENS_APP_PASSWORD
ALTER ROLE model_lens_owner PASSWORD :'owner_password';
ALTER ROLE model_lens_app PASSWORD :'app_password';
SQL
