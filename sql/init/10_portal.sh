#!/usr/bin/env bash
# The marketers' portal's own database on the warehouse server, run by the postgres image after
# 00_roles.sh (mounted at /docker-entrypoint-initdb.d by docker-compose.yaml).
#
# Like every init script it runs ONLY on the first start, with an empty data volume. To add the
# portal to a server that already has data, run it once by hand after `docker compose up -d
# postgres-warehouse` (the container has the passwords in its environment):
#   docker compose exec postgres-warehouse bash /docker-entrypoint-initdb.d/10_portal.sh
#
#   portal         database of its own (users, sessions, append-only audit log), not the warehouse's.
#   portal_owner   LOGIN, owns the database and its public schema; portal-init connects as it to
#                  create the tables (`marketing portal setup`) and grant portal_app its rights.
#   portal_app     LOGIN, the role the portal runs as: CONNECT on the database and USAGE on its
#                  schema, nothing else here; the table grants come from `marketing portal setup`
#                  (no UPDATE/DELETE on portal_audit, no DDL). No access to the warehouse database.
#
# Passwords come from the environment (PORTAL_DB_OWNER_PASSWORD, PORTAL_DB_APP_PASSWORD) and are
# passed to psql as variables, so they are quoted by psql and never spliced into SQL text.
# Re-running is safe: roles and the database are created if missing and the passwords reset.
set -euo pipefail

: "${POSTGRES_DB:?POSTGRES_DB is not set}"
: "${PORTAL_DB_OWNER_PASSWORD:?PORTAL_DB_OWNER_PASSWORD is not set (see .env.example)}"
: "${PORTAL_DB_APP_PASSWORD:?PORTAL_DB_APP_PASSWORD is not set (see .env.example)}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
    --username "${POSTGRES_USER:-postgres}" --dbname "$POSTGRES_DB" \
    --set=owner_password="$PORTAL_DB_OWNER_PASSWORD" \
    --set=app_password="$PORTAL_DB_APP_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE portal_owner LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'portal_owner') \gexec
SELECT 'CREATE ROLE portal_app LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'portal_app') \gexec

ALTER ROLE portal_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
ALTER ROLE portal_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD :'app_password';

-- CREATE DATABASE cannot run inside a transaction: \gexec runs it on its own (autocommit).
SELECT 'CREATE DATABASE portal OWNER portal_owner'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'portal') \gexec
ALTER DATABASE portal OWNER TO portal_owner;

-- Hardening: nobody connects unless granted explicitly.
REVOKE ALL ON DATABASE portal FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE portal TO portal_owner;
GRANT CONNECT ON DATABASE portal TO portal_app;

\connect portal
-- The tables live in public: only the owner creates there; the portal may look up its tables.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO portal_owner;
GRANT USAGE ON SCHEMA public TO portal_app;
SQL

echo "10_portal.sh: database portal with roles portal_owner and portal_app is ready"
