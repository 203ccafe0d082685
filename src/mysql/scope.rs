//! A fence scoped to some databases (`scope: databases`): on a source that
//! holds other databases, only the plan's stop taking writes, so the other
//! applications on that server keep theirs.
//!
//! The freeze locks the plan's tables on the fence connection (released when
//! that connection closes, like the global lock). The lasting fence that
//! promotion leaves differs by flavor: MySQL marks each database `READ ONLY`
//! (the replication applier still writes it); MariaDB has no read-only
//! schema, so the write privileges the applications' accounts hold on those
//! databases are revoked, each recorded first in `cutover.fenced_grants` so a
//! later lift (a rollback, a resume from another process) grants back exactly
//! those. Both stay out of the binary log: the fence is this server's own.

use super::gtid::Flavor;
use super::{MysqlError, Session, ident, quote};

const RECORD: &str = "cutover.fenced_grants";

/// The write privileges a database-level grant can hold, as `mysql.db` names
/// its columns and `GRANT` names the privilege.
const WRITE_PRIVILEGES: [(&str, &str); 13] = [
    ("Insert_priv", "INSERT"),
    ("Update_priv", "UPDATE"),
    ("Delete_priv", "DELETE"),
    ("Create_priv", "CREATE"),
    ("Drop_priv", "DROP"),
    ("Alter_priv", "ALTER"),
    ("Index_priv", "INDEX"),
    ("Create_view_priv", "CREATE VIEW"),
    ("Create_routine_priv", "CREATE ROUTINE"),
    ("Alter_routine_priv", "ALTER ROUTINE"),
    ("Trigger_priv", "TRIGGER"),
    ("Event_priv", "EVENT"),
    ("Delete_history_priv", "DELETE HISTORY"),
];

/// `'a', 'b'`: `databases` as an SQL list of strings.
pub fn in_list(databases: &[String]) -> String {
    databases
        .iter()
        .map(|db| quote(db))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every table of `databases` that takes writes (not views), as `db`.`t`.
pub async fn tables(
    session: &mut Session,
    databases: &[String],
) -> Result<Vec<String>, MysqlError> {
    let rows: Vec<(String, String)> = session
        .query(
            "list the tables to fence",
            &format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({}) AND TABLE_TYPE <> 'VIEW' \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
                in_list(databases)
            ),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(schema, table)| format!("{}.{}", ident(&schema), ident(&table)))
        .collect())
}

/// The statement that freezes writes to `tables` only.
pub fn lock_statement(tables: &[String]) -> String {
    format!("FLUSH TABLES {} WITH READ LOCK", tables.join(", "))
}

/// The accounts (user names) granted anything on `databases` at database
/// level, but those in `kept`: the applications whose sessions the fence ends.
pub async fn accounts(
    session: &mut Session,
    databases: &[String],
    kept: &[String],
) -> Result<Vec<String>, MysqlError> {
    let users: Vec<String> = session
        .query(
            "list the accounts of the fenced databases",
            &format!(
                "SELECT DISTINCT User FROM mysql.db WHERE Db IN ({}) ORDER BY User",
                in_list(databases)
            ),
        )
        .await?;
    Ok(users
        .into_iter()
        .filter(|user| !user.is_empty() && !kept.contains(user))
        .collect())
}

/// Where MariaDB's lasting fence records what it revoked; made before the
/// freeze (a table created inside it would lengthen it).
pub async fn prepare(session: &mut Session, flavor: Flavor) -> Result<(), MysqlError> {
    if flavor == Flavor::Mysql {
        return Ok(());
    }
    unlogged(session, async |session: &mut Session| {
        session
            .exec(
                "create the record of fenced grants",
                &format!(
                    "CREATE DATABASE IF NOT EXISTS cutover; \
                     CREATE TABLE IF NOT EXISTS {RECORD} (\
                     user VARCHAR(128) NOT NULL, host VARCHAR(255) NOT NULL, db VARCHAR(64) NOT NULL, \
                     privileges VARCHAR(512) NOT NULL, PRIMARY KEY (user, host, db))"
                ),
            )
            .await
    })
    .await
}

