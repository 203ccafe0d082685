//! Which tables are compared, their columns, and the key that chunks them.

use std::collections::{BTreeMap, HashSet};

use crate::mysql::{MysqlError, Session, quote};

/// The server's own schemas: never compared, never copied.
pub const SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// The orchestrator's own schemas (heartbeat, write probe). Not compared unless
/// named (their rows differ between clusters by design while replicas lag), but
/// copied by a snapshot: replication carries their writes, so targets need them.
pub const ORCHESTRATOR_SCHEMAS: &[&str] = &["cutover", "cutover_probe"];

/// Schemas left out of a comparison that does not name them.
pub const EXCLUDED_SCHEMAS: &[&str] = &[
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    "cutover",
    "cutover_probe",
];

/// How a column's value becomes canonical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    Integer,
    Decimal,
    Float,
    Date,
    DateTime,
    Time,
    Text,
    Json,
    Binary,
    Bit,
}

impl ColumnClass {
    pub fn of(data_type: &str) -> ColumnClass {
        match data_type {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
                ColumnClass::Integer
            }
            "decimal" | "numeric" => ColumnClass::Decimal,
            "float" | "double" | "real" | "double precision" => ColumnClass::Float,
            "date" => ColumnClass::Date,
            "datetime" | "timestamp" => ColumnClass::DateTime,
            "time" => ColumnClass::Time,
            "json" => ColumnClass::Json,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" | "vector" => {
                ColumnClass::Binary
            }
            "bit" => ColumnClass::Bit,
            _ => ColumnClass::Text,
        }
    }

    /// Key values of this class are written as numbers in SQL and JSON.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ColumnClass::Integer | ColumnClass::Decimal | ColumnClass::Float | ColumnClass::Bit
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// As the server reports it (`decimal`, `varchar`, …); compared across clusters.
    pub data_type: String,
    pub class: ColumnClass,
    pub nullable: bool,
    /// Computed by the server (VIRTUAL or STORED): read and compared, never loaded.
    pub generated: bool,
}

/// The index chunks walk: the primary key, or a unique index over NOT NULL columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkKey {
    pub index: String,
    /// Positions in [`TableSpec::columns`].
    pub columns: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct TableSpec {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    pub key: Option<ChunkKey>,
    /// The server's estimate, for progress only.
    pub estimated_rows: u64,
    /// MariaDB system versioning: the table also holds the history of its rows.
    pub versioned: bool,
}

/// MariaDB's implicit period columns of a system-versioned table, which a
/// loading session with `system_versioning_insert_history` may write.
pub const HISTORY_COLUMNS: [&str; 2] = ["row_start", "row_end"];

/// Each table's name and estimated rows, for progress bars.
pub fn sizes(tables: &[TableSpec]) -> Vec<(String, u64)> {
    tables
        .iter()
        .map(|table| (table.display_name(), table.estimated_rows))
        .collect()
}

impl TableSpec {
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn key_columns(&self) -> Vec<&Column> {
        self.key
            .as_ref()
            .map(|key| key.columns.iter().map(|i| &self.columns[*i]).collect())
            .unwrap_or_default()
    }

    /// What a snapshot reads and loads: generated columns left to the
    /// server; a system-versioned table with its history (`row_start` and
    /// `row_end` travel with every row, so it is streamed without a key).
    pub fn for_copy(&self) -> TableSpec {
        let mut copy = self.clone();
        copy.columns.retain(|c| !c.generated);
        copy.key = self.key.as_ref().and_then(|key| {
            let positions: Option<Vec<usize>> = key
                .columns
                .iter()
                .map(|i| {
                    let name = &self.columns[*i].name;
                    copy.columns.iter().position(|c| &c.name == name)
                })
                .collect();
            positions.map(|columns| ChunkKey {
                index: key.index.clone(),
                columns,
            })
        });
        if self.versioned {
            copy.key = None;
            for name in HISTORY_COLUMNS {
                copy.columns.push(Column {
                    name: name.to_string(),
                    data_type: "timestamp".into(),
                    class: ColumnClass::DateTime,
                    nullable: false,
                    generated: false,
                });
            }
        }
        copy
    }

