//! A snapshot written to disk: one gzip file per chunk (length-framed INSERT
//! statements) and `manifest.json` with the schema, the GTID position and each
//! file's sha256. `cutover restore` verifies every file before loading any.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Schema;
use crate::checksum::schema::TableSpec;

pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkFile {
    /// File name inside the directory.
    pub file: String,
    /// `schema.table`.
    pub table: String,
    pub rows: u64,
    pub statements: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub source: String,
    pub gtid_position: String,
    pub created_at_unix: u64,
    pub schema: Schema,
    pub files: Vec<ChunkFile>,
}

/// Writes chunk files as the snapshot reads them.
pub struct Writer {
    directory: PathBuf,
    next: AtomicU64,
    files: Mutex<Vec<ChunkFile>>,
    failure: Mutex<Option<String>>,
}

impl Writer {
    /// Create `directory`, which must not exist or be empty.
    pub fn create(directory: &Path) -> std::io::Result<Writer> {
        if directory.exists() && std::fs::read_dir(directory)?.next().is_some() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} is not empty; give a new directory", directory.display()),
            ));
        }
        std::fs::create_dir_all(directory)?;
        Ok(Writer {
            directory: directory.to_path_buf(),
            next: AtomicU64::new(1),
            files: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
        })
    }

    /// For a resumed snapshot: empty a directory an interrupted snapshot left
    /// (chunk files and no manifest), then write it again from the new snapshot.
    /// Anything else in it is refused, never deleted.
    pub fn restart(directory: &Path) -> std::io::Result<Writer> {
        if directory.exists() {
            let mut ours = Vec::new();
            for entry in std::fs::read_dir(directory)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !name.ends_with(".sql.gz") || !path.is_file() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!(
                            "{} holds {name}, which an interrupted snapshot does not leave; give a new directory",
                            directory.display()
                        ),
                    ));
                }
                ours.push(path);
            }
            for path in ours {
                std::fs::remove_file(path)?;
            }
        }
        Writer::create(directory)
    }

    /// Write one chunk's statements to a new file; the first failure is kept.
    pub fn write(&self, spec: &TableSpec, rows: u64, statements: &[String]) {
        if self.failure.lock().expect("not poisoned").is_some() {
            return;
        }
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let file = format!("{}.{}.{sequence:07}.sql.gz", spec.schema, spec.name);
        match write_chunk(&self.directory.join(&file), statements) {
            Ok(sha256) => self.files.lock().expect("not poisoned").push(ChunkFile {
                file,
                table: spec.display_name(),
                rows,
                statements: statements.len() as u64,
                sha256,
            }),
            Err(error) => {
                *self.failure.lock().expect("not poisoned") = Some(format!(
                    "cannot write {}: {error}",
                    self.directory.join(&file).display()
                ));
            }
        }
    }

    /// Write the manifest (last, so a directory without one is visibly incomplete).
    pub fn finish(
        &self,
        source: &str,
        gtid_position: &str,
        schema: &Schema,
        _tables: &[TableSpec],
    ) -> Result<PathBuf, String> {
        if let Some(failure) = self.failure.lock().expect("not poisoned").clone() {
            return Err(failure);
        }
        let mut files = self.files.lock().expect("not poisoned").clone();
        files.sort_by(|a, b| a.file.cmp(&b.file));
        let manifest = Manifest {
            format: FORMAT,
            source: source.to_string(),
            gtid_position: gtid_position.to_string(),
            created_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            schema: schema.clone(),
            files,
        };
        let path = self.directory.join(MANIFEST);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// `len\nstatement\n` per statement, gzip; returns the file's sha256.
fn write_chunk(path: &Path, statements: &[String]) -> std::io::Result<String> {
    let file = std::fs::File::create(path)?;
    let mut encoder = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    for statement in statements {
        writeln!(encoder, "{}", statement.len())?;
        encoder.write_all(statement.as_bytes())?;
        encoder.write_all(b"\n")?;
    }
    let mut writer = encoder.finish()?;
    writer.flush()?;
    drop(writer);
    sha256_of(path)
}

pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Why a directory cannot be restored, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub problem: String,
}

