//! BIND9 primary (ns1) and secondary (ns2) for `bank.internal`, TSIG for updates and transfers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::{self, PidFile};
use super::server::LabServer;
use super::{LabError, LabSecrets, Programs, SERVERS};
use crate::dns;

pub const ZONE: &str = "bank.internal";
pub const RECORD: &str = "refunds-primary.bank.internal";
pub const TSIG_KEY_NAME: &str = "cutover-lab";
pub const RECORD_TTL: u32 = 5;

#[derive(Debug, Clone, Copy)]
pub struct NameServer {
    pub name: &'static str,
    pub ip: &'static str,
    pub primary: bool,
}

pub const NAMESERVERS: [NameServer; 2] = [
    NameServer {
        name: "ns1",
        ip: "127.0.0.2",
        primary: true,
    },
    NameServer {
        name: "ns2",
        ip: "127.0.0.3",
        primary: false,
    },
];

impl NameServer {
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.ip.parse().expect("constant address"), 53)
    }

    pub fn dir(&self, lab: &Path) -> PathBuf {
        lab.join(self.name)
    }

    pub fn pid_file(&self, lab: &Path) -> PidFile {
        PidFile(self.dir(lab).join("lab.pid"))
    }

    fn log(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("named.log")
    }

    fn config_path(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("named.conf")
    }

    pub fn running(&self, lab: &Path) -> Option<u32> {
        self.pid_file(lab).running()
    }

    fn config(&self, lab: &Path, secrets: &LabSecrets) -> String {
        let dir = self.dir(lab);
        let primary = NAMESERVERS[0];
        let secondary = NAMESERVERS[1];
        let zone = if self.primary {
            format!(
                "zone \"{ZONE}\" {{
    type primary;
    file \"{ZONE}.db\";
    allow-update {{ key \"{TSIG_KEY_NAME}\"; }};
    allow-transfer {{ key \"{TSIG_KEY_NAME}\"; }};
    notify explicit;
    notify-delay 0;
    also-notify {{ {} key \"{TSIG_KEY_NAME}\"; }};
}};",
                secondary.ip
            )
        } else {
            format!(
                "zone \"{ZONE}\" {{
    type secondary;
    file \"{ZONE}.db\";
    masterfile-format text;
    primaries {{ {} key \"{TSIG_KEY_NAME}\"; }};
    allow-notify {{ {}; }};
}};",
                primary.ip, primary.ip
            )
        };
        format!(
            "options {{
    directory \"{dir}\";
    pid-file \"{dir}/named.pid\";
    session-keyfile \"{dir}/session.key\";
    managed-keys-directory \"{dir}\";
    listen-on port 53 {{ {ip}; }};
    listen-on-v6 {{ none; }};
    query-source address {ip};
    notify-source {ip};
    transfer-source {ip};
    recursion no;
    notify-rate 1000;
    serial-query-rate 1000;
    dnssec-validation no;
    allow-query {{ 127.0.0.0/8; }};
}};
controls {{ }};
logging {{
    channel lab {{ file \"{dir}/named.log\" versions 2 size 5m; print-time yes; severity info; }};
    category default {{ lab; }};
    category xfer-in {{ lab; }};
    category xfer-out {{ lab; }};
    category notify {{ lab; }};
    category update {{ lab; }};
}};
key \"{TSIG_KEY_NAME}\" {{
    algorithm hmac-sha256;
    secret \"{secret}\";
}};
{zone}
",
            dir = dir.display(),
            ip = self.ip,
            secret = secrets.tsig,
        )
    }

    pub fn prepare(&self, lab: &Path, secrets: &LabSecrets) -> Result<(), LabError> {
        let dir = self.dir(lab);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        std::fs::write(self.config_path(lab), self.config(lab, secrets))
            .map_err(|e| LabError::io(&self.config_path(lab), e))?;
        let zone_file = dir.join(format!("{ZONE}.db"));
        // An existing zone keeps the updates made to it (the journal holds them).
        if self.primary && !zone_file.exists() {
            std::fs::write(&zone_file, zone_text(SERVERS))
                .map_err(|e| LabError::io(&zone_file, e))?;
        }
        Ok(())
    }

    /// Start named and wait until it answers for the zone authoritatively.
    pub async fn start(&self, lab: &Path, programs: &Programs) -> Result<(), LabError> {
        if self.running(lab).is_none() {
            let args = vec![
                "-f".to_string(),
                "-n".to_string(),
                "1".to_string(),
                "-c".to_string(),
                self.config_path(lab).display().to_string(),
            ];
            let out = self.dir(lab).join("named.out");
            let mut child = process::spawn(&programs.named, &args, &[], &out)
                .map_err(|e| LabError::io(&programs.named, e))?;
            self.pid_file(lab)
                .write(child.id())
                .map_err(|e| LabError::io(&self.pid_file(lab).0, e))?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(Some(status)) = child.try_wait() {
                let mut reason = process::log_tail(&out, 4);
                if reason.contains("permission denied") || reason.contains("address in use") {
                    reason.push_str(
                        " (port 53 needs root or CAP_NET_BIND_SERVICE, and a free address)",
                    );
                }
                return Err(LabError::StartFailed {
                    server: self.name.to_string(),
                    reason: format!("named exited with {status}: {reason}"),
                });
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = dns::query_authoritative(
                self.address(),
                &format!("{ZONE}."),
                hickory_proto::rr::RecordType::SOA,
                Duration::from_millis(500),
            )
            .await;
            if matches!(&answer, Ok(a) if a.authoritative && !a.values.is_empty()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::StartFailed {
                    server: self.name.to_string(),
                    reason: format!(
                        "not answering for {ZONE} after 30 s ({answer:?}): {}",
                        process::log_tail(&self.log(lab), 4)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// named listens only on addresses configured on an interface, unlike mariadbd,
/// which binds any 127/8 address. Returns whether the alias was added now.
pub fn ensure_loopback_address(ip: &str) -> Result<bool, LabError> {
    let ip_program = process::find_program("ip").ok_or(LabError::MissingProgram {
        program: "ip",
        package: "iproute2",
    })?;
    let shown = std::process::Command::new(&ip_program)
        .args(["-o", "addr", "show", "dev", "lo"])
        .output()
        .map_err(|e| LabError::io(&ip_program, e))?;
    if String::from_utf8_lossy(&shown.stdout).contains(&format!("inet {ip}/")) {
        return Ok(false);
    }
    let added = std::process::Command::new(&ip_program)
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .map_err(|e| LabError::io(&ip_program, e))?;
    if !added.status.success() {
        return Err(LabError::StartFailed {
            server: "loopback".to_string(),
            reason: format!(
                "cannot add {ip}/32 to lo for the name servers (needs root or CAP_NET_ADMIN): {}",
                String::from_utf8_lossy(&added.stderr).trim()
            ),
        });
    }
    Ok(true)
}

pub fn remove_loopback_address(ip: &str) {
    if let Some(ip_program) = process::find_program("ip") {
        let _ = std::process::Command::new(ip_program)
            .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
            .output();
    }
}

fn zone_text(servers: &[LabServer]) -> String {
    let mut zone = format!(
        "$TTL 300
@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. ( 1 60 10 86400 5 )
@ IN NS ns1.{ZONE}.
@ IN NS ns2.{ZONE}.
ns1 IN A {}
ns2 IN A {}
",
        NAMESERVERS[0].ip, NAMESERVERS[1].ip
    );
    for server in servers {
        zone.push_str(&format!("{} IN A {}\n", server.name, server.ip));
    }
    let short = RECORD.trim_end_matches(&format!(".{ZONE}"));
    zone.push_str(&format!("{short} {RECORD_TTL} IN CNAME legacy.{ZONE}.\n"));
    zone
}
