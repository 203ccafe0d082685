//! The `dns` section: servers, TSIG, the record the switchover moves.

use super::*;

impl Checker {
    pub(super) fn server_address(
        &mut self,
        value: &Located<String>,
        what: &str,
    ) -> Option<SocketAddr> {
        let text = value.value.trim();
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Some(address);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, 53));
        }
        self.error_with_help(
            value.position,
            format!("{what} `{text}` is not an IP address with an optional port"),
            "write e.g. `127.0.0.2:53`; name servers are addressed by IP so no lookup is needed to reach them",
        );
        None
    }

    pub(super) fn dns(&mut self, raw: RawDns) -> Option<DnsConfig> {
        let update_server = self.server_address(&raw.update_server, "dns.update_server");
        let mut authoritative = Vec::new();
        if raw.authoritative.is_empty() {
            self.error(
                raw.update_server.position,
                "`dns.authoritative` is empty: list every authoritative server to verify",
            );
        }
        for server in &raw.authoritative {
            if let Some(address) = self.server_address(server, "dns.authoritative server") {
                authoritative.push(address);
            }
        }
        let zone = fqdn(&raw.zone.value);
        let record = fqdn(&raw.record.value);
        for (value, what) in [(&raw.zone, "dns.zone"), (&raw.record, "dns.record")] {
            if !is_domain_name(&value.value) {
                self.error(
                    value.position,
                    format!("{what} `{}` is not a domain name", value.value),
                );
            }
        }
        if is_domain_name(&raw.record.value) && !record.ends_with(&format!(".{zone}")) {
            self.error(
                raw.record.position,
                format!(
                    "dns.record `{}` is not inside the zone `{}`",
                    raw.record.value, raw.zone.value
                ),
            );
        }
        let ttl = self.number(&raw.ttl, 1, 86_400, "dns.ttl") as u32;
        let record_type = raw.record_type.unwrap_or(DnsRecordType::Cname);
        let mut values = IndexMap::new();
        for (cluster, value) in raw.values {
            if !self.clusters.contains_key(&cluster.value) {
                self.unknown_cluster(&cluster);
            }
            let text = value.value.trim();
            let valid = match record_type {
                DnsRecordType::A => text.parse::<std::net::Ipv4Addr>().is_ok(),
                DnsRecordType::Cname => is_domain_name(text),
            };
            if !valid {
                self.error(
                    value.position,
                    format!(
                        "dns value `{text}` for `{}` is not a valid {} record value",
                        cluster.value,
                        match record_type {
                            DnsRecordType::A => "A (IPv4 address)",
                            DnsRecordType::Cname => "CNAME (domain name)",
                        }
                    ),
                );
            }
            let value = match record_type {
                DnsRecordType::A => text.to_string(),
                DnsRecordType::Cname => fqdn(text),
            };
            self.dns_values.insert(cluster.value.clone());
            values.insert(cluster.value, value);
        }
        let tsig_secret = self.secret_source(
            "`dns.tsig`",
            raw.tsig.name.position,
            raw.tsig.secret.as_ref(),
            raw.tsig.secret_env.as_ref(),
            raw.tsig.secret_file.as_ref(),
            "secret",
        );
        if !is_domain_name(&raw.tsig.name.value) {
            self.error(
                raw.tsig.name.position,
                format!(
                    "TSIG key name `{}` is not a valid key name",
                    raw.tsig.name.value
                ),
            );
        }
        Some(DnsConfig {
            update_server: update_server?,
            authoritative,
            zone,
            record,
            record_type,
            ttl,
            values,
            tsig: TsigConfig {
                name: raw.tsig.name.value,
                algorithm: raw.tsig.algorithm,
                secret: tsig_secret,
            },
        })
    }

    pub(super) fn dns_target(&mut self, to: &Located<String>, what: &str) {
        if !self.has_dns {
            self.error_with_help(
                to.position,
                format!("{what} needs a `dns` section"),
                "add `dns:` with the update server, authoritative servers, record and TSIG key",
            );
        } else if self.clusters.contains_key(&to.value) && !self.dns_values.contains(&to.value) {
            self.error_with_help(
                to.position,
                format!(
                    "{what} to `{}`, but `dns.values` has no value for it",
                    to.value
                ),
                format!("add `{}: <record value>` under `dns.values`", to.value),
            );
        }
    }
}

pub(super) fn fqdn(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

pub(super) fn is_domain_name(name: &str) -> bool {
    let name = name.trim().trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
