//! The canonical text of a row, and the SQL that hashes it inside the server.
//!
//! Two forms. The fast form is what every chunk is hashed with: it is exact
//! (equal fast text implies equal data) and cheap. The normalised form only
//! runs on chunks whose fast hashes differ; it forgives differences that are
//! not data differences (JSON key order and spacing, text character sets), so
//! a chunk that matches there is a match.

use super::schema::{Column, ColumnClass, TableSpec};

/// Which canonical text to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Fast,
    Normalised,
}

/// How one server normalises JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonNormaliser {
    /// MariaDB 10.7+: sorted keys, canonical numbers.
    MariadbNormalize,
    /// Older MariaDB: whitespace only.
    MariadbCompact,
    /// MySQL stores JSON in a binary form whose text output is already canonical.
    Mysql,
}

impl JsonNormaliser {
    pub fn for_server(flavor: crate::mysql::Flavor, version: &str) -> JsonNormaliser {
        match flavor {
            crate::mysql::Flavor::Mysql => JsonNormaliser::Mysql,
            crate::mysql::Flavor::Mariadb => {
                let mut numbers = version
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|part| part.parse::<u32>().ok());
                let major = numbers.next().unwrap_or(0);
                let minor = numbers.next().unwrap_or(0);
                if (major, minor) >= (10, 7) {
                    JsonNormaliser::MariadbNormalize
                } else {
                    JsonNormaliser::MariadbCompact
                }
            }
        }
    }
}

/// Significant digits compared for FLOAT and DOUBLE unless asked otherwise.
pub const DEFAULT_FLOAT_PRECISION: u32 = 12;

/// What shapes the SQL for one server.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    pub json: JsonNormaliser,
    /// Significant digits kept for FLOAT and DOUBLE.
    pub float_precision: u32,
}

pub use crate::mysql::ident;

pub fn table_name(table: &TableSpec) -> String {
    format!("{}.{}", ident(&table.schema), ident(&table.name))
}

/// The column's value as canonical text (NULL stays NULL).
pub fn column_text(column: &Column, form: Form, dialect: &Dialect) -> String {
    let c = ident(&column.name);
    match column.class {
        ColumnClass::Integer | ColumnClass::Decimal | ColumnClass::Date => c,
        // A DOUBLE prints as the shortest text that reads back to the same
        // value, so equal text is equal data. A FLOAT prints only 6 digits, so
        // it is read as the DOUBLE holding its exact value. At 17 digits the
        // normalised form is that exact text too.
        ColumnClass::Float if form == Form::Fast || dialect.float_precision >= 17 => {
            if column.data_type == "float" {
                format!("CAST({c} AS DOUBLE)")
            } else {
                c
            }
        }
        ColumnClass::Float => {
            // Significant digits as mantissa and exponent: 0.1e0+0.2e0 and 0.3 agree
            // at any precision below 17, whatever the server's float printing.
            let p = dialect.float_precision.clamp(1, 16);
            format!(
                "IF({c} = 0, '0', CONCAT(CAST(ROUND({c} / POW(10, FLOOR(LOG10(ABS({c})))), {d}) \
                 AS DECIMAL({w}, {d})), 'e', FLOOR(LOG10(ABS({c})))))",
                d = p - 1,
                w = p + 1
            )
        }
        // Same type, same text (TIMESTAMP in the session's UTC); the normalised
        // form also forgives a different fractional precision.
        ColumnClass::DateTime | ColumnClass::Time if form == Form::Fast => c,
        ColumnClass::DateTime => format!("CAST({c} AS DATETIME(6))"),
        ColumnClass::Time => format!("CAST({c} AS TIME(6))"),
        ColumnClass::Binary => format!("HEX({c})"),
        ColumnClass::Bit => format!("CAST({c} AS UNSIGNED)"),
        ColumnClass::Text => match form {
            Form::Fast => c,
            Form::Normalised => format!("CONVERT({c} USING utf8mb4)"),
        },
        ColumnClass::Json => match (form, dialect.json) {
            (Form::Fast, _) => c,
            (Form::Normalised, JsonNormaliser::MariadbNormalize) => format!("JSON_NORMALIZE({c})"),
            (Form::Normalised, JsonNormaliser::MariadbCompact) => format!("JSON_COMPACT({c})"),
            (Form::Normalised, JsonNormaliser::Mysql) => format!("CAST({c} AS CHAR)"),
        },
    }
}

/// Free text is preceded by its length in bytes, so a separator inside a value
/// cannot make two different rows print the same. ENUM and SET labels are
/// fixed by the table's definition, which is compared separately.
fn needs_length(column: &Column) -> bool {
    match column.class {
        ColumnClass::Json => true,
        ColumnClass::Text => !matches!(column.data_type.as_str(), "enum" | "set"),
        _ => false,
    }
}

/// `CONCAT_WS` arguments for the whole row, ending with the NULL map
/// (CONCAT_WS skips NULLs, so the map is what tells NULL from '').
pub fn row_text(table: &TableSpec, form: Form, dialect: &Dialect) -> String {
    let mut parts = Vec::with_capacity(table.columns.len() * 2 + 1);
    let mut null_map = Vec::new();
    for column in &table.columns {
        let text = column_text(column, form, dialect);
        if needs_length(column) {
            parts.push(format!("LENGTH({text})"));
        }
        parts.push(text);
        if column.nullable {
            null_map.push(format!("ISNULL({})", ident(&column.name)));
        }
    }
    if !null_map.is_empty() {
        parts.push(format!("CONCAT({})", null_map.join(", ")));
    }
    format!("CONCAT_WS('|', {})", parts.join(", "))
}