/// Read the manifest and check every file against it before anything is loaded.
pub fn open_verified(directory: &Path) -> Result<Manifest, Damage> {
    let path = directory.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Damage {
        file: MANIFEST.into(),
        problem: format!("cannot be read ({e}); an interrupted snapshot leaves none"),
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Damage {
        file: MANIFEST.into(),
        problem: format!("is not a snapshot manifest ({e})"),
    })?;
    if manifest.format != FORMAT {
        return Err(Damage {
            file: MANIFEST.into(),
            problem: format!("has format {}, this build reads {FORMAT}", manifest.format),
        });
    }
    for chunk in &manifest.files {
        let found = sha256_of(&directory.join(&chunk.file)).map_err(|e| Damage {
            file: chunk.file.clone(),
            problem: format!("cannot be read ({e})"),
        })?;
        if found != chunk.sha256 {
            return Err(Damage {
                file: chunk.file.clone(),
                problem: format!(
                    "does not match its sha256 in the manifest (expected {}, found {found})",
                    chunk.sha256
                ),
            });
        }
    }
    Ok(manifest)
}

/// The statements of one chunk file.
pub fn read_chunk(path: &Path) -> std::io::Result<Vec<String>> {
    let file = std::fs::File::open(path)?;
    let mut reader = BufReader::new(GzDecoder::new(file));
    let mut statements = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let length: usize = line.trim_end().parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad statement frame")
        })?;
        let mut statement = vec![0u8; length + 1];
        reader.read_exact(&mut statement)?;
        statement.pop();
        statements.push(String::from_utf8(statement).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "statement is not UTF-8")
        })?);
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_empties_only_what_an_interrupted_snapshot_left() {
        let root = tempfile::tempdir().unwrap();
        let directory = root.path().join("snapshot");
        std::fs::create_dir(&directory).unwrap();
        std::fs::write(directory.join("db.t.0000001.sql.gz"), b"x").unwrap();
        std::fs::write(directory.join("db.t.0000002.sql.gz"), b"y").unwrap();
        Writer::restart(&directory).unwrap();
        assert_eq!(std::fs::read_dir(&directory).unwrap().count(), 0);
        // A finished snapshot (it has a manifest) or anything else is never deleted.
        for other in [MANIFEST, "notes.txt"] {
            std::fs::write(directory.join("db.t.0000001.sql.gz"), b"x").unwrap();
            std::fs::write(directory.join(other), b"{}").unwrap();
            let error = Writer::restart(&directory).err().unwrap().to_string();
            assert!(error.contains(other), "{error}");
            assert!(directory.join("db.t.0000001.sql.gz").exists());
            std::fs::remove_file(directory.join(other)).unwrap();
        }
        // A directory that does not exist yet is simply created.
        Writer::restart(&root.path().join("new")).unwrap();
        assert!(root.path().join("new").is_dir());
    }

    #[test]
    fn chunks_round_trip_and_damage_is_named() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a.sql.gz");
        let statements = vec![
            "INSERT INTO t VALUES ('line\\nbreak', 1)".to_string(),
            "INSERT INTO t VALUES ('ünïcode', 2)".to_string(),
        ];
        let sha = write_chunk(&path, &statements).unwrap();
        assert_eq!(read_chunk(&path).unwrap(), statements);
        let manifest = Manifest {
            format: FORMAT,
            source: "legacy".into(),
            gtid_position: "0-10-5".into(),
            created_at_unix: 0,
            schema: Schema {
                databases: vec![],
                tables: vec![],
                objects: vec![],
            },
            files: vec![ChunkFile {
                file: "a.sql.gz".into(),
                table: "s.t".into(),
                rows: 2,
                statements: 2,
                sha256: sha,
            }],
        };
        std::fs::write(
            directory.path().join(MANIFEST),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
        assert!(open_verified(directory.path()).is_ok());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let damage = open_verified(directory.path()).unwrap_err();
        assert_eq!(damage.file, "a.sql.gz");
        assert!(damage.problem.contains("sha256"), "{}", damage.problem);
    }
}
