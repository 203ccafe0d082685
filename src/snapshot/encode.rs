//! Rows as the bytes a target loads: `LOAD DATA` text with its escapes, or `INSERT` statements under the size limit. Pure functions.

use super::*;

/// The columns a chunk is read as. A FLOAT is read as the DOUBLE holding its
/// exact value: the server prints a FLOAT with 6 digits, which would change it
/// (16777216 reads back as 16777200); the DOUBLE's text is exact and a FLOAT
/// column stores it as the same FLOAT.
pub(super) fn select_list(table: &TableSpec) -> String {
    table
        .columns
        .iter()
        .map(|c| {
            if c.data_type == "float" {
                format!("CAST({} AS DOUBLE)", ident(&c.name))
            } else {
                ident(&c.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT` statements for `rows`, each under [`MAX_STATEMENT_BYTES`].
pub(super) fn insert_head(table: &TableSpec) -> String {
    format!(
        "INSERT INTO {} ({}) VALUES ",
        table_name(table),
        table
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(super) fn insert_statements(table: &TableSpec, rows: Vec<Row>) -> Vec<String> {
    let tuples = rows.into_iter().map(|row| {
        let values: Vec<String> = row
            .unwrap()
            .into_iter()
            .map(|value| value.as_sql(false))
            .collect();
        format!("({})", values.join(","))
    });
    batch_inserts(&insert_head(table), tuples)
}

/// `head` followed by as many tuples as fit under [`MAX_STATEMENT_BYTES`],
/// statement after statement.
pub(super) fn batch_inserts(head: &str, tuples: impl Iterator<Item = String>) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = head.to_string();
    for tuple in tuples {
        if current.len() > head.len() && current.len() + tuple.len() + 1 > MAX_STATEMENT_BYTES {
            statements.push(std::mem::replace(&mut current, head.to_string()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(&tuple);
    }
    if current.len() > head.len() {
        statements.push(current);
    }
    statements
}

/// One chunk as `LOAD DATA LOCAL INFILE` input: the statement and the rows as
/// tab-separated text (LOAD DATA's default escaping; NULL as `\N`).
pub(super) struct LoadData {
    pub(super) sql: String,
    pub(super) data: bytes::Bytes,
    /// What a snapshot directory keeps with the rows, to load them later.
    pub(super) header: directory::ChunkHeader,
}

/// Append one field with LOAD DATA's escapes.
pub(super) fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    for byte in value {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            other => out.push(*other),
        }
    }
}

pub(super) fn load_data(table: &TableSpec, rows: &[Row]) -> LoadData {
    use crate::tables::schema::ColumnClass;
    // Binary values travel as hex and are decoded by the server, so no
    // character set conversion can touch them.
    let mut targets = Vec::new();
    let mut assignments = Vec::new();
    for (i, column) in table.columns.iter().enumerate() {
        match column.class {
            ColumnClass::Binary => {
                targets.push(format!("@v{i}"));
                assignments.push(format!("{} = UNHEX(@v{i})", ident(&column.name)));
            }
            ColumnClass::Bit => {
                targets.push(format!("@v{i}"));
                assignments.push(format!(
                    "{} = CAST(CONV(@v{i}, 16, 10) AS UNSIGNED)",
                    ident(&column.name)
                ));
            }
            _ => targets.push(ident(&column.name)),
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'chunk' INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        table_name(table),
        targets.join(", ")
    );
    if !assignments.is_empty() {
        sql.push_str(&format!(" SET {}", assignments.join(", ")));
    }
    let mut data = Vec::with_capacity(rows.len() * 128);
    for row in rows {
        for (i, column) in table.columns.iter().enumerate() {
            if i > 0 {
                data.push(b'\t');
            }
            let hex = matches!(column.class, ColumnClass::Binary | ColumnClass::Bit);
            match row.as_ref(i) {
                None | Some(mysql_async::Value::NULL) => data.extend_from_slice(b"\\N"),
                Some(mysql_async::Value::Bytes(bytes)) if hex => {
                    data.extend_from_slice(hex::encode(bytes).as_bytes())
                }
                Some(mysql_async::Value::Bytes(bytes)) => push_field(&mut data, bytes),
                Some(other) => {
                    let text = other.as_sql(true);
                    push_field(&mut data, text.trim_matches('\'').as_bytes())
                }
            }
        }
        data.push(b'\n');
    }
    let encodings = table
        .columns
        .iter()
        .map(|column| match column.class {
            ColumnClass::Binary => directory::Encoding::Hex,
            ColumnClass::Bit => directory::Encoding::Bit,
            _ => directory::Encoding::Text,
        })
        .collect();
    LoadData {
        header: directory::ChunkHeader {
            load_sql: sql.clone(),
            insert_head: insert_head(table),
            encodings,
        },
        sql,
        data: bytes::Bytes::from(data),
    }
}

/// Undo LOAD DATA's escapes in one field.
pub(super) fn unescape_field(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(&other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

/// Rows written as LOAD DATA text, as INSERT statements (each under
/// [`MAX_STATEMENT_BYTES`]), for a server that refuses `LOAD DATA LOCAL`.
pub(super) fn rows_as_inserts(header: &directory::ChunkHeader, data: &[u8]) -> Vec<String> {
    use directory::Encoding;
    let tuples = data
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let values: Vec<String> = line
                .split(|b| *b == b'\t')
                .zip(&header.encodings)
                .map(|(field, encoding)| {
                    if field == b"\\N" {
                        return "NULL".to_string();
                    }
                    let hex = String::from_utf8_lossy(field);
                    match encoding {
                        Encoding::Hex => format!("X'{hex}'"),
                        Encoding::Bit => format!("CAST(CONV('{hex}', 16, 10) AS UNSIGNED)"),
                        Encoding::Text => {
                            let value = unescape_field(field);
                            match String::from_utf8(value) {
                                Ok(text) => quote(&text),
                                Err(error) => format!("X'{}'", hex::encode(error.into_bytes())),
                            }
                        }
                    }
                })
                .collect();
            format!("({})", values.join(","))
        });
    batch_inserts(&header.insert_head, tuples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_data_fields_escape_what_load_data_interprets() {
        let mut out = Vec::new();
        push_field(&mut out, b"a\tb\nc\\d\0e\rf");
        assert_eq!(out, b"a\\tb\\nc\\\\d\\0e\\rf".to_vec());
    }

    #[test]
    fn rows_kept_for_load_data_become_the_same_values_as_inserts() {
        let tricky = b"a\tb\nc\\d\0e\rf'g";
        let mut data = b"1\t".to_vec();
        push_field(&mut data, tricky);
        data.extend_from_slice(b"\t\\N\t00ff\t05\n2\t\t\\\\N\t\t0\n");
        let header = directory::ChunkHeader {
            load_sql: String::new(),
            insert_head: "INSERT INTO t (a, b, c, d, e) VALUES ".into(),
            encodings: vec![
                directory::Encoding::Text,
                directory::Encoding::Text,
                directory::Encoding::Text,
                directory::Encoding::Hex,
                directory::Encoding::Bit,
            ],
        };
        let statements = rows_as_inserts(&header, &data);
        assert_eq!(
            statements,
            [format!(
                "INSERT INTO t (a, b, c, d, e) VALUES ('1',{},NULL,X'00ff',CAST(CONV('05', 16, 10) AS UNSIGNED)),\
                 ('2','','\\\\N',X'',CAST(CONV('0', 16, 10) AS UNSIGNED))",
                quote(std::str::from_utf8(tricky).unwrap())
            )]
        );
        assert_eq!(unescape_field(b"x\\ty\\\\"), b"x\ty\\".to_vec());
    }
}