/// Stop `databases` taking writes for good (until [`lift`]); on MariaDB only
/// the accounts outside `kept` lose their privileges. Says what it did.
pub async fn fence(
    session: &mut Session,
    flavor: Flavor,
    databases: &[String],
    kept: &[String],
) -> Result<Vec<String>, MysqlError> {
    unlogged(session, async |session: &mut Session| match flavor {
        Flavor::Mysql => {
            let present = existing(session, databases).await?;
            schemas_read_only(session, &present, true).await
        }
        Flavor::Mariadb => revoke(session, databases, kept).await,
    })
    .await
}

/// Undo [`fence`] on `databases`: MySQL clears `READ ONLY`; MariaDB grants
/// back what the record holds, then forgets it. Says what it did.
pub async fn lift(
    session: &mut Session,
    flavor: Flavor,
    databases: &[String],
) -> Result<Vec<String>, MysqlError> {
    unlogged(session, async |session: &mut Session| match flavor {
        Flavor::Mysql => {
            let fenced = read_only_databases(session, databases).await?;
            schemas_read_only(session, &fenced, false).await
        }
        Flavor::Mariadb => grant_back(session, databases).await,
    })
    .await
}

/// Run `body` with this session's statements kept out of the binary log,
/// logging back on whatever it returned.
async fn unlogged<T>(
    session: &mut Session,
    body: impl AsyncFnOnce(&mut Session) -> Result<T, MysqlError>,
) -> Result<T, MysqlError> {
    session
        .exec(
            "keep the fence out of the binary log",
            "SET SESSION sql_log_bin = 0",
        )
        .await?;
    let result = body(session).await;
    let restored = session
        .exec("binary logging back on", "SET SESSION sql_log_bin = 1")
        .await;
    let value = result?;
    restored?;
    Ok(value)
}

/// MySQL: `ALTER SCHEMA … READ ONLY = 1` (or `0`) on each of `databases`.
async fn schemas_read_only(
    session: &mut Session,
    databases: &[String],
    read_only: bool,
) -> Result<Vec<String>, MysqlError> {
    let mut done = Vec::new();
    for db in databases {
        let sql = format!(
            "ALTER SCHEMA {} READ ONLY = {}",
            ident(db),
            u8::from(read_only)
        );
        session
            .exec("change a database's read-only option", &sql)
            .await?;
        done.push(sql);
    }
    Ok(done)
}

/// MariaDB: revoke each application's database-level write privileges on
/// `databases`, each recorded first; a record from an earlier attempt stays
/// as it was (the privileges may be gone by now).
async fn revoke(
    session: &mut Session,
    databases: &[String],
    kept: &[String],
) -> Result<Vec<String>, MysqlError> {
    let mut done = Vec::new();
    for grant in write_grants(session, databases).await? {
        if kept.contains(&grant.user) {
            continue;
        }
        let privileges = grant.privileges.join(", ");
        session
            .exec(
                "record a grant before revoking it",
                &format!(
                    "INSERT INTO {RECORD} (user, host, db, privileges) VALUES ({}, {}, {}, {}) \
                     ON DUPLICATE KEY UPDATE privileges = privileges",
                    quote(&grant.user),
                    quote(&grant.host),
                    quote(&grant.db),
                    quote(&privileges)
                ),
            )
            .await?;
        let revoke = format!(
            "REVOKE {privileges} ON {}.* FROM {}@{}",
            ident(&grant.db),
            quote(&grant.user),
            quote(&grant.host)
        );
        session.exec("revoke a write privilege", &revoke).await?;
        done.push(revoke);
    }
    Ok(done)
}

/// MariaDB: grant back what the record holds for `databases`, forgetting each
/// record once granted.
async fn grant_back(
    session: &mut Session,
    databases: &[String],
) -> Result<Vec<String>, MysqlError> {
    let mut done = Vec::new();
    for (user, host, db, privileges) in recorded(session, databases).await? {
        let grant = format!(
            "GRANT {privileges} ON {}.* TO {}@{}",
            ident(&db),
            quote(&user),
            quote(&host)
        );
        session.exec("grant a write privilege back", &grant).await?;
        session
            .exec(
                "forget a granted-back record",
                &format!(
                    "DELETE FROM {RECORD} WHERE user = {} AND host = {} AND db = {}",
                    quote(&user),
                    quote(&host),
                    quote(&db)
                ),
            )
            .await?;
        done.push(grant);
    }
    Ok(done)
}

