//! The chunk checksum: one query per chunk and participant returning the
//! row count, the sum and XOR of the row hashes, and each money column's
//! exact total. `checksum` compares chunks with it; `snapshot` checks a
//! loaded chunk against the source's with the same query.

use mysql_async::Row;

use super::canonical::{self, Dialect, Form};
use super::chunk::{self, Range};
use super::schema::TableSpec;
use crate::mysql::{MysqlError, Session};

/// What one participant's server returned for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSum {
    pub count: u64,
    pub sum: String,
    pub xor: u64,
    /// `(SUM, COUNT)` per money column.
    pub money: Vec<(Option<String>, u64)>,
}

impl ChunkSum {
    pub fn same_rows(&self, other: &ChunkSum) -> bool {
        self.count == other.count && self.sum == other.sum && self.xor == other.xor
    }
}

/// The SQL that checksums one chunk on one participant.
pub fn chunk_sql(
    table: &TableSpec,
    money: &[usize],
    range: &Range,
    form: Form,
    dialect: &Dialect,
) -> String {
    if form == Form::Fast && table.key.is_some() {
        // Keyed rows are distinct (the key is in the text), so BIT_XOR alone
        // cannot cancel equal rows: one pass, no derived table, nothing
        // materialised; the SUM column is a constant.
        let mut columns = vec![
            "COUNT(*)".to_string(),
            "'0'".to_string(),
            format!(
                "CAST(COALESCE(BIT_XOR({}), 0) AS CHAR)",
                canonical::row_hash(table, form, dialect)
            ),
        ];
        for column in money {
            let name = canonical::ident(&table.columns[*column].name);
            columns.push(format!("CAST(SUM({name}) AS CHAR)"));
            columns.push(format!("COUNT({name})"));
        }
        return format!(
            "SELECT {} FROM {}{} WHERE {}",
            columns.join(", "),
            canonical::table_name(table),
            chunk::index_hint(table),
            chunk::predicate(table, range)
        );
    }
    let mut outer = vec![
        "COUNT(*)".to_string(),
        "CAST(COALESCE(SUM(h), 0) AS CHAR)".to_string(),
        "CAST(COALESCE(BIT_XOR(h), 0) AS CHAR)".to_string(),
    ];
    let mut inner = vec![format!(
        "{} AS h",
        canonical::row_hash(table, form, dialect)
    )];
    for (i, column) in money.iter().enumerate() {
        outer.push(format!("CAST(SUM(m{i}) AS CHAR)"));
        outer.push(format!("COUNT(m{i})"));
        inner.push(format!(
            "{} AS m{i}",
            canonical::ident(&table.columns[*column].name)
        ));
    }
    // The LIMIT keeps the derived table from being merged, so the row hash is
    // computed once per row although SUM and BIT_XOR both read it (SUM too,
    // as rows without a key may repeat and cancel in BIT_XOR).
    format!(
        "SELECT {} FROM (SELECT {} FROM {}{} WHERE {} LIMIT 18446744073709551615) AS chunk_rows",
        outer.join(", "),
        inner.join(", "),
        canonical::table_name(table),
        chunk::index_hint(table),
        chunk::predicate(table, range)
    )
}

fn parse_sum(row: Row, money: usize) -> Option<ChunkSum> {
    let count: u64 = row.get::<Option<u64>, _>(0)??;
    let sum: String = row.get::<Option<String>, _>(1)??;
    let xor: u64 = row.get::<Option<String>, _>(2)??.parse().ok()?;
    let money = (0..money)
        .map(|i| {
            let total: Option<String> = row.get::<Option<String>, _>(3 + 2 * i)?;
            let count: u64 = row.get::<Option<u64>, _>(4 + 2 * i)??;
            Some((total, count))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ChunkSum {
        count,
        sum,
        xor,
        money,
    })
}

fn malformed(session: &Session, what: &str) -> MysqlError {
    MysqlError::Query {
        cluster: session.endpoint().name.clone(),
        what: what.to_string(),
        reason: "the server returned an unexpected result".to_string(),
        code: None,
    }
}

pub async fn checksum_on(
    session: &mut Session,
    sql: &str,
    money: usize,
) -> Result<ChunkSum, MysqlError> {
    let row: Option<Row> = session.query_first("checksum a chunk", sql).await?;
    row.and_then(|row| parse_sum(row, money))
        .ok_or_else(|| malformed(session, "checksum a chunk"))
}
