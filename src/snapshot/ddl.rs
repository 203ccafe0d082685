//! The schema as the source prints it, reshaped for a fast load: secondary
//! indexes are built after the data, and definers that may not exist on the
//! target are dropped.

use crate::mysql::{MysqlError, Session};
use crate::tables::canonical::ident;

/// A table's `CREATE TABLE` without its secondary indexes, and the statement
/// that adds them once the rows are in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableDdl {
    /// The database the table lives in.
    pub schema: String,
    pub create: String,
    /// `ALTER TABLE … ADD KEY …, ADD UNIQUE KEY …` (`None`: nothing to add).
    pub add_indexes: Option<String>,
}

fn is_secondary_index(line: &str) -> bool {
    let line = line.trim_start();
    [
        "KEY ",
        "UNIQUE KEY ",
        "FULLTEXT KEY ",
        "SPATIAL KEY ",
        "INDEX ",
        "UNIQUE INDEX ",
    ]
    .iter()
    .any(|prefix| line.starts_with(prefix))
}

/// Split `SHOW CREATE TABLE` output. The primary key stays (InnoDB clusters the
/// rows on it); every other index is added afterwards in one `ALTER TABLE`.
pub fn split_table(schema: &str, qualified_name: &str, create: &str) -> TableDdl {
    let lines: Vec<&str> = create.lines().collect();
    if lines.len() < 3 {
        return TableDdl {
            schema: schema.to_string(),
            create: create.to_string(),
            add_indexes: None,
        };
    }
    let (head, rest) = lines.split_first().expect("checked length");
    let (tail, body) = rest.split_last().expect("checked length");
    let mut kept = Vec::new();
    let mut moved = Vec::new();
    for line in body {
        let element = line.trim_end().trim_end_matches(',').trim();
        if is_secondary_index(element) {
            moved.push(format!("ADD {element}"));
        } else {
            kept.push(format!("  {element}"));
        }
    }
    let create = format!("{head}\n{}\n{tail}", kept.join(",\n"));
    TableDdl {
        schema: schema.to_string(),
        create,
        add_indexes: (!moved.is_empty())
            .then(|| format!("ALTER TABLE {qualified_name} {}", moved.join(", "))),
    }
}

/// Remove a `DEFINER=user@host` clause: the object is created by the loading
/// account, which exists on the target.
pub fn without_definer(sql: &str) -> String {
    let Some(start) = sql.find("DEFINER=") else {
        return sql.to_string();
    };
    let rest = &sql[start + "DEFINER=".len()..];
    // `user`@`host`, with backquotes that may hold spaces.
    let mut end = 0;
    let mut in_quotes = false;
    for (i, c) in rest.char_indices() {
        match c {
            '`' => in_quotes = !in_quotes,
            ' ' if !in_quotes => {
                end = i;
                break;
            }
            _ => {}
        }
        end = i + c.len_utf8();
    }
    format!("{}{}", &sql[..start], rest[end..].trim_start())
}

/// Everything but the tables, in an order that lets each statement succeed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Objects {
    /// `(sql_mode, CREATE FUNCTION|PROCEDURE …)`, before the views that may call them.
    pub routines: Vec<(String, String)>,
    /// `(sql_mode, CREATE TRIGGER …)`, after the data so the load does not fire them.
    pub triggers: Vec<(String, String)>,
    /// `CREATE VIEW …`, last.
    pub views: Vec<String>,
}

/// `SHOW CREATE FUNCTION|PROCEDURE|TRIGGER`: (name, sql_mode, statement, …)
/// → the sql_mode and the statement without its definer.
async fn show_create_with_mode(
    session: &mut Session,
    what: &str,
    sql: &str,
) -> Result<Option<(String, String)>, MysqlError> {
    let row: Option<mysql_async::Row> = session.query_first(what, sql).await?;
    Ok(row.and_then(|mut row| {
        let mode: Option<String> = row.take(1);
        let body: Option<String> = row.take(2);
        body.map(|body| (mode.unwrap_or_default(), without_definer(&body)))
    }))
}

/// Read routines, triggers and views of `schema` from the source.
pub async fn objects(session: &mut Session, schema: &str) -> Result<Objects, MysqlError> {
    let quoted = crate::mysql::quote(schema);
    let mut objects = Objects::default();
    let routines: Vec<(String, String)> = session
        .query(
            "list routines",
            &format!(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = {quoted} ORDER BY ROUTINE_NAME"
            ),
        )
        .await?;
    for (name, kind) in routines {
        let sql = format!("SHOW CREATE {kind} {}.{}", ident(schema), ident(&name));
        objects
            .routines
            .extend(show_create_with_mode(session, "read a routine", &sql).await?);
    }
    let triggers: Vec<String> = session
        .query(
            "list triggers",
            &format!(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = {quoted} ORDER BY TRIGGER_NAME"
            ),
        )
        .await?;
    for name in triggers {
        let sql = format!("SHOW CREATE TRIGGER {}.{}", ident(schema), ident(&name));
        objects
            .triggers
            .extend(show_create_with_mode(session, "read a trigger", &sql).await?);
    }
    let views: Vec<String> = session
        .query(
            "list views",
            &format!(
                "SELECT TABLE_NAME FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA = {quoted} ORDER BY TABLE_NAME"
            ),
        )
        .await?;
    for name in views {
        // View, Create View, character_set_client, collation_connection.
        let row: Option<mysql_async::Row> = session
            .query_first(
                "read a view",
                &format!("SHOW CREATE VIEW {}.{}", ident(schema), ident(&name)),
            )
            .await?;
        if let Some(body) = row.and_then(|mut row| row.take::<Option<String>, _>(1).flatten()) {
            objects.views.push(without_definer(&body));
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRANSACTIONS: &str = "CREATE TABLE `transactions` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `txn_ref` char(22) NOT NULL,
  `amount` decimal(15,2) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_txn_ref` (`txn_ref`),
  KEY `idx_created_at` (`created_at`)
) ENGINE=InnoDB AUTO_INCREMENT=2001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

    #[test]
    fn secondary_indexes_move_after_the_data() {
        let ddl = split_table("refunds", "`refunds`.`transactions`", TRANSACTIONS);
        assert_eq!(
            ddl.create,
            "CREATE TABLE `transactions` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `txn_ref` char(22) NOT NULL,
  `amount` decimal(15,2) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=2001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        );
        assert_eq!(
            ddl.add_indexes.as_deref(),
            Some(
                "ALTER TABLE `refunds`.`transactions` ADD UNIQUE KEY `uk_txn_ref` (`txn_ref`), \
                 ADD KEY `idx_created_at` (`created_at`)"
            )
        );
    }

    #[test]
    fn a_table_without_secondary_indexes_is_unchanged() {
        let create =
            "CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  PRIMARY KEY (`a`)\n) ENGINE=InnoDB";
        let ddl = split_table("s", "`s`.`t`", create);
        assert_eq!(ddl.create, create);
        assert_eq!(ddl.add_indexes, None);
    }

    #[test]
    fn definers_are_dropped() {
        assert_eq!(
            without_definer(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`cutover admin`@`127.%` SQL SECURITY DEFINER VIEW `v` AS select 1"
            ),
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(
            without_definer("CREATE VIEW v AS select 1"),
            "CREATE VIEW v AS select 1"
        );
    }
}
