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