/// Whether `database` is under a lasting scoped fence here.
pub async fn is_fenced(
    session: &mut Session,
    flavor: Flavor,
    database: &str,
) -> Result<bool, MysqlError> {
    any_fenced(session, flavor, &[database.to_string()]).await
}

/// Whether any of `databases` is under a lasting scoped fence here.
pub async fn any_fenced(
    session: &mut Session,
    flavor: Flavor,
    databases: &[String],
) -> Result<bool, MysqlError> {
    Ok(match flavor {
        Flavor::Mysql => !read_only_databases(session, databases).await?.is_empty(),
        Flavor::Mariadb => !recorded(session, databases).await?.is_empty(),
    })
}

async fn existing(session: &mut Session, databases: &[String]) -> Result<Vec<String>, MysqlError> {
    session
        .query(
            "list the fenced databases",
            &format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({}) ORDER BY 1",
                in_list(databases)
            ),
        )
        .await
}

async fn read_only_databases(
    session: &mut Session,
    databases: &[String],
) -> Result<Vec<String>, MysqlError> {
    session
        .query(
            "list the read-only databases",
            &format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA_EXTENSIONS \
                 WHERE SCHEMA_NAME IN ({}) AND OPTIONS LIKE '%READ ONLY=1%' ORDER BY 1",
                in_list(databases)
            ),
        )
        .await
}

type Recorded = (String, String, String, String);

async fn recorded(
    session: &mut Session,
    databases: &[String],
) -> Result<Vec<Recorded>, MysqlError> {
    let present: Option<u64> = session
        .query_first(
            "look for the record of fenced grants",
            "SELECT COUNT(*) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'cutover' AND TABLE_NAME = 'fenced_grants'",
        )
        .await?;
    if present.unwrap_or(0) == 0 {
        return Ok(Vec::new());
    }
    session
        .query(
            "read the record of fenced grants",
            &format!(
                "SELECT user, host, db, privileges FROM {RECORD} WHERE db IN ({}) ORDER BY db, user, host",
                in_list(databases)
            ),
        )
        .await
}

/// One account's database-level write privileges.
struct WriteGrant {
    user: String,
    host: String,
    db: String,
    privileges: Vec<&'static str>,
}

async fn write_grants(
    session: &mut Session,
    databases: &[String],
) -> Result<Vec<WriteGrant>, MysqlError> {
    let columns = WRITE_PRIVILEGES
        .iter()
        .map(|(column, _)| format!("{column} = 'Y'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<mysql_async::Row> = session
        .query(
            "list the write privileges on the fenced databases",
            &format!(
                "SELECT User, Host, Db, {columns} FROM mysql.db WHERE Db IN ({}) ORDER BY Db, User, Host",
                in_list(databases)
            ),
        )
        .await?;
    let mut grants = Vec::new();
    for row in rows {
        let text = |index: usize| -> String {
            row.get::<Option<String>, _>(index)
                .flatten()
                .unwrap_or_default()
        };
        let (user, host, db) = (text(0), text(1), text(2));
        let privileges: Vec<&'static str> = WRITE_PRIVILEGES
            .iter()
            .enumerate()
            .filter(|(index, _)| row.get::<Option<i64>, _>(index + 3).flatten() == Some(1))
            .map(|(_, (_, privilege))| *privilege)
            .collect();
        if !privileges.is_empty() && !user.is_empty() {
            grants.push(WriteGrant {
                user,
                host,
                db,
                privileges,
            });
        }
    }
    Ok(grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_tables_are_locked() {
        assert_eq!(
            lock_statement(&["`refunds`.`a`".into(), "`cutover_probe`.`writes`".into()]),
            "FLUSH TABLES `refunds`.`a`, `cutover_probe`.`writes` WITH READ LOCK"
        );
    }
}