    /// `FROM` clause suffix: every version of every row of a versioned table.
    pub fn history_clause(&self) -> &'static str {
        if self.versioned {
            " FOR SYSTEM_TIME ALL"
        } else {
            ""
        }
    }

    /// Name and type of every column, for comparing a target's table with the source's.
    pub fn shape(&self) -> Vec<(String, String)> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), c.data_type.clone()))
            .collect()
    }
}

/// `*` and `?` wildcards, case-sensitive like table names on Linux.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn matches(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => matches(&p[1..], t) || (!t.is_empty() && matches(p, &t[1..])),
            (Some('?'), Some(_)) => matches(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t)
}

/// Does `schema.table` match any pattern? A pattern without a dot names tables
/// in any selected schema. No patterns selects everything.
pub fn selected(patterns: &[String], schema: &str, table: &str) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|pattern| match pattern.split_once('.') {
                Some((s, t)) => glob_match(s, schema) && glob_match(t, table),
                None => glob_match(pattern, table),
            })
}

/// Every selected base table with its columns and chunk key, read from `session`.
pub async fn discover(
    session: &mut Session,
    databases: Option<&[String]>,
    patterns: &[String],
) -> Result<Vec<TableSpec>, MysqlError> {
    let schemas: Vec<String> = session
        .query::<String>(
            "list schemas",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME",
        )
        .await?
        .into_iter()
        .filter(|schema| !SYSTEM_SCHEMAS.contains(&schema.as_str()))
        .filter(|schema| {
            // The orchestrator's own schemas only when the caller lists them.
            !ORCHESTRATOR_SCHEMAS.contains(&schema.as_str())
                || databases.is_some_and(|list| list.iter().any(|d| d == schema))
        })
        .filter(|schema| {
            // Explicit `schema.table` patterns may reach beyond the plan's databases.
            let named = patterns.iter().any(|p| {
                p.split_once('.')
                    .is_some_and(|(s, _)| glob_match(s, schema))
            });
            named || databases.is_none_or(|list| list.iter().any(|d| d == schema))
        })
        .collect();
    if schemas.is_empty() {
        return Ok(Vec::new());
    }
    let in_list = schemas
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ");
    let tables: Vec<(String, String, Option<u64>, String)> = session
        .query(
            "list tables",
            &format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS, TABLE_TYPE FROM information_schema.TABLES \
                 WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND TABLE_SCHEMA IN ({in_list}) \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME"
            ),
        )
        .await?;
    let mut columns = columns_of(session, &in_list).await?;
    let json = json_columns(session, &in_list).await?;
    let unique = unique_indexes(session, &in_list).await?;

    let mut specs = Vec::new();
    for (schema, name, estimated, table_type) in tables {
        if !selected(patterns, &schema, &name) {
            continue;
        }
        let mut table_columns = columns
            .remove(&(schema.clone(), name.clone()))
            .unwrap_or_default();
        for column in &mut table_columns {
            if json.contains(&(schema.clone(), name.clone(), column.name.clone())) {
                column.class = ColumnClass::Json;
            }
        }
        let key = choose_key(&table_columns, unique.get(&(schema.clone(), name.clone())));
        specs.push(TableSpec {
            schema,
            name,
            columns: table_columns,
            key,
            estimated_rows: estimated.unwrap_or(0),
            versioned: table_type == "SYSTEM VERSIONED",
        });
    }
    Ok(specs)
}

/// One table's columns as a target has them (`None`: no such table).
pub async fn shape_on(
    session: &mut Session,
    schema: &str,
    table: &str,
) -> Result<Option<Vec<(String, String)>>, MysqlError> {
    let rows: Vec<(String, String)> = session
        .query(
            "read the table's columns",
            &format!(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
                quote(schema),
                quote(table)
            ),
        )
        .await?;
    Ok((!rows.is_empty()).then(|| {
        rows.into_iter()
            .map(|(name, data_type)| (name, data_type.to_ascii_lowercase()))
            .collect()
    }))
}

