//! MySQL 9.7 LTS: the lab's five servers run Debian unstable's mysqld from the
//! root `scripts/mysql-root` prepares, with GTIDs, `caching_sha2_password`
//! accounts, TLS replication and `super_read_only` replicas. What only MySQL
//! has is tested here; the capabilities both flavors share run the same test
//! bodies on each lab (the `lab_mysql_*` tests beside their MariaDB twins).

use crate::harness::{Flavor, LabFixture, cluster, repo_root};
use crate::lab_cutover::{assert_primary, topology};

#[test]
fn lab_mysql_comes_up_as_a_bank_would_run_it() {
    let fx = LabFixture::up_as(Flavor::MySql, 2000);
    let plan = repo_root().join("plans/lab-switchover.yaml");
    let document = topology(&fx, &plan);
    for (name, _) in crate::harness::LAB_CLUSTERS {
        let view = cluster(&document, name);
        assert!(
            view["version"].as_str().unwrap().starts_with("9.7."),
            "{name}: {view}"
        );
        assert_eq!(view["flavor"], "mysql", "{name}: {view}");
        assert!(
            view["errant_gtids"].is_null() || view["errant_gtids"] == "",
            "{name}: {view}"
        );
        if name != "legacy" {
            // MySQL's read_only lets privileged accounts write: replicas
            // are fenced with super_read_only.
            assert_eq!(view["super_read_only"], true, "{name}: {view}");
        }
    }
    assert_primary(&fx, &plan, "legacy");
    // GTID sets are MySQL's uuid sets.
    let gtid = cluster(&document, "legacy")["gtid_position"]
        .as_str()
        .unwrap();
    assert!(gtid.contains(':') && gtid.len() > 36, "{gtid}");
    let plugins: Vec<(String, String)> = crate::harness::runtime().block_on(async {
        let mut legacy = cutover::mysql::Session::connect(&fx.admin_endpoint("127.0.0.10"))
            .await
            .unwrap();
        let plugins = legacy
            .query(
                "account plugins",
                "SELECT user, plugin FROM mysql.user WHERE user LIKE 'cutover%' OR user = 'refunds_app'",
            )
            .await
            .unwrap();
        legacy.close().await;
        plugins
    });
    assert_eq!(plugins.len(), 4, "{plugins:?}");
    assert!(
        plugins
            .iter()
            .all(|(_, plugin)| plugin == "caching_sha2_password"),
        "{plugins:?}"
    );
}
