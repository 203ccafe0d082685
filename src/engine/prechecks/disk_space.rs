//! Room for a snapshot, before the window: what the source's selected
//! databases take, against the free space of each target's data directory
//! (where the server can tell it) and of a snapshot directory.

use std::collections::BTreeSet;
use std::path::Path;

use super::check::{CheckStatus, Precheck};
use crate::mysql::{MysqlError, Session, quote};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;
use crate::tables::schema::SYSTEM_SCHEMAS;
use crate::topology;

/// Free space must exceed the copy by this factor (secondary indexes are
/// rebuilt after the load, and InnoDB pages are rarely full).
const HEADROOM: f64 = 1.2;

fn check(cluster: &str, status: CheckStatus, detail: String) -> Precheck {
    Precheck {
        cluster: cluster.to_string(),
        check: "disk space for the snapshot".into(),
        status,
        detail,
        phase: None,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes (data and indexes) of what a snapshot of the source copies.
async fn source_bytes(session: &mut Session, plan: &ValidatedPlan) -> Result<u64, MysqlError> {
    let filter = match &plan.databases {
        Some(list) => format!(
            "TABLE_SCHEMA IN ({})",
            list.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", ")
        ),
        None => format!(
            "TABLE_SCHEMA NOT IN ({})",
            SYSTEM_SCHEMAS
                .iter()
                .map(|d| quote(d))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let bytes: Option<u64> = session
        .query_first(
            "measure the snapshot",
            &format!(
                "SELECT CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS UNSIGNED) \
                 FROM information_schema.TABLES WHERE {filter}"
            ),
        )
        .await?;
    Ok(bytes.unwrap_or(0))
}

/// Free bytes on the disk holding the server's data directory, from MariaDB's
/// `information_schema.DISKS` (the `disks` plugin, visible with FILE); `None`
/// when the server cannot say.
async fn target_free(session: &mut Session) -> Option<u64> {
    let datadir: String = session
        .query_first("read the data directory", "SELECT @@GLOBAL.datadir")
        .await
        .ok()??;
    let disks: Vec<(String, u64)> = session
        .query(
            "read free disk space",
            "SELECT Path, CAST(Available AS UNSIGNED) FROM information_schema.DISKS",
        )
        .await
        .ok()?;
    disks
        .into_iter()
        .filter(|(path, _)| datadir.starts_with(path.as_str()))
        .max_by_key(|(path, _)| path.len())
        .map(|(_, kib)| kib * 1024)
}

/// Free bytes where `dir` will be written (its nearest existing ancestor).
fn directory_free(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

pub async fn checks(
    plan: &ValidatedPlan,
    targets: &BTreeSet<String>,
    directory: Option<&Path>,
    reachable: &dyn Fn(&str) -> bool,
) -> Result<Vec<Precheck>, SecretError> {
    let mut out = Vec::new();
    let source = plan.source().name.clone();
    let endpoints = topology::endpoints(plan)?;
    let Some((_, source_endpoint)) = endpoints.iter().find(|(c, _)| c.name == source) else {
        return Ok(out);
    };
    if !reachable(&source) {
        return Ok(out);
    }
    let bytes = match Session::connect(source_endpoint).await {
        Ok(mut session) => {
            let measured = source_bytes(&mut session, plan).await;
            session.close().await;
            match measured {
                Ok(bytes) => bytes,
                Err(error) => {
                    out.push(check(&source, CheckStatus::Warn, error.to_string()));
                    return Ok(out);
                }
            }
        }
        Err(error) => {
            out.push(check(&source, CheckStatus::Warn, error.to_string()));
            return Ok(out);
        }
    };
    let needed = (bytes as f64 * HEADROOM) as u64;
    out.push(check(
        &source,
        CheckStatus::Pass,
        format!(
            "the snapshot copies about {} (data and indexes)",
            mib(bytes)
        ),
    ));
    for (cluster, endpoint) in &endpoints {
        if !targets.contains(&cluster.name) || !reachable(&cluster.name) {
            continue;
        }
        let free = match Session::connect(endpoint).await {
            Ok(mut session) => {
                let free = target_free(&mut session).await;
                session.close().await;
                free
            }
            Err(_) => None,
        };
        out.push(match free {
            Some(free) if free >= needed => check(
                &cluster.name,
                CheckStatus::Pass,
                format!("{} free for about {}", mib(free), mib(bytes)),
            ),
            Some(free) => check(
                &cluster.name,
                CheckStatus::Fail,
                format!(
                    "{} free, the snapshot needs about {} (with {HEADROOM}× headroom): free space first",
                    mib(free),
                    mib(needed)
                ),
            ),
            None => check(
                &cluster.name,
                CheckStatus::Warn,
                format!(
                    "the server does not say how much disk is free (MariaDB: the `disks` plugin and FILE); \
                     make sure about {} fit",
                    mib(needed)
                ),
            ),
        });
    }
    if let Some(dir) = directory {
        out.push(match directory_free(dir) {
            Some(free) if free >= bytes => check(
                &format!("directory {}", dir.display()),
                CheckStatus::Pass,
                format!("{} free for at most {} (gzip)", mib(free), mib(bytes)),
            ),
            Some(free) => check(
                &format!("directory {}", dir.display()),
                CheckStatus::Fail,
                format!(
                    "{} free, the chunk files may take up to {}: choose another directory or free space",
                    mib(free),
                    mib(bytes)
                ),
            ),
            None => check(
                &format!("directory {}", dir.display()),
                CheckStatus::Warn,
                "cannot read the free space there".into(),
            ),
        });
    }
    Ok(out)
}
