//! One lab database server's identity and where its files live, for both
//! flavors (how it starts: `mariadb.rs`; MySQL's configuration: `mysql.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::PidFile;
use super::{LabSecrets, MYSQL_PORT, accounts};
use crate::mysql::{Address, Endpoint};
use crate::secret::Secret;

/// A lab database server.
#[derive(Debug, Clone, Copy)]
pub struct LabServer {
    pub name: &'static str,
    pub ip: &'static str,
    pub server_id: u32,
}

impl LabServer {
    pub fn dir(&self, lab: &Path) -> PathBuf {
        lab.join(self.name)
    }

    pub fn socket(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("mysqld.sock")
    }

    pub fn pid_file(&self, lab: &Path) -> PidFile {
        PidFile(self.dir(lab).join("lab.pid"))
    }

    pub fn log(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("error.log")
    }

    pub(super) fn config_path(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("my.cnf")
    }

    pub(super) fn data_dir(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("data")
    }

    pub(super) fn bootstrapped_marker(&self, lab: &Path) -> PathBuf {
        self.dir(lab).join("bootstrapped")
    }

    /// The admin endpoint over TCP, as plans and tests reach it.
    pub fn admin_endpoint(&self, secrets: &LabSecrets) -> Endpoint {
        Endpoint {
            name: self.name.to_string(),
            address: Address::Tcp {
                host: self.ip.to_string(),
                port: MYSQL_PORT,
            },
            user: accounts::ADMIN_USER.to_string(),
            password: Some(Secret::new(secrets.admin.clone())),
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(120),
            tls: None,
        }
    }
}
