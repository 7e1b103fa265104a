#!/usr/bin/env bash
# Runs once, when the compose database is first created: a role the `replicas` profile's standby copies the primary
# with (pg_basebackup) and streams its WAL as, and the pg_hba.conf line that lets it in. (A local course database:
# the password is as public as course/course.)
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
