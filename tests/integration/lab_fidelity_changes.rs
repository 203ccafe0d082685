//! The zoo test's last part: one value changed per type on one target,
//! outside the binary log, and the checksum must name exactly that row and
//! that column.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{Flavor, LabFixture};
use crate::lab_snapshot::json_of;

/// Each statement changes one bit (or one character, a trailing space, NULL
/// for '', +0.01) of one value on c2, outside the binary log; the checksum
/// must report exactly those rows, each with exactly those columns.
pub(crate) fn one_flipped_bit_per_type_is_found(fx: &LabFixture, plan: &Path) {
    // (table, the row's key as JSON with sorted keys, column, statement)
    let shared: &[(&str, &str, &str, &str)] = &[
        (
            "numbers",
            r#"{"id":101}"#,
            "ti",
            "UPDATE zoo.numbers SET ti = 126 WHERE id = 101",
        ),
        (
            "numbers",
            r#"{"id":101}"#,
            "biu",
            "UPDATE zoo.numbers SET biu = 18446744073709551614 WHERE id = 101",
        ),
        // The largest FLOAT's last mantissa bit.
        (
            "numbers",
            r#"{"id":101}"#,
            "f",
            "UPDATE zoo.numbers SET f = 3.4028232635611926e38 WHERE id = 101",
        ),
        // The smallest DOUBLE, one bit up.
        (
            "numbers",
            r#"{"id":101}"#,
            "db",
            "UPDATE zoo.numbers SET db = 1e-323 WHERE id = 101",
        ),
        (
            "numbers",
            r#"{"id":101}"#,
            "yr",
            "UPDATE zoo.numbers SET yr = 2154 WHERE id = 101",
        ),
        (
            "numbers",
            r#"{"id":102}"#,
            "d65",
            "UPDATE zoo.numbers SET d65 = 0 WHERE id = 102",
        ),
        (
            "numbers",
            r#"{"id":103}"#,
            "zf",
            "UPDATE zoo.numbers SET zf = 10 WHERE id = 103",
        ),
        (
            "numbers",
            r#"{"id":103}"#,
            "money",
            "UPDATE zoo.numbers SET money = money + 0.01 WHERE id = 103",
        ),
        (
            "numbers",
            r#"{"id":103}"#,
            "b64",
            "UPDATE zoo.numbers SET b64 = b'100' WHERE id = 103",
        ),
        // `ts0 = ts0`: it would take the time of the update otherwise.
        (
            "times",
            r#"{"id":3}"#,
            "dt6",
            "UPDATE zoo.times SET dt6 = '9999-12-31 23:59:59.999998', ts0 = ts0 WHERE id = 3",
        ),
        (
            "times",
            r#"{"id":2}"#,
            "t",
            "UPDATE zoo.times SET t = '838:59:58', ts0 = ts0 WHERE id = 2",
        ),
        (
            "times",
            r#"{"id":4}"#,
            "d",
            "UPDATE zoo.times SET d = '2024-02-28', ts0 = ts0 WHERE id = 4",
        ),
        (
            "strings",
            r#"{"id":1}"#,
            "tt",
            "UPDATE zoo.strings SET tt = NULL WHERE id = 1",
        ),
        (
            "strings",
            r#"{"id":4}"#,
            "vc",
            "UPDATE zoo.strings SET vc = CONCAT(vc, ' ') WHERE id = 4",
        ),
        (
            "strings",
            r#"{"id":2}"#,
            "c",
            "UPDATE zoo.strings SET c = 'Trail' WHERE id = 2",
        ),
        (
            "strings",
            r#"{"id":2}"#,
            "lb",
            "UPDATE zoo.strings SET lb = INSERT(lb, 1200001, 1, X'DF') WHERE id = 2",
        ),
        (
            "strings",
            r#"{"id":2}"#,
            "e",
            "UPDATE zoo.strings SET e = 'b' WHERE id = 2",
        ),
        (
            "strings",
            r#"{"id":2}"#,
            "s",
            "UPDATE zoo.strings SET s = 'z' WHERE id = 2",
        ),
        (
            "strings",
            r#"{"id":2}"#,
            "j",
            "UPDATE zoo.strings SET j = JSON_SET(j, '$.b', 0) WHERE id = 2",
        ),
        (
            "strings",
            r#"{"id":2}"#,
            "bn",
            "UPDATE zoo.strings SET bn = X'0001020300FFFE01' WHERE id = 2",
        ),
        (
            "places",
            r#"{"id":1}"#,
            "p",
            "UPDATE zoo.places SET p = ST_GeomFromText('POINT(-180 -89.99999999999999)') WHERE id = 1",
        ),
        (
            "derived",
            r#"{"id":1}"#,
            "amount",
            "UPDATE zoo.derived SET amount = amount + 0.01 WHERE id = 1",
        ),
        // Computed from amount, so it differs with it (tax rounds to the same cents).
        ("derived", r#"{"id":1}"#, "paise", ""),
        (
            "part_range",
            r#"{"created":"2020-05-01","id":1}"#,
            "amount",
            "UPDATE zoo.part_range SET amount = 1.01 WHERE id = 1",
        ),
        (
            "order",
            r#"{"select":1}"#,
            "naïve ✓",
            "UPDATE zoo.`order` SET `naïve ✓` = 'ok ✔' WHERE `select` = 1",
        ),
        (
            "keyless",
            "",
            "b",
            "UPDATE zoo.keyless SET b = 'y' WHERE b = 'x' LIMIT 1",
        ),
    ];
    let own: &[(&str, &str, &str, &str)] = match fx.flavor {
        Flavor::MariaDb => &[
            (
                "strings",
                r#"{"id":1}"#,
                "u",
                "UPDATE zoo.strings SET u = '6ccd780c-baba-1026-9564-5b8c656024da' WHERE id = 1",
            ),
            (
                "strings",
                r#"{"id":1}"#,
                "i6",
                "UPDATE zoo.strings SET i6 = '::1' WHERE id = 1",
            ),
            (
                "strings",
                r#"{"id":1}"#,
                "i4",
                "UPDATE zoo.strings SET i4 = '127.0.0.0' WHERE id = 1",
            ),
            (
                "strings",
                r#"{"id":1}"#,
                "packed",
                "UPDATE zoo.strings SET packed = 'y' WHERE id = 1",
            ),
        ],
        // The vector's second element, 2^24, with its last mantissa bit set.
        Flavor::MySql => &[(
            "vectors",
            r#"{"id":2}"#,
            "v",
            "UPDATE zoo.vectors SET v = STRING_TO_VECTOR('[0, 16777218, -0.1]') WHERE id = 2",
        )],
    };
    let flips: Vec<(&str, &str, &str, &str)> = shared.iter().chain(own).copied().collect();
    let statements: Vec<&str> = flips
        .iter()
        .map(|flip| flip.3)
        .filter(|sql| !sql.is_empty())
        .collect();
    fx.plant("127.0.0.12", &statements);
    // 17 digits: FLOAT and DOUBLE compared to the last bit (the default, 12,
    // forgives the last bits of a DOUBLE by design).
    let (code, report) = json_of(
        fx,
        &["checksum", "--tables", "zoo.*", "--float-precision", "17"],
        plan,
    );
    assert_eq!(code, Some(4), "{report}");
    let mut expected: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (table, key, column, _) in &flips {
        let columns = expected
            .entry(table.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default();
        columns.push(column.to_string());
        columns.sort();
    }
    for table in report["tables"].as_array().unwrap() {
        let name = table["table"].as_str().unwrap().trim_start_matches("zoo.");
        let Some(rows) = expected.get(name) else {
            assert_eq!(
                table["status"], "match",
                "nothing changed in {name}: {table}"
            );
            continue;
        };
        assert_ne!(table["status"], "match", "{name}: {table}");
        if name == "keyless" {
            // No key to name its rows by, nor their columns.
            continue;
        }
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for mismatch in table["mismatches"].as_array().unwrap() {
            assert_eq!(mismatch["cluster"], "c2", "{mismatch}");
            let mut columns: Vec<String> = mismatch["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            columns.sort();
            found.insert(mismatch["key"].to_string(), columns);
        }
        assert_eq!(&found, rows, "{name}: exactly the rows and columns changed");
    }
}
