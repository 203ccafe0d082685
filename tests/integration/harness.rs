//! Sandboxes: a private state directory per test and a `cutover` command bound to it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("cutover-test-")
                .tempdir()
                .expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `cutover` with this sandbox's state, no colour, and no inherited lab settings.
    pub fn cutover(&self) -> Command {
        let mut command = Command::cargo_bin("cutover").expect("cutover binary");
        command
            .env("CUTOVER_STATE", self.state_dir())
            .env("NO_COLOR", "1")
            .env_remove("CUTOVER_LAB_DIR")
            .env_remove("CUTOVER_LOG")
            .current_dir(repo_root());
        command
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write sandbox file");
        path
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not one JSON document ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A JSON array of strings, as `&str`s; panics on anything else.
pub fn strings(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {item}"))
        })
        .collect()
}

/// A lab of its own (`lab up --replicating`) inside a sandbox, torn down on drop.
pub struct LabFixture {
    pub sandbox: Sandbox,
    pub env: Vec<(String, String)>,
    pub flavor: Flavor,
}

/// The server family a lab runs: the lab suite runs its tests on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MariaDb => "mariadb",
            Flavor::MySql => "mysql",
        }
    }

    /// Whether `position` is a GTID position of this flavor: MariaDB's
    /// `domain-server-sequence` from legacy (server id 10), or MySQL's
    /// `uuid:interval` set (a uuid, then a colon).
    pub fn is_position(self, position: &str) -> bool {
        match self {
            Flavor::MariaDb => position.starts_with("0-10-"),
            Flavor::MySql => {
                let uuid = position.get(..36).unwrap_or_default().as_bytes();
                position.len() > 37
                    && position.as_bytes()[36] == b':'
                    && uuid.iter().enumerate().all(|(i, byte)| match i {
                        8 | 13 | 18 | 23 => *byte == b'-',
                        _ => byte.is_ascii_hexdigit(),
                    })
                    && uuid.len() == 36
            }
        }
    }

    /// Whether some word of `text` is a GTID position of this flavor.
    pub fn mentions_position(self, text: &str) -> bool {
        text.split(|c: char| c.is_whitespace() || "()[],;=".contains(c))
            .any(|word| self.is_position(word))
    }
}

/// One cluster of a generated plan: `extra` is added YAML (e.g. `tls: {...}`).
pub struct PlanCluster<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub extra: &'a str,
}

impl<'a> PlanCluster<'a> {
    /// A lab cluster at its usual address with `extra` YAML added.
    pub fn lab(name: &str, extra: &'a str) -> PlanCluster<'a> {
        let (name, host) = LAB_CLUSTERS
            .iter()
            .find(|(lab_name, _)| *lab_name == name)
            .copied()
            .unwrap_or_else(|| panic!("no lab cluster {name}"));
        PlanCluster {
            name,
            host,
            port: 13306,
            extra,
        }
    }
}

pub const LAB_CLUSTERS: [(&str, &str); 5] = [
    ("legacy", "127.0.0.10"),
    ("c1", "127.0.0.11"),
    ("c2", "127.0.0.12"),
    ("c3", "127.0.0.13"),
    ("c6", "127.0.0.16"),
];

impl LabFixture {
    pub fn up() -> LabFixture {
        LabFixture::up_with_rows(2000)
    }

    /// A replicating lab seeded with `rows` transactions.
    pub fn up_with_rows(rows: u64) -> LabFixture {
        LabFixture::start(rows, true, Flavor::MariaDb)
    }

    /// A lab whose clusters start empty (only legacy holds the dataset).
    pub fn up_empty(rows: u64) -> LabFixture {
        LabFixture::start(rows, false, Flavor::MariaDb)
    }

    /// A replicating lab of `flavor` seeded with `rows` transactions.
    pub fn up_as(flavor: Flavor, rows: u64) -> LabFixture {
        LabFixture::start(rows, true, flavor)
    }

    /// A lab of `flavor` whose clusters start empty.
    pub fn up_empty_as(flavor: Flavor, rows: u64) -> LabFixture {
        LabFixture::start(rows, false, flavor)
    }

