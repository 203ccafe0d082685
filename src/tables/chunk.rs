//! Key ranges: the same boundaries on every cluster, written as SQL the range
//! optimiser uses, and a chunk size that adapts toward a target time.

use std::time::Duration;

use mysql_async::{Row, Value};

use super::canonical::ident;
use super::schema::{ColumnClass, TableSpec};
use crate::mysql::{MysqlError, Session, quote};

/// One key column's value, as read from the source and written back into SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyValue {
    Number(String),
    Text(String),
    Bytes(Vec<u8>),
}

impl KeyValue {
    pub fn from_value(value: Value, class: ColumnClass) -> KeyValue {
        let bytes = match value {
            Value::Bytes(bytes) => bytes,
            Value::Int(n) => return KeyValue::Number(n.to_string()),
            Value::UInt(n) => return KeyValue::Number(n.to_string()),
            Value::NULL => Vec::new(),
            other => other.as_sql(true).into_bytes(),
        };
        if class == ColumnClass::Binary {
            return KeyValue::Bytes(bytes);
        }
        match String::from_utf8(bytes) {
            Ok(text) if class.is_numeric() && is_number(&text) => KeyValue::Number(text),
            Ok(text) => KeyValue::Text(text),
            Err(error) => KeyValue::Bytes(error.into_bytes()),
        }
    }

    /// A SQL literal; numbers stay numbers so comparisons use the index's order.
    pub fn literal(&self) -> String {
        match self {
            KeyValue::Number(text) => text.clone(),
            KeyValue::Text(text) => quote(text),
            KeyValue::Bytes(bytes) => format!("X'{}'", hex::encode(bytes)),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeyValue::Number(text) => text
                .parse::<i64>()
                .map(serde_json::Value::from)
                .or_else(|_| text.parse::<u64>().map(serde_json::Value::from))
                .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
            KeyValue::Text(text) => serde_json::Value::String(text.clone()),
            KeyValue::Bytes(bytes) => {
                serde_json::Value::String(format!("0x{}", hex::encode(bytes)))
            }
        }
    }
}

fn is_number(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
}

pub type Key = Vec<KeyValue>;

/// Rows with key in (`after`, `up_to`]; `None` is unbounded on that side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    pub after: Option<Key>,
    pub up_to: Option<Key>,
}

impl Range {
    pub fn all() -> Range {
        Range {
            after: None,
            up_to: None,
        }
    }
}

/// `(c1, c2) > (v1, v2)`, spelled out so every flavor's range optimiser uses
/// the index: `c1 >= v1 AND (c1 > v1 OR (c1 = v1 AND c2 > v2))`.
fn beyond(columns: &[String], values: &[KeyValue], last_op: &str, strict_op: &str) -> String {
    fn nested(columns: &[String], values: &[String], last_op: &str, strict_op: &str) -> String {
        let (c, v) = (&columns[0], &values[0]);
        if columns.len() == 1 {
            format!("{c} {last_op} {v}")
        } else {
            format!(
                "({c} {strict_op} {v} OR ({c} = {v} AND {}))",
                nested(&columns[1..], &values[1..], last_op, strict_op)
            )
        }
    }
    let literals: Vec<String> = values.iter().map(KeyValue::literal).collect();
    let inner = nested(columns, &literals, last_op, strict_op);
    if columns.len() == 1 {
        inner
    } else {
        let loose = if strict_op == ">" { ">=" } else { "<=" };
        format!("{} {loose} {} AND {inner}", columns[0], literals[0])
    }
}

