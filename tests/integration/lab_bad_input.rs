//! Bad input on each flavor gets one clear line that names what to fix, a
//! documented exit code, and changes nothing: an account missing a privilege
//! (on MySQL a dynamic one), a replica without GTIDs (MySQL), a server that
//! accepts only TLS when the plan has none, and a target that refuses
//! `LOAD DATA LOCAL`.

use std::path::Path;

use crate::harness::{Flavor, LabFixture, repo_root};
use crate::lab_cutover::{fingerprint, run_json};

/// The dry run's failed prechecks as `(cluster, check, detail)`, after
/// checking it exits 3.
fn failed_prechecks(fx: &LabFixture, plan: &Path) -> Vec<(String, String, String)> {
    let (code, report) = run_json(
        fx.cutover()
            .args(["run", "--dry-run", "--output", "json"])
            .arg(plan),
    );
    assert_eq!(code, Some(3), "{report}");
    report["prechecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().to_string(),
                c["check"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn lab_bad_input_is_named_and_changes_nothing() {
    bad_input_is_named_and_changes_nothing(Flavor::MariaDb);
}

#[test]
fn lab_mysql_bad_input_is_named_and_changes_nothing() {
    bad_input_is_named_and_changes_nothing(Flavor::MySql);
}

fn bad_input_is_named_and_changes_nothing(flavor: Flavor) {
    let fx = LabFixture::up_as(flavor, 500);
    let plan = repo_root().join("plans/lab-switchover.yaml");
    let before = fingerprint(&fx, &plan);
    let account = "'cutover'@'127.%'";

    // An account without the privilege to end client sessions: MariaDB's
    // CONNECTION ADMIN (or SUPER), MySQL's dynamic CONNECTION_ADMIN.
    let (privileges, named) = match flavor {
        Flavor::MariaDb => ("SUPER, CONNECTION ADMIN", "CONNECTION ADMIN or SUPER"),
        Flavor::MySql => ("CONNECTION_ADMIN", "CONNECTION_ADMIN or SUPER"),
    };
    fx.admin_exec(
        "127.0.0.10",
        &[
            "SET SESSION sql_log_bin = 0",
            &format!("REVOKE {privileges} ON *.* FROM {account}"),
        ],
    );
    let failed = failed_prechecks(&fx, &plan);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (cluster, check, detail) = &failed[0];
    assert_eq!((cluster.as_str(), check.as_str()), ("legacy", "privileges"));
    assert!(
        detail.contains(&format!("{named} (to kill client sessions)")),
        "{detail}"
    );
    fx.admin_exec(
        "127.0.0.10",
        &[
            "SET SESSION sql_log_bin = 0",
            &format!("GRANT {privileges} ON *.* TO {account}"),
        ],
    );

    // MySQL only (MariaDB always logs GTIDs): a replica whose new
    // transactions carry none cannot be promoted or re-pointed by GTID.
    if flavor == Flavor::MySql {
        fx.admin_exec(
            "127.0.0.16",
            &[
                "SET GLOBAL gtid_mode = ON_PERMISSIVE",
                "SET GLOBAL gtid_mode = OFF_PERMISSIVE",
            ],
        );
        let failed = failed_prechecks(&fx, &plan);
        assert_eq!(failed.len(), 1, "{failed:?}");
        let (cluster, check, detail) = &failed[0];
        assert_eq!(
            (cluster.as_str(), check.as_str()),
            ("c6", "binlog and GTID")
        );
        assert!(detail.contains("gtid_mode is OFF_PERMISSIVE"), "{detail}");
        fx.admin_exec(
            "127.0.0.16",
            &[
                "SET GLOBAL gtid_mode = ON_PERMISSIVE",
                "SET GLOBAL gtid_mode = ON",
            ],
        );
    }

    // A server that accepts only TLS, in a plan that has none for it.
    fx.admin_exec("127.0.0.13", &["SET GLOBAL require_secure_transport = ON"]);
    let failed = failed_prechecks(&fx, &plan);
    let over_tls = |sql: &str| {
        let mut endpoint = fx.admin_endpoint("127.0.0.13");
        endpoint.tls = Some(cutover::mysql::TlsSettings {
            ca_file: Some(fx.var("CUTOVER_LAB_CA").into()),
            verify: false,
        });
        crate::harness::runtime().block_on(async {
            let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
            session.exec("test statement", sql).await.unwrap();
            session.close().await;
        });
    };
    over_tls("SET GLOBAL require_secure_transport = OFF");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (cluster, check, detail) = &failed[0];
    assert_eq!((cluster.as_str(), check.as_str()), ("c3", "reachable"));
    assert!(
        detail.contains("require_secure_transport=ON") && detail.contains("add `tls:"),
        "{detail}"
    );
    assert!(!detail.contains('\n'), "one line: {detail}");
    assert_eq!(fingerprint(&fx, &plan), before, "nothing changed");
}

/// A target that refuses `LOAD DATA LOCAL` (MySQL's default; set on
/// MariaDB) still gets every row, as INSERT statements, and the report says
/// so, naming the target and the setting.
#[test]
fn lab_a_target_refusing_load_data_gets_inserts_and_is_told() {
    a_target_refusing_load_data_gets_inserts_and_is_told(Flavor::MariaDb);
}

#[test]
fn lab_mysql_a_target_refusing_load_data_gets_inserts_and_is_told() {
    a_target_refusing_load_data_gets_inserts_and_is_told(Flavor::MySql);
}

fn a_target_refusing_load_data_gets_inserts_and_is_told(flavor: Flavor) {
    let fx = LabFixture::up_empty_as(flavor, 500);
    let plan = repo_root().join("plans/lab-migration.yaml");
    match flavor {
        Flavor::MariaDb => fx.admin_exec("127.0.0.12", &["SET GLOBAL local_infile = 0"]),
        Flavor::MySql => assert_eq!(
            fx.admin_value("127.0.0.12", "SELECT CAST(@@GLOBAL.local_infile AS CHAR)"),
            "0",
            "MySQL's default"
        ),
    }
    let (code, report) = run_json(
        fx.cutover()
            .args(["snapshot", "--targets", "c2", "c3", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{report}");
    let warnings = crate::harness::strings(&report["warnings"]);
    let about_c2: Vec<&&str> = warnings
        .iter()
        .filter(|w| w.contains("LOAD DATA LOCAL"))
        .collect();
    let expected_targets = match flavor {
        // c3 takes LOAD DATA on MariaDB; on MySQL it refuses too.
        Flavor::MariaDb => vec!["`c2`"],
        Flavor::MySql => vec!["`c2`", "`c3`"],
    };
    assert_eq!(about_c2.len(), expected_targets.len(), "{warnings:?}");
    for (warning, target) in about_c2.iter().zip(&expected_targets) {
        assert!(
            warning.starts_with(target) && warning.contains("local_infile=OFF"),
            "{warning}"
        );
    }
    let (code, checksum) = run_json(
        fx.cutover()
            .args(["checksum", "--targets", "c2", "c3", "--output", "json"])
            .arg(&plan),
    );
    assert_eq!(code, Some(0), "{checksum}");
    assert_eq!(checksum["status"], "match", "{checksum}");
}