    /// A replicating MariaDB lab with its PostgreSQL for a shared state
    /// store (`CUTOVER_LAB_STATE_URL`).
    pub fn up_shared() -> LabFixture {
        LabFixture::start_with(2000, true, Flavor::MariaDb, &["--postgres"])
    }

    fn start(rows: u64, replicating: bool, flavor: Flavor) -> LabFixture {
        LabFixture::start_with(rows, replicating, flavor, &[])
    }

    fn start_with(rows: u64, replicating: bool, flavor: Flavor, extra: &[&str]) -> LabFixture {
        let sandbox = Sandbox::new();
        let rows = rows.to_string();
        let lab_dir = sandbox.path().join("lab");
        sandbox
            .cutover()
            .args([
                "lab",
                "up",
                "--rows",
                &rows,
                "-q",
                "--flavor",
                flavor.name(),
            ])
            .args(replicating.then_some("--replicating"))
            .args(extra)
            .arg("--dir")
            .arg(&lab_dir)
            .assert()
            .success();
        let output = sandbox
            .cutover()
            .args(["lab", "env", "--output", "json", "--dir"])
            .arg(&lab_dir)
            .output()
            .expect("lab env");
        let env = stdout_json(&output)
            .as_object()
            .expect("lab env is an object")
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_string()))
            .collect();
        LabFixture {
            sandbox,
            env,
            flavor,
        }
    }

    pub fn var(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("lab env has no {name}"))
    }

    /// `cutover` with the lab's variables exported.
    pub fn cutover(&self) -> Command {
        let mut command = self.sandbox.cutover();
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// A plan over the lab's five servers, with per-cluster changes.
    /// A plain `std::process::Command` with the lab's environment, for
    /// processes that run in the background.
    pub fn background(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        command
            .env("CUTOVER_STATE", self.sandbox.state_dir())
            .env("NO_COLOR", "1")
            .env_remove("CUTOVER_LAB_DIR")
            .current_dir(repo_root());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    pub fn plan(&self, file: &str, changes: &[PlanCluster]) -> PathBuf {
        let mut yaml = String::from("name: test-lab\nclusters:\n");
        for (index, (name, ip)) in LAB_CLUSTERS.iter().enumerate() {
            let change = changes.iter().find(|c| c.name == *name);
            let (host, port, extra) =
                change.map_or((*ip, 13306, ""), |c| (c.host, c.port, c.extra));
            yaml.push_str(&format!(
                "  {name}:\n    role: {role}\n    host: {host}\n    port: {port}\n    user: cutover\n    \
                 password_env: CUTOVER_LAB_PASSWORD\n    \
                 pool: {{ max: 4, connect_timeout_ms: 1000, query_timeout_ms: 5000 }}\n{extra}",
                role = if index == 0 { "source" } else { "target" },
            ));
        }
        yaml.push_str(
            "gates:\n  max_lag_ms: 100\n  sustained_for: 1s\n  lag_timeout: 10s\n  \
             heartbeat_interval_ms: 50\n  max_clock_skew_ms: 500\n\
             phases:\n  - name: verify\n    rollback: manual\n    steps:\n      - wait_lag: {}\n",
        );
        self.sandbox.write(file, yaml)
    }

    /// An admin session to one lab server, on a small runtime of its own.
    pub fn admin_exec(&self, ip: &str, statements: &[&str]) {
        let endpoint = self.admin_endpoint(ip);
        runtime().block_on(async {
            let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
            for sql in statements {
                session.exec("test statement", sql).await.unwrap();
            }
            session.close().await;
        });
    }

    /// Writes on one replica only, outside the binary log: a planted
    /// difference. MySQL's replicas are `super_read_only`, lifted around it.
    pub fn plant(&self, ip: &str, statements: &[&str]) {
        let mut all = vec!["SET SESSION sql_log_bin = 0"];
        if self.flavor == Flavor::MySql {
            all.push("SET GLOBAL super_read_only = OFF");
        }
        all.extend_from_slice(statements);
        if self.flavor == Flavor::MySql {
            all.push("SET GLOBAL super_read_only = ON");
        }
        self.admin_exec(ip, &all);
    }

    /// One value read by an admin session: `SELECT` of a single cell.
    pub fn admin_value(&self, ip: &str, sql: &str) -> String {
        let endpoint = self.admin_endpoint(ip);
        runtime().block_on(async {
            let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
            let value: Option<String> = session.query_first("test query", sql).await.unwrap();
            session.close().await;
            value.unwrap_or_else(|| panic!("{sql}: no row"))
        })
    }

    /// Wait until every replica has applied everything legacy has logged.
    pub fn wait_replicated(&self) {
        let legacy = self.admin_endpoint("127.0.0.10");
        let (read, wait) = match self.flavor {
            Flavor::MariaDb => ("SELECT @@GLOBAL.gtid_binlog_pos", "MASTER_GTID_WAIT"),
            Flavor::MySql => (
                "SELECT @@GLOBAL.gtid_executed",
                "WAIT_FOR_EXECUTED_GTID_SET",
            ),
        };
        runtime().block_on(async {
            let mut session = cutover::mysql::Session::connect(&legacy).await.unwrap();
            let position: String = session
                .query_first("read position", read)
                .await
                .unwrap()
                .unwrap();
            session.close().await;
            for (_, ip) in &LAB_CLUSTERS[1..] {
                let mut replica = cutover::mysql::Session::connect(&self.admin_endpoint(ip))
                    .await
                    .unwrap();
                let reached: Option<i64> = replica
                    .query_first("wait", &format!("SELECT {wait}('{position}', 10)"))
                    .await
                    .unwrap();
                assert_eq!(reached, Some(0), "{ip} did not reach {position}");
                replica.close().await;
            }
        });
    }

    pub fn admin_endpoint(&self, ip: &str) -> cutover::mysql::Endpoint {
        cutover::mysql::Endpoint {
            name: ip.to_string(),
            address: cutover::mysql::Address::Tcp {
                host: ip.to_string(),
                port: 13306,
            },
            user: self.var("CUTOVER_LAB_ADMIN_USER").to_string(),
            password: Some(cutover::secret::Secret::new(
                self.var("CUTOVER_LAB_ADMIN_PASSWORD"),
            )),
            connect_timeout: std::time::Duration::from_secs(2),
            query_timeout: std::time::Duration::from_secs(10),
            tls: None,
        }
    }

    pub fn lab_dir(&self) -> PathBuf {
        self.sandbox.path().join("lab")
    }
}

impl Drop for LabFixture {
    fn drop(&mut self) {
        let _ = self
            .sandbox
            .cutover()
            .args(["lab", "down", "-q", "--dir"])
            .arg(self.lab_dir())
            .output();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
}

/// A cluster entry in a test plan from a `cluster` row of `topology --output json`.
pub fn cluster<'a>(document: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    document["clusters"]
        .as_array()
        .expect("clusters array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {document}"))
}

