//! A snapshot written to disk: one gzip file per chunk and `manifest.json` with
//! the schema, the GTID position and each file's sha256. `cutover restore`
//! verifies every file before loading any.
//!
//! A chunk file holds length-framed records. Format 2 (written now): a header
//! (the `LOAD DATA` statement, and how to turn the rows into INSERTs for a
//! server that refuses `LOAD DATA LOCAL`) and the rows as LOAD DATA text.
//! Format 1 (still read): INSERT statements.

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
use crate::tables::schema::TableSpec;

pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 2;

/// How a column's value is written in the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// LOAD DATA's escaped text.
    Text,
    /// Hex digits of a binary value.
    Hex,
    /// Hex digits of a BIT value.
    Bit,
}

/// What a format-2 chunk file says before its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub load_sql: String,
    /// `INSERT INTO t (a, b) VALUES `, for servers that refuse LOAD DATA LOCAL.
    pub insert_head: String,
    pub encodings: Vec<Encoding>,
}

/// One chunk file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Format 1.
    Statements(Vec<String>),
    /// Format 2: the rows as LOAD DATA text.
    Rows { header: ChunkHeader, data: Vec<u8> },
}

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

    /// Write one chunk to a new file; the first failure is kept.
    pub fn write(&self, spec: &TableSpec, rows: u64, header: &ChunkHeader, data: &[u8]) {
        if self.failure.lock().expect("not poisoned").is_some() {
            return;
        }
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let file = format!("{}.{}.{sequence:07}.sql.gz", spec.schema, spec.name);
        match write_chunk(&self.directory.join(&file), header, data) {
            Ok(sha256) => self.files.lock().expect("not poisoned").push(ChunkFile {
                file,
                table: spec.display_name(),
                rows,
                statements: 0,
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

/// `len\nbytes\n` per record (the header as JSON, then the rows), gzip;
/// returns the file's sha256.
fn write_chunk(path: &Path, header: &ChunkHeader, data: &[u8]) -> std::io::Result<String> {
    let file = std::fs::File::create(path)?;
    let mut encoder = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    let header = serde_json::to_vec(header).expect("a header serialises");
    for record in [header.as_slice(), data] {
        writeln!(encoder, "{}", record.len())?;
        encoder.write_all(record)?;
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
    if !(1..=FORMAT).contains(&manifest.format) {
        return Err(Damage {
            file: MANIFEST.into(),
            problem: format!(
                "has format {}, this build reads formats 1 to {FORMAT}",
                manifest.format
            ),
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

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// The length-framed records of one chunk file.
fn read_records(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut reader = BufReader::new(GzDecoder::new(file));
    let mut records = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let length: usize = line
            .trim_end()
            .parse()
            .map_err(|_| invalid("bad record frame"))?;
        let mut record = vec![0u8; length + 1];
        reader.read_exact(&mut record)?;
        record.pop();
        records.push(record);
    }
    Ok(records)
}

/// One chunk file of a directory written in `format`.
pub fn read_chunk(path: &Path, format: u32) -> std::io::Result<Chunk> {
    let records = read_records(path)?;
    if format == 1 {
        return records
            .into_iter()
            .map(|r| String::from_utf8(r).map_err(|_| invalid("statement is not UTF-8")))
            .collect::<Result<_, _>>()
            .map(Chunk::Statements);
    }
    let [header, data]: [Vec<u8>; 2] = records
        .try_into()
        .map_err(|_| invalid("a chunk holds a header and its rows"))?;
    let header: ChunkHeader =
        serde_json::from_slice(&header).map_err(|_| invalid("bad chunk header"))?;
    Ok(Chunk::Rows { header, data })
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
        let header = ChunkHeader {
            load_sql: "LOAD DATA LOCAL INFILE 'chunk' INTO TABLE t".into(),
            insert_head: "INSERT INTO t (a, b) VALUES ".into(),
            encodings: vec![Encoding::Text, Encoding::Hex],
        };
        let data = b"line\\nbreak\t00ff\n\xc3\xbcn\xc3\xafcode\t\\N\n".to_vec();
        let sha = write_chunk(&path, &header, &data).unwrap();
        assert_eq!(
            read_chunk(&path, FORMAT).unwrap(),
            Chunk::Rows {
                header: header.clone(),
                data: data.clone()
            }
        );
        let manifest = Manifest {
            format: FORMAT,
            source: "legacy".into(),
            gtid_position: "0-10-5".into(),
            created_at_unix: 0,
            schema: Schema {
                databases: vec![],
                tables: vec![],
                objects: vec![],
                sequences: vec![],
                counters: vec![],
                history: false,
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