/// The WHERE clause for `range` over `table`'s chunk key (`1=1` when unbounded).
pub fn predicate(table: &TableSpec, range: &Range) -> String {
    let columns: Vec<String> = table.key_columns().iter().map(|c| ident(&c.name)).collect();
    let mut parts = Vec::new();
    if let Some(after) = &range.after {
        parts.push(format!("({})", beyond(&columns, after, ">", ">")));
    }
    if let Some(up_to) = &range.up_to {
        parts.push(format!("({})", beyond(&columns, up_to, "<=", "<")));
    }
    if parts.is_empty() {
        "1=1".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// `ORDER BY` over the chunk key.
pub fn key_order(table: &TableSpec) -> String {
    table
        .key_columns()
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key columns as a select list.
pub fn key_select(table: &TableSpec) -> String {
    key_order(table)
}

/// `FORCE INDEX (…)` so every cluster walks the same index.
pub fn index_hint(table: &TableSpec) -> String {
    table
        .key
        .as_ref()
        .map(|key| format!(" FORCE INDEX ({})", ident(&key.index)))
        .unwrap_or_default()
}

/// The key `offset` rows into `range`, to split it in two.
pub async fn middle_key(
    session: &mut Session,
    table: &TableSpec,
    range: &Range,
    offset: u64,
) -> Result<Option<Key>, MysqlError> {
    let sql = format!(
        "SELECT {} FROM {}{} WHERE {} ORDER BY {} LIMIT 1 OFFSET {}",
        key_select(table),
        super::canonical::table_name(table),
        index_hint(table),
        predicate(table, range),
        key_order(table),
        offset.saturating_sub(1)
    );
    let row: Option<Row> = session
        .query_first("find a chunk's middle key", &sql)
        .await?;
    Ok(row.map(|row| key_of(table, row, 0)))
}

/// The first key-length values of `row`, from position `start`.
pub fn key_of(table: &TableSpec, mut row: Row, start: usize) -> Key {
    table
        .key_columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = row.take(start + i).unwrap_or(mysql_async::Value::NULL);
            KeyValue::from_value(value, column.class)
        })
        .collect()
}

/// Cuts a keyed table into consecutive ranges, in key order: each range ends
/// `rows` rows after the previous one, and the last one is open-ended.
#[derive(Debug, Default)]
pub struct KeyWalker {
    after: Option<Key>,
    /// Where the walk stops (`None`: the end of the table).
    up_to: Option<Key>,
    done: bool,
}

impl KeyWalker {
    /// A walk over `range` only: its first range starts after `range.after`
    /// and its last one ends at `range.up_to`.
    pub fn within(range: Range) -> KeyWalker {
        KeyWalker {
            after: range.after,
            up_to: range.up_to,
            done: false,
        }
    }

    /// The next range of about `rows` rows (`None` once the last was given).
    pub async fn next(
        &mut self,
        session: &mut Session,
        table: &TableSpec,
        rows: u64,
    ) -> Result<Option<Range>, MysqlError> {
        if self.done {
            return Ok(None);
        }
        let open = Range {
            after: self.after.clone(),
            up_to: self.up_to.clone(),
        };
        Ok(Some(
            match middle_key(session, table, &open, rows).await? {
                Some(boundary) => {
                    self.after = Some(boundary.clone());
                    Range {
                        after: open.after,
                        up_to: Some(boundary),
                    }
                }
                None => {
                    self.done = true;
                    open
                }
            },
        ))
    }
}

/// Chunks of a single integer key cut by arithmetic instead of by walking the
/// key: for a key whose values are spread evenly (what `span_walker` checks
/// before choosing it) a width of `rows / density` holds about `rows` rows,
/// and no query reads the index to find the boundary. The ranges still tile
/// the whole key space (the first is open below, the last above), so an
/// uneven spread costs only chunk sizes, which the sizer then corrects.
#[derive(Debug, Clone)]
pub struct SpanWalker {
    after: Option<i128>,
    min: i128,
    max: i128,
    /// Rows per key value.
    density: f64,
    done: bool,
}

impl SpanWalker {
    pub fn new(min: i128, max: i128, density: f64) -> SpanWalker {
        SpanWalker {
            after: None,
            min,
            max,
            density: density.clamp(f64::MIN_POSITIVE, 1.0),
            done: false,
        }
    }

    /// Key values holding about `rows` rows.
    pub fn width(&self, rows: u64) -> i128 {
        ((rows as f64 / self.density).ceil() as i128).max(1)
    }

    pub fn next(&mut self, rows: u64) -> Option<Range> {
        if self.done {
            return None;
        }
        let key = |n: i128| vec![KeyValue::Number(n.to_string())];
        let from = self.after.unwrap_or(self.min - 1);
        let up_to = from.saturating_add(self.width(rows));
        let after = self.after.map(key);
        if up_to >= self.max {
            self.done = true;
            return Some(Range { after, up_to: None });
        }
        self.after = Some(up_to);
        Some(Range {
            after,
            up_to: Some(key(up_to)),
        })
    }
}

/// The rows of a single-integer-key table with keys in `(after, after + width]`.
async fn count_span(
    session: &mut Session,
    table: &TableSpec,
    after: i128,
    width: i128,
) -> Result<u64, MysqlError> {
    let range = Range {
        after: Some(vec![KeyValue::Number(after.to_string())]),
        up_to: Some(vec![KeyValue::Number(
            after.saturating_add(width).to_string(),
        )]),
    };
    let count: Option<u64> = session
        .query_first(
            "count a key span",
            &format!(
                "SELECT COUNT(*) FROM {}{} WHERE {}",
                super::canonical::table_name(table),
                index_hint(table),
                predicate(table, &range)
            ),
        )
        .await?;
    Ok(count.unwrap_or(0))
}

/// A [`SpanWalker`] for `table` when its key is one integer column whose
/// values are spread evenly: a span meant to hold `rows` rows, counted at the
/// start and in the middle of the key range, holds between a quarter and four
/// times that. `None`: walk the key instead.
pub async fn span_walker(
    session: &mut Session,
    table: &TableSpec,
    rows: u64,
) -> Result<Option<SpanWalker>, MysqlError> {
    let columns = table.key_columns();
    let [column] = columns.as_slice() else {
        return Ok(None);
    };
    if column.class != ColumnClass::Integer || table.estimated_rows == 0 {
        return Ok(None);
    }
    let name = ident(&column.name);
    let bounds: Option<(Option<String>, Option<String>)> = session
        .query_first(
            "read a key's bounds",
            &format!(
                "SELECT CAST(MIN({name}) AS CHAR), CAST(MAX({name}) AS CHAR) FROM {}",
                super::canonical::table_name(table)
            ),
        )
        .await?;
    let Some((Some(min), Some(max))) = bounds else {
        return Ok(None);
    };
    let (Ok(min), Ok(max)) = (min.parse::<i128>(), max.parse::<i128>()) else {
        return Ok(None);
    };
    let values = (max - min + 1) as f64;
    let walker = SpanWalker::new(min, max, table.estimated_rows as f64 / values);
    let width = walker.width(rows);
    if width >= max - min {
        // One chunk covers it all anyway.
        return Ok(Some(walker));
    }
    let even = |found: u64| found >= rows / 4 && found <= rows.saturating_mul(4);
    let at_start = count_span(session, table, min - 1, width).await?;
    let middle = min + (max - min) / 2;
    let in_middle = count_span(session, table, middle, width).await?;
    if !(even(at_start) && even(in_middle)) {
        return Ok(None);
    }
    // The counted density is better than the server's row estimate.
    let counted = (at_start + in_middle) as f64 / (2 * width) as f64;
    Ok(Some(SpanWalker::new(min, max, counted)))
}

/// Rows per chunk, steered toward a target time per chunk.
#[derive(Debug, Clone)]
pub struct ChunkSizer {
    rows: u64,
    target: Duration,
}

impl ChunkSizer {
    pub const MIN_ROWS: u64 = 1_000;
    pub const MAX_ROWS: u64 = 500_000;

    pub fn new(target: Duration) -> ChunkSizer {
        ChunkSizer {
            rows: 10_000,
            target,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Fold in one finished chunk; a change is at most ×2 or ÷2 per chunk so one
    /// slow chunk (a checkpoint, a neighbour's burst) does not swing the size.
    pub fn observe(&mut self, rows: u64, elapsed: Duration) {
        if rows == 0 {
            return;
        }
        let seconds = elapsed.as_secs_f64().max(0.000_1);
        let ideal = rows as f64 * self.target.as_secs_f64() / seconds;
        let current = self.rows as f64;
        let next = ideal.clamp(current / 2.0, current * 2.0);
        self.rows = (next as u64).clamp(Self::MIN_ROWS, Self::MAX_ROWS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_tile_the_whole_key_space() {
        let mut walker = SpanWalker::new(1, 1_000, 0.5);
        assert_eq!(walker.width(100), 200);
        let first = walker.next(100).unwrap();
        assert_eq!(first.after, None);
        assert_eq!(first.up_to, Some(vec![KeyValue::Number("200".into())]));
        let mut previous = first.up_to.clone();
        let mut ranges = 1;
        while let Some(range) = walker.next(100) {
            assert_eq!(
                range.after, previous,
                "each range starts where the last ended"
            );
            previous = range.up_to.clone();
            ranges += 1;
        }
        assert_eq!(previous, None, "the last range is open above");
        assert_eq!(ranges, 5);
        // A single key value, and keys at the ends of the integer range.
        let mut one = SpanWalker::new(7, 7, 1.0);
        assert_eq!(one.next(10), Some(Range::all()));
        assert_eq!(one.next(10), None);
        let mut wide = SpanWalker::new(i64::MIN as i128, u64::MAX as i128, 1e-15);
        assert!(wide.next(1_000).is_some());
    }
    use crate::tables::schema::{ChunkKey, Column};

    fn table(key: &[&str]) -> TableSpec {
        let columns: Vec<Column> = ["a", "b", "c"]
            .iter()
            .map(|name| Column {
                name: name.to_string(),
                data_type: "int".into(),
                class: ColumnClass::Integer,
                nullable: false,
                generated: false,
            })
            .collect();
        TableSpec {
            schema: "s".into(),
            name: "t".into(),
            key: Some(ChunkKey {
                index: "PRIMARY".into(),
                columns: key
                    .iter()
                    .map(|k| columns.iter().position(|c| c.name == *k).unwrap())
                    .collect(),
            }),
            columns,
            estimated_rows: 0,
            versioned: false,
        }
    }

    fn n(v: i64) -> KeyValue {
        KeyValue::Number(v.to_string())
    }

    #[test]
    fn single_column_ranges() {
        let t = table(&["a"]);
        let range = Range {
            after: Some(vec![n(10)]),
            up_to: Some(vec![n(20)]),
        };
        assert_eq!(predicate(&t, &range), "(`a` > 10) AND (`a` <= 20)");
        assert_eq!(predicate(&t, &Range::all()), "1=1");
    }

    #[test]
    fn composite_ranges_are_lexicographic() {
        let t = table(&["a", "b"]);
        let range = Range {
            after: Some(vec![n(1), n(5)]),
            up_to: Some(vec![n(3), KeyValue::Text("x'y".into())]),
        };
        assert_eq!(
            predicate(&t, &range),
            "(`a` >= 1 AND (`a` > 1 OR (`a` = 1 AND `b` > 5))) AND \
             (`a` <= 3 AND (`a` < 3 OR (`a` = 3 AND `b` <= 'x''y')))"
        );
        let three = table(&["a", "b", "c"]);
        let after = Range {
            after: Some(vec![n(1), n(2), n(3)]),
            up_to: None,
        };
        assert_eq!(
            predicate(&three, &after),
            "(`a` >= 1 AND (`a` > 1 OR (`a` = 1 AND (`b` > 2 OR (`b` = 2 AND `c` > 3)))))"
        );
    }

    /// The spelled-out predicate agrees with tuple comparison on every small case.
    #[test]
    fn composite_predicate_matches_tuple_order() {
        fn eval(a: i64, b: i64, after: (i64, i64), up_to: (i64, i64)) -> bool {
            (a > after.0 || (a == after.0 && b > after.1))
                && (a < up_to.0 || (a == up_to.0 && b <= up_to.1))
        }
        for a in 0..4 {
            for b in 0..4 {
                for after in [(0, 0), (1, 2), (2, 3)] {
                    for up_to in [(1, 1), (2, 2), (3, 3)] {
                        let expected = (a, b) > after && (a, b) <= up_to;
                        assert_eq!(eval(a, b, after, up_to), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn key_values_keep_their_kind() {
        assert_eq!(
            KeyValue::from_value(Value::Bytes(b"42".to_vec()), ColumnClass::Integer),
            n(42)
        );
        assert_eq!(
            KeyValue::from_value(Value::Bytes(vec![0, 255]), ColumnClass::Binary).literal(),
            "X'00ff'"
        );
        assert_eq!(n(42).to_json(), serde_json::json!(42));
        assert_eq!(
            KeyValue::Text("ab".into()).to_json(),
            serde_json::json!("ab")
        );
    }

    #[test]
    fn chunk_size_moves_toward_the_target_time_in_bounded_steps() {
        let mut sizer = ChunkSizer::new(Duration::from_millis(200));
        sizer.observe(10_000, Duration::from_millis(20));
        assert_eq!(sizer.rows(), 20_000, "at most doubles");
        sizer.observe(20_000, Duration::from_millis(200));
        assert_eq!(sizer.rows(), 20_000, "on target: unchanged");
        sizer.observe(20_000, Duration::from_secs(10));
        assert_eq!(sizer.rows(), 10_000, "at most halves");
        for _ in 0..20 {
            sizer.observe(sizer.rows(), Duration::from_secs(10));
        }
        assert_eq!(sizer.rows(), ChunkSizer::MIN_ROWS);
    }
}
