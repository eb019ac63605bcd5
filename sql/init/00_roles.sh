#!/usr/bin/env bash
# Warehouse roles, run once by the postgres image on an empty data volume
# (mounted at /docker-entrypoint-initdb.d by docker-compose.yaml).
#
#   warehouse_owner  LOGIN, owns the warehouse database; the pipeline connects as it and
#                    creates its schemas, tables and the grants for BI (sql/grants/).
#   bi_reader        LOGIN, read-only by default; gets USAGE/SELECT from the pipeline's grants.
#
# Passwords come from the environment (WAREHOUSE_OWNER_PASSWORD, BI_READER_PASSWORD) and are
# passed to psql as variables, so they are quoted by psql and never spliced into SQL text.
# Re-running is safe: roles are created if missing and their passwords reset.
set -euo pipefail

: "${POSTGRES_DB:?POSTGRES_DB is not set}"
: "${WAREHOUSE_OWNER_PASSWORD:?WAREHOUSE_OWNER_PASSWORD is not set (see .env.example)}"
: "${BI_READER_PASSWORD:?BI_READER_PASSWORD is not set (see .env.example)}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "$POSTGRES_DB" \
    --set=db="$POSTGRES_DB" \
    --set=owner_password="$WAREHOUSE_OWNER_PASSWORD" \
    --set=bi_password="$BI_READER_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE warehouse_owner LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warehouse_owner') \gexec
SELECT 'CREATE ROLE bi_reader LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bi_reader') \gexec

ALTER ROLE warehouse_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
ALTER ROLE bi_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD :'bi_password';
-- BI sessions cannot write even if a grant is ever too wide.
ALTER ROLE bi_reader SET default_transaction_read_only = on;
ALTER ROLE bi_reader SET statement_timeout = '15min';

-- The pipeline owns the database (and so, on PostgreSQL 15+, the public schema).
ALTER DATABASE :"db" OWNER TO warehouse_owner;

-- Hardening: nobody connects or creates anything unless granted explicitly.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO warehouse_owner;
GRANT CONNECT ON DATABASE :"db" TO bi_reader;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO warehouse_owner;
SQL

echo "00_roles.sh: roles warehouse_owner and bi_reader are ready in database ${POSTGRES_DB}"
