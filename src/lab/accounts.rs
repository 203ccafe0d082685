//! The lab's accounts, each with only what its job needs.

use super::LabSecrets;
use crate::mysql::quote;

/// Full rights everywhere (`CUTOVER_LAB_ADMIN_USER`): for tests and fault injection.
pub const ADMIN_USER: &str = "cutover_admin";
/// What plans use to orchestrate: replication control, fencing, snapshot loads; no GRANT, no FILE.
pub const ORCHESTRATOR_USER: &str = "cutover";
/// Used by replicas to pull the binary log.
pub const REPLICATION_USER: &str = "cutover_repl";
/// The application: plain DML on its schema, fenced by `read_only`.
pub const APPLICATION_USER: &str = "refunds_app";
/// Another business's application sharing legacy: its own database,
/// `loyalty`, which no plan moves (created by whoever loads it).
pub const OTHER_APPLICATION_USER: &str = "loyalty_app";
/// What the other application may do on its database (sysbench prepares
/// its own tables).
pub const OTHER_APPLICATION_GRANT: &str =
    "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON loyalty.* TO {}";

const HOSTS: &str = "127.%";

/// `(what, sql)` pairs; `what` is safe to print, the SQL holds passwords.
pub fn statements(secrets: &LabSecrets) -> Vec<(String, String)> {
    let mut out = vec![(
        "disable binary logging for account setup".to_string(),
        "SET SESSION sql_log_bin = 0".to_string(),
    )];
    let accounts = [
        (
            ADMIN_USER,
            &secrets.admin,
            vec!["GRANT ALL PRIVILEGES ON *.* TO {} WITH GRANT OPTION"],
        ),
        (
            ORCHESTRATOR_USER,
            &secrets.orchestrator,
            vec![
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE VIEW, SHOW VIEW, \
                 CREATE ROUTINE, ALTER ROUTINE, EXECUTE, TRIGGER, EVENT, LOCK TABLES, REFERENCES, \
                 CREATE TEMPORARY TABLES, DELETE HISTORY, RELOAD, PROCESS, SUPER, REPLICATION SLAVE, BINLOG MONITOR, \
                 REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, BINLOG ADMIN, SLAVE MONITOR, \
                 CONNECTION ADMIN, READ_ONLY ADMIN ON *.* TO {}",
                // A fence scoped to the migrated databases revokes the
                // application's write privileges there and grants them back.
                "GRANT SELECT ON refunds.* TO {} WITH GRANT OPTION",
                "GRANT SELECT ON cutover_probe.* TO {} WITH GRANT OPTION",
            ],
        ),
        (
            REPLICATION_USER,
            &secrets.replication,
            vec!["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO {}"],
        ),
        (
            APPLICATION_USER,
            &secrets.application,
            vec![
                "GRANT SELECT, INSERT, UPDATE, DELETE ON refunds.* TO {}",
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON cutover_probe.* TO {}",
            ],
        ),
        (
            OTHER_APPLICATION_USER,
            &secrets.other_application,
            vec![OTHER_APPLICATION_GRANT],
        ),
    ];
    out.extend(create_and_grant(&accounts, |account, password| {
        vec![format!(
            "CREATE OR REPLACE USER {account} IDENTIFIED BY {}",
            quote(password)
        )]
    }));
    out
}

/// One account's user, password and `GRANT … TO {}` statements.
pub type AccountGrants<'a> = (&'a str, &'a String, Vec<&'a str>);

/// `(what, sql)` pairs creating each account (`create` gives the flavor's
/// statements for `user@host` and its password) and granting it its rights.
pub fn create_and_grant(
    accounts: &[AccountGrants],
    create: impl Fn(&str, &str) -> Vec<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (user, password, grants) in accounts {
        let account = format!("{}@{}", quote(user), quote(HOSTS));
        for sql in create(&account, password) {
            out.push((format!("create account {user}"), sql));
        }
        for grant in grants {
            out.push((
                format!("grant privileges to {user}"),
                grant.replace("{}", &account),
            ));
        }
    }
    out
}