/// Writes on legacy's `refunds.transactions` in the background: one insert and
/// one update of ids 1..=1000 every 10 ms, until stopped (at most two minutes).
pub struct WriteLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl WriteLoad {
    pub fn start(fx: &LabFixture) -> WriteLoad {
        WriteLoad::of(fx, |n| {
            format!(
                "INSERT INTO refunds.transactions (txn_ref, payer_vpa, payee_vpa, amount, status, fx_rate, created_at) \
                 VALUES ('LOAD{n:018}', 'load@bank', 'shop@bank', 10.00, 'SUCCESS', 1.0, NOW(6)); \
                 UPDATE refunds.transactions SET amount = amount + 0.01 WHERE id = {}",
                n % 1000 + 1
            )
        })
    }

    /// Writes made by `statement(n)` for n = 0, 1, … on legacy, every 10 ms.
    pub fn of(fx: &LabFixture, statement: fn(u64) -> String) -> WriteLoad {
        use std::sync::atomic::Ordering;
        let endpoint = fx.admin_endpoint("127.0.0.10");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            runtime().block_on(async {
                let mut session = cutover::mysql::Session::connect(&endpoint).await.unwrap();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                let mut written = 0u64;
                while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    session.exec("load", &statement(written)).await.unwrap();
                    written += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                session.close().await;
                written
            })
        });
        WriteLoad { stop, handle }
    }

    /// Stop and return how many statements (insert+update pairs) were written.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("write load")
    }
}

/// SIGTERM a background process and collect what it printed.
pub fn terminate(child: std::process::Child) -> std::process::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait_with_output().unwrap()
}