type TableId = (String, String);

async fn columns_of(
    session: &mut Session,
    in_list: &str,
) -> Result<BTreeMap<TableId, Vec<Column>>, MysqlError> {
    let rows: Vec<(String, String, String, String, String, String)> = session
        .query(
            "list columns",
            &format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE, EXTRA \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({in_list}) \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ),
        )
        .await?;
    let mut out: BTreeMap<TableId, Vec<Column>> = BTreeMap::new();
    for (schema, table, name, data_type, nullable, extra) in rows {
        let data_type = data_type.to_ascii_lowercase();
        out.entry((schema, table)).or_default().push(Column {
            name,
            class: ColumnClass::of(&data_type),
            data_type,
            nullable: nullable == "YES",
            generated: is_generated(&extra),
        });
    }
    Ok(out)
}

/// `EXTRA` of a computed column. Not MySQL's `DEFAULT_GENERATED`, which marks
/// a column whose default is an expression (`DEFAULT CURRENT_TIMESTAMP`):
/// its value is the row's own and must be copied.
fn is_generated(extra: &str) -> bool {
    let extra = extra.to_ascii_uppercase();
    extra.contains("VIRTUAL GENERATED") || extra.contains("STORED GENERATED")
}

/// MariaDB keeps JSON as LONGTEXT with a `json_valid()` check.
async fn json_columns(
    session: &mut Session,
    in_list: &str,
) -> Result<HashSet<(String, String, String)>, MysqlError> {
    let rows: Vec<(String, String, String)> = match session
        .query(
            "list JSON checks",
            &format!(
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE \
                 FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN ({in_list})"
            ),
        )
        .await
    {
        Ok(rows) => rows,
        // MySQL's CHECK_CONSTRAINTS has no TABLE_NAME; its JSON columns say `json` anyway.
        Err(MysqlError::Query { .. }) => Vec::new(),
        Err(error) => return Err(error),
    };
    Ok(rows
        .into_iter()
        .filter_map(|(schema, table, clause)| {
            let lower = clause.to_ascii_lowercase();
            let inner = lower.strip_prefix("json_valid(")?.strip_suffix(')')?;
            let column = inner.trim().trim_matches('`');
            // Recover the original spelling from the clause.
            let start = clause.to_ascii_lowercase().find(column)?;
            Some((
                schema,
                table,
                clause[start..start + column.len()].to_string(),
            ))
        })
        .collect())
}

/// Unique indexes per table: name → (column, nullable) in index order.
type UniqueIndexes = BTreeMap<TableId, Vec<(String, Vec<String>)>>;

async fn unique_indexes(session: &mut Session, in_list: &str) -> Result<UniqueIndexes, MysqlError> {
    let rows: Vec<(String, String, String, String, Option<u64>)> = session
        .query(
            "list unique indexes",
            &format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, COLUMN_NAME, SUB_PART \
                 FROM information_schema.STATISTICS \
                 WHERE NON_UNIQUE = 0 AND TABLE_SCHEMA IN ({in_list}) \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
            ),
        )
        .await?;
    let mut out: UniqueIndexes = BTreeMap::new();
    let mut prefixed: HashSet<(String, String, String)> = HashSet::new();
    for (schema, table, index, column, sub_part) in rows {
        if sub_part.is_some() {
            // A prefix index orders by the prefix only: it cannot bound chunks.
            prefixed.insert((schema.clone(), table.clone(), index.clone()));
        }
        let indexes = out.entry((schema, table)).or_default();
        match indexes.iter_mut().find(|(name, _)| *name == index) {
            Some((_, columns)) => columns.push(column),
            None => indexes.push((index, vec![column])),
        }
    }
    for ((schema, table), indexes) in out.iter_mut() {
        indexes.retain(|(index, _)| {
            !prefixed.contains(&(schema.clone(), table.clone(), index.clone()))
        });
    }
    Ok(out)
}

