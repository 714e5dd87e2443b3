#!/bin/sh
# Run once by the postgres image's entrypoint when it initialises an empty
# volume (docker-compose.yml mounts it into /docker-entrypoint-initdb.d): it
# creates InstructFlow's two login roles and its database.
#
#   instructflow_owner  owns the database and its schema; `instructflow db
#                       migrate` runs as it (postgres.owner_url)
#   instructflow        the runtime role the worker and the CLI log in as
#                       (postgres.url); a member of instructflow_app, the
#                       NOLOGIN role the migrations grant exactly the rights
#                       the code uses
#
# Neither is a superuser. The passwords come from the environment (.env), and
# reach SQL as psql variables, quoted by psql, never pasted into the text.
set -eu
: "${DB_OWNER_PASSWORD:?}" "${DB_RUNTIME_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
	-v owner_password="$DB_OWNER_PASSWORD" -v runtime_password="$DB_RUNTIME_PASSWORD" <<'SQL'
CREATE ROLE instructflow_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE instructflow_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE ROLE instructflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE instructflow_app PASSWORD :'runtime_password';
-- The labeling tools' group role (migration 002 grants to it; the owner may not create roles).
CREATE ROLE instructflow_labeler NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE instructflow OWNER instructflow_owner;
REVOKE ALL ON DATABASE instructflow FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE instructflow TO instructflow_app; -- imports and the audit use temp tables
SQL
