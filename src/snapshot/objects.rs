//! What the targets need besides rows: the databases a snapshot copies, whether a target is empty, and the source's objects created on every target (tables first, then indexes, triggers and views once the rows are in).

use super::*;

/// The databases a snapshot copies: the plan's (or every non-system schema),
/// plus the orchestrator's own where the source has them, since replication
/// will carry the probe's and the heartbeat's writes into them.
pub async fn databases(
    session: &mut Session,
    plan: &ValidatedPlan,
) -> Result<Vec<String>, MysqlError> {
    let all: Vec<String> = session
        .query(
            "list schemas",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
        )
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| !schema::SYSTEM_SCHEMAS.contains(&s.as_str()))
        .filter(|s| {
            schema::ORCHESTRATOR_SCHEMAS.contains(&s.as_str())
                || plan
                    .databases
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|d| d == s))
        })
        .collect())
}

/// The databases whose tables make a target "not empty": the orchestrator's
/// own hold no business data and are always replaced.
pub(super) fn business_databases(databases: &[String]) -> Vec<String> {
    databases
        .iter()
        .filter(|d| !schema::ORCHESTRATOR_SCHEMAS.contains(&d.as_str()))
        .cloned()
        .collect()
}

/// What a target already holds in `databases` (every non-system schema when
/// `None`): `None` when it holds no table, else a line saying what.
pub async fn existing_tables(
    session: &mut Session,
    databases: Option<&[String]>,
) -> Result<Option<String>, MysqlError> {
    let schemas: Vec<String> = match databases {
        Some(list) => list.to_vec(),
        None => session
            .query::<String>(
                "list schemas",
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
            )
            .await?
            .into_iter()
            .filter(|s| !schema::EXCLUDED_SCHEMAS.contains(&s.as_str()))
            .collect(),
    };
    if schemas.is_empty() {
        return Ok(None);
    }
    emptiness(session, &schemas).await
}

/// Refuse a target whose selected databases already hold tables (unless replacing).
pub(super) async fn emptiness(
    session: &mut Session,
    databases: &[String],
) -> Result<Option<String>, MysqlError> {
    if databases.is_empty() {
        return Ok(None);
    }
    let in_list = databases
        .iter()
        .map(|d| quote(d))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(String, u64, Option<u64>)> = session
        .query(
            "look for existing tables",
            &format!(
                "SELECT TABLE_SCHEMA, COUNT(*), SUM(TABLE_ROWS) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA IN ({in_list}) GROUP BY TABLE_SCHEMA ORDER BY TABLE_SCHEMA"
            ),
        )
        .await?;
    Ok((!rows.is_empty()).then(|| {
        rows.iter()
            .map(|(schema, tables, rows)| {
                format!(
                    "{schema} has {tables} table(s), about {} row(s)",
                    rows.unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }))
}

/// Everything the targets need before the rows arrive.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Schema {
    /// `(name, CREATE DATABASE IF NOT EXISTS …)`.
    pub databases: Vec<(String, String)>,
    pub tables: Vec<ddl::TableDdl>,
    pub objects: Vec<(String, ddl::Objects)>,
}

pub(super) async fn read_schema(
    session: &mut Session,
    databases: &[String],
    tables: &[TableSpec],
) -> Result<Schema, MysqlError> {
    let mut out = Schema {
        databases: Vec::new(),
        tables: Vec::new(),
        objects: Vec::new(),
    };
    for database in databases {
        let row: Option<(String, String)> = session
            .query_first(
                "read a database definition",
                &format!("SHOW CREATE DATABASE {}", ident(database)),
            )
            .await?;
        let create = row
            .map(|(_, sql)| sql)
            .unwrap_or_else(|| format!("CREATE DATABASE {}", ident(database)));
        out.databases.push((
            database.clone(),
            create.replacen("CREATE DATABASE ", "CREATE DATABASE IF NOT EXISTS ", 1),
        ));
        out.objects
            .push((database.clone(), ddl::objects(session, database).await?));
    }
    for table in tables {
        let row: Option<(String, String)> = session
            .query_first(
                "read a table definition",
                &format!("SHOW CREATE TABLE {}", table_name(table)),
            )
            .await?;
        let create = row.map(|(_, sql)| sql).unwrap_or_default();
        out.tables
            .push(ddl::split_table(&table.schema, &table_name(table), &create));
    }
    Ok(out)
}

/// What an earlier, interrupted attempt already created: a table or view
/// (1050), a routine (1304), an index (1061), a trigger (1359).
pub(super) fn already_exists(error: &MysqlError) -> bool {
    error.is_server_error(&[1050, 1304, 1061, 1359])
}

/// Run a DDL statement; on a resume, one that finds its object in place is done.
pub(super) async fn create(
    session: &mut Session,
    what: &str,
    sql: &str,
    resuming: bool,
) -> Result<(), MysqlError> {
    match session.exec(what, sql).await {
        Err(error) if resuming && already_exists(&error) => Ok(()),
        other => other,
    }
}

/// Databases, routines and tables (without secondary indexes) on one target.
pub(super) async fn create_schema(
    session: &mut Session,
    schema: &Schema,
    replace: bool,
    resuming: bool,
) -> Result<(), MysqlError> {
    for (database, create) in &schema.databases {
        let ours = schema::ORCHESTRATOR_SCHEMAS.contains(&database.as_str());
        if replace || (ours && !resuming) {
            session
                .exec(
                    "drop the database being replaced",
                    &format!("DROP DATABASE IF EXISTS {}", ident(database)),
                )
                .await?;
        }
        session.exec("create a database", create).await?;
    }
    for (database, objects) in &schema.objects {
        for (mode, statement) in &objects.routines {
            let sql = format!(
                "SET SESSION sql_mode = {}; USE {}; {statement}",
                quote(mode),
                ident(database)
            );
            create(session, "create a routine", &sql, resuming).await?;
        }
    }
    for table in &schema.tables {
        let sql = format!("USE {}; {}", ident(&table.schema), table.create);
        create(session, "create a table", &sql, resuming).await?;
    }
    session
        .exec(
            "restore the session's sql_mode",
            "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
        )
        .await
}

/// Secondary indexes, triggers and views, once the rows are in.
pub(super) async fn finish_schema(
    session: &mut Session,
    schema: &Schema,
    resuming: bool,
) -> Result<(), MysqlError> {
    for table in &schema.tables {
        if let Some(alter) = &table.add_indexes {
            create(session, "build secondary indexes", alter, resuming).await?;
        }
    }
    for (database, objects) in &schema.objects {
        for (mode, statement) in &objects.triggers {
            let sql = format!(
                "SET SESSION sql_mode = {}; USE {}; {statement}",
                quote(mode),
                ident(database)
            );
            create(session, "create a trigger", &sql, resuming).await?;
        }
    }
    // Views may select from views: create what can be created, pass after pass.
    let mut pending: Vec<(&String, &String)> = schema
        .objects
        .iter()
        .flat_map(|(database, objects)| objects.views.iter().map(move |v| (database, v)))
        .collect();
    let mut last_error = None;
    for _ in 0..=pending.len() {
        if pending.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for (database, view) in pending {
            let sql = format!("USE {}; {view}", ident(database));
            if let Err(error) = create(session, "create a view", &sql, resuming).await {
                last_error = Some(error);
                still.push((database, view));
            }
        }
        pending = still;
    }
    match (pending.is_empty(), last_error) {
        (false, Some(error)) => Err(error),
        _ => Ok(()),
    }
}
