//! docker/compose.yaml and plans/docker-migration.yaml describe the same topology.
//! (No Docker engine runs here: the compose file is parsed and cross-checked.)

use std::collections::BTreeSet;

use cutover::plan::{self, ClusterRole, SecretSource};
use serde_json::Value;

use crate::harness::{repo_root, strings};

fn compose() -> (Value, String) {
    let text = std::fs::read_to_string(repo_root().join("docker/compose.yaml")).unwrap();
    let value: Value = serde_saphyr::from_str(&text).expect("compose file parses");
    (value, text)
}

fn service_ip(service: &Value) -> &str {
    service["networks"]["bank"]["ipv4_address"]
        .as_str()
        .expect("every service has a fixed address")
}

fn env_names(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split([':', '}']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn compose_services_match_the_docker_plan() {
    let plan = plan::load(&repo_root().join("plans/docker-migration.yaml")).unwrap();
    let (compose, text) = compose();
    let services = compose["services"].as_object().unwrap();
    let variables = env_names(&text);

    for cluster in &plan.clusters {
        let service = &services
            .get(&cluster.name)
            .unwrap_or_else(|| panic!("no compose service for cluster {}", cluster.name));
        assert_eq!(
            service_ip(service),
            cluster.host,
            "{} address",
            cluster.name
        );
        let command = strings(&service["command"]);
        assert!(
            command.contains(&format!("--port={}", cluster.port).as_str()),
            "{} port {} in {command:?}",
            cluster.name,
            cluster.port
        );
        assert!(
            command.iter().any(|c| c.starts_with("--log-bin")),
            "{} binlog",
            cluster.name
        );
        assert!(
            command.contains(&"--binlog-format=ROW"),
            "{} ROW",
            cluster.name
        );
        let image = service["image"].as_str().unwrap();
        let expected = if cluster.name == "c6" {
            "mariadb:"
        } else {
            "mysql:9.7"
        };
        assert!(
            image.starts_with(expected),
            "{} image {image}",
            cluster.name
        );
        if cluster.role == ClusterRole::Source {
            assert!(image.starts_with("mysql:9.7"), "the source is MySQL 9.7");
        }
        let SecretSource::Env(variable) = &cluster.password else {
            panic!("docker plan uses environment secrets")
        };
        assert!(
            variables.contains(variable),
            "{variable} is set through compose"
        );
        assert_eq!(cluster.user, "cutover");
    }

    let replication = plan.replication.as_ref().unwrap();
    let application = plan.application.as_ref().unwrap();
    let accounts =
        std::fs::read_to_string(repo_root().join("docker/mysql-init/01-accounts.sh")).unwrap();
    for user in [&replication.user, &application.user, &plan.clusters[0].user] {
        assert!(
            accounts.contains(&format!("'{user}'@'%'")),
            "account {user} is created"
        );
    }
    for secret in [&replication.password, &application.password] {
        let SecretSource::Env(variable) = secret else {
            panic!()
        };
        assert!(
            variables.contains(variable),
            "{variable} is set through compose"
        );
    }

    let dns = plan.dns.as_ref().unwrap();
    assert_eq!(
        dns.update_server.ip().to_string(),
        service_ip(&services["ns1"])
    );
    let authoritative: BTreeSet<String> = dns
        .authoritative
        .iter()
        .map(|a| a.ip().to_string())
        .collect();
    let nameservers: BTreeSet<String> = ["ns1", "ns2"]
        .iter()
        .map(|n| service_ip(&services[*n]).to_string())
        .collect();
    assert_eq!(authoritative, nameservers, "every name server is verified");
    let SecretSource::Env(tsig_variable) = &dns.tsig.secret else {
        panic!()
    };
    assert!(variables.contains(tsig_variable));
    let primary =
        std::fs::read_to_string(repo_root().join("docker/bind/named.primary.conf")).unwrap();
    assert!(primary.contains(&format!("allow-update {{ key \"{}\"; }}", dns.tsig.name)));
    let zone = std::fs::read_to_string(repo_root().join("docker/bind/bank.internal.db")).unwrap();
    assert!(zone.contains("refunds-primary 5 IN CNAME legacy.bank.internal."));
    assert_eq!(dns.ttl, 5);
    for (cluster, value) in &dns.values {
        let short = value.trim_end_matches(".bank.internal.");
        let ip = service_ip(&services[cluster.as_str()]);
        assert!(
            zone.contains(&format!("{short} IN A {ip}")),
            "zone has {short} → {ip}"
        );
    }
}