/// The primary key, else the narrowest unique index over NOT NULL columns.
pub fn choose_key(
    columns: &[Column],
    indexes: Option<&Vec<(String, Vec<String>)>>,
) -> Option<ChunkKey> {
    let resolve = |names: &[String]| -> Option<Vec<usize>> {
        names
            .iter()
            .map(|name| columns.iter().position(|c| &c.name == name && !c.nullable))
            .collect()
    };
    let indexes = indexes?;
    if let Some((index, names)) = indexes.iter().find(|(index, _)| index == "PRIMARY")
        && let Some(positions) = resolve(names)
    {
        return Some(ChunkKey {
            index: index.clone(),
            columns: positions,
        });
    }
    indexes
        .iter()
        .filter_map(|(index, names)| {
            resolve(names).map(|positions| ChunkKey {
                index: index.clone(),
                columns: positions,
            })
        })
        .min_by_key(|key| key.columns.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, nullable: bool) -> Column {
        Column {
            name: name.into(),
            data_type: "int".into(),
            class: ColumnClass::Integer,
            nullable,
            generated: false,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("refunds.*", "refunds.transactions"));
        assert!(glob_match("txn_*", "txn_participants"));
        assert!(glob_match("t?", "t1"));
        assert!(!glob_match("t?", "t12"));
        assert!(!glob_match("ledger", "ledger_entries"));
        assert!(selected(&[], "refunds", "x"));
        assert!(selected(
            &["refunds.ledger*".into()],
            "refunds",
            "ledger_entries"
        ));
        assert!(!selected(&["other.*".into()], "refunds", "ledger_entries"));
        assert!(selected(
            &["ledger_entries".into()],
            "refunds",
            "ledger_entries"
        ));
    }

    #[test]
    fn key_choice_prefers_the_primary_key_then_the_narrowest_not_null_unique() {
        let columns = vec![column("a", false), column("b", false), column("c", true)];
        let with_primary = vec![
            ("uk".to_string(), vec!["b".to_string()]),
            (
                "PRIMARY".to_string(),
                vec!["a".to_string(), "b".to_string()],
            ),
        ];
        assert_eq!(
            choose_key(&columns, Some(&with_primary)).unwrap().columns,
            vec![0, 1]
        );
        let uniques = vec![
            ("wide".to_string(), vec!["a".to_string(), "b".to_string()]),
            ("narrow".to_string(), vec!["b".to_string()]),
            ("nullable".to_string(), vec!["c".to_string()]),
        ];
        assert_eq!(
            choose_key(&columns, Some(&uniques)).unwrap().index,
            "narrow"
        );
        let only_nullable = vec![("nullable".to_string(), vec!["c".to_string()])];
        assert!(choose_key(&columns, Some(&only_nullable)).is_none());
        assert!(choose_key(&columns, None).is_none());
    }

    #[test]
    fn only_computed_columns_are_generated() {
        assert!(is_generated("VIRTUAL GENERATED"));
        assert!(is_generated("STORED GENERATED"));
        assert!(!is_generated(
            "DEFAULT_GENERATED on update CURRENT_TIMESTAMP"
        ));
        assert!(!is_generated("DEFAULT_GENERATED"));
        assert!(!is_generated("INVISIBLE"));
        assert!(!is_generated(""));
    }

    #[test]
    fn column_classes() {
        assert_eq!(ColumnClass::of("decimal"), ColumnClass::Decimal);
        assert_eq!(ColumnClass::of("double"), ColumnClass::Float);
        assert_eq!(ColumnClass::of("timestamp"), ColumnClass::DateTime);
        assert_eq!(ColumnClass::of("varbinary"), ColumnClass::Binary);
        assert_eq!(ColumnClass::of("longtext"), ColumnClass::Text);
        assert_eq!(ColumnClass::of("enum"), ColumnClass::Text);
    }
}
