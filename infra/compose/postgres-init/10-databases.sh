#!/usr/bin/env bash
# Runs once, on the first start of an empty data volume: one database per service in XLM_DATABASES.
set -euo pipefail
for db in ${XLM_DATABASES}; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
done
