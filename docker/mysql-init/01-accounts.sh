#!/bin/sh
# Accounts for the orchestrator, replication and the application (same as the local lab).
set -eu
client=$(command -v mysql || command -v mariadb)
"$client" -uroot -p"${MYSQL_ROOT_PASSWORD:-$MARIADB_ROOT_PASSWORD}" <<SQL
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'cutover'@'%' IDENTIFIED BY '${CUTOVER_PASSWORD}';
GRANT ALL PRIVILEGES ON *.* TO 'cutover'@'%';
CREATE USER IF NOT EXISTS 'cutover_repl'@'%' IDENTIFIED BY '${CUTOVER_REPL_PASSWORD}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cutover_repl'@'%';
CREATE USER IF NOT EXISTS 'refunds_app'@'%' IDENTIFIED BY '${CUTOVER_APP_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON refunds.* TO 'refunds_app'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON cutover_probe.* TO 'refunds_app'@'%';
SQL