/// 64 bits of SHA-256 as an unsigned integer.
pub fn hash64(text_sql: &str) -> String {
    format!("CAST(CONV(LEFT(SHA2({text_sql}, 256), 16), 16, 10) AS UNSIGNED)")
}

/// The row's hash. The fast form's is the first pass over every chunk:
/// CRC32 of the row text, what pt-table-checksum pays per row (measured here:
/// two CRCs or SHA-256 cost 15–45% more on MariaDB, up to twice as much on
/// MySQL, where building the text is most of the cost). It finds any change
/// that keeps a row's text the same length and lies within 32 consecutive
/// bits, and any other with probability 1 − 2⁻³²; a chunk it cannot call
/// equal is decided by the normalised form, 64 bits of SHA-256 over the exact
/// canonical text.
pub fn row_hash(table: &TableSpec, form: Form, dialect: &Dialect) -> String {
    match form {
        Form::Fast => format!("CRC32({})", row_text(table, form, dialect)),
        Form::Normalised => hash64(&row_text(table, form, dialect)),
    }
}

/// One hash per column for a single row, to name the columns that differ.
pub fn column_hashes(table: &TableSpec, dialect: &Dialect) -> Vec<String> {
    table
        .columns
        .iter()
        .map(|column| {
            let text = column_text(column, Form::Normalised, dialect);
            hash64(&format!("IFNULL(CONCAT('v', {text}), 'n')"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::schema::Column;

    fn column(name: &str, class: ColumnClass, nullable: bool) -> Column {
        Column {
            name: name.to_string(),
            data_type: String::new(),
            class,
            nullable,
            generated: false,
        }
    }

    fn dialect() -> Dialect {
        Dialect {
            json: JsonNormaliser::MariadbNormalize,
            float_precision: 12,
        }
    }

    fn table(columns: Vec<Column>) -> TableSpec {
        TableSpec {
            schema: "refunds".into(),
            name: "t".into(),
            columns,
            key: None,
            estimated_rows: 0,
            versioned: false,
        }
    }

    #[test]
    fn nullable_columns_get_a_null_map_and_text_a_length() {
        let t = table(vec![
            column("id", ColumnClass::Integer, false),
            column("memo", ColumnClass::Text, true),
        ]);
        assert_eq!(
            row_text(&t, Form::Fast, &dialect()),
            "CONCAT_WS('|', `id`, LENGTH(`memo`), `memo`, CONCAT(ISNULL(`memo`)))"
        );
    }

    #[test]
    fn the_fast_form_is_raw_where_raw_text_is_exact() {
        let d = dialect();
        for class in [
            ColumnClass::Integer,
            ColumnClass::Decimal,
            ColumnClass::Binary,
        ] {
            let c = column("c", class, true);
            assert_eq!(
                column_text(&c, Form::Fast, &d),
                column_text(&c, Form::Normalised, &d)
            );
        }
        let mut double = column("x", ColumnClass::Float, false);
        double.data_type = "double".into();
        assert_eq!(column_text(&double, Form::Fast, &d), "`x`");
        assert!(column_text(&double, Form::Normalised, &d).contains("LOG10"));
        let mut single = column("x", ColumnClass::Float, false);
        single.data_type = "float".into();
        assert_eq!(column_text(&single, Form::Fast, &d), "CAST(`x` AS DOUBLE)");
        assert!(column_text(&single, Form::Normalised, &d).contains("LOG10"));
        // 17 digits: the exact value in both forms.
        let exact = Dialect {
            float_precision: 17,
            ..d
        };
        assert_eq!(column_text(&double, Form::Normalised, &exact), "`x`");
        assert_eq!(
            column_text(&single, Form::Normalised, &exact),
            "CAST(`x` AS DOUBLE)"
        );
        let when = column("t", ColumnClass::DateTime, false);
        assert_eq!(column_text(&when, Form::Fast, &d), "`t`");
        assert_eq!(
            column_text(&when, Form::Normalised, &d),
            "CAST(`t` AS DATETIME(6))"
        );
        let json = column("doc", ColumnClass::Json, true);
        assert_eq!(
            column_text(&json, Form::Normalised, &d),
            "JSON_NORMALIZE(`doc`)"
        );
        let text = column("t", ColumnClass::Text, true);
        assert_eq!(
            column_text(&text, Form::Normalised, &d),
            "CONVERT(`t` USING utf8mb4)"
        );
    }

    #[test]
    fn floats_keep_the_configured_significant_digits() {
        let d = Dialect {
            float_precision: 6,
            ..dialect()
        };
        let sql = column_text(
            &column("x", ColumnClass::Float, false),
            Form::Normalised,
            &d,
        );
        assert!(
            sql.contains("DECIMAL(7, 5)") && sql.contains(", 5)"),
            "{sql}"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("we`ird"), "`we``ird`");
    }

    #[test]
    fn json_normaliser_follows_the_version() {
        use crate::mysql::Flavor;
        assert_eq!(
            JsonNormaliser::for_server(Flavor::Mariadb, "10.11.19-MariaDB-0+deb12u1-log"),
            JsonNormaliser::MariadbNormalize
        );
        assert_eq!(
            JsonNormaliser::for_server(Flavor::Mariadb, "10.6.21-MariaDB"),
            JsonNormaliser::MariadbCompact
        );
        assert_eq!(
            JsonNormaliser::for_server(Flavor::Mysql, "8.0.36"),
            JsonNormaliser::Mysql
        );
    }
}
