//! The lab's own certificate authority and the server certificate every lab
//! server presents, made with the `openssl` command from Debian's package.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{LabError, SERVERS};

/// A new P-256 key, unencrypted (the lab's servers read it without a passphrase).
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

pub fn dir(lab: &Path) -> PathBuf {
    lab.join("tls")
}

pub fn ca_file(lab: &Path) -> PathBuf {
    dir(lab).join("ca.pem")
}

pub fn server_cert(lab: &Path) -> PathBuf {
    dir(lab).join("server.pem")
}

pub fn server_key(lab: &Path) -> PathBuf {
    dir(lab).join("server-key.pem")
}

/// Make the CA and the server certificate once.
pub fn ensure(lab: &Path, openssl: &Path) -> Result<(), LabError> {
    if server_cert(lab).exists() && server_key(lab).exists() && ca_file(lab).exists() {
        return Ok(());
    }
    let dir = dir(lab);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
    generate_ca(openssl, &dir, "cutover lab CA")?;
    let mut names: Vec<String> = SERVERS
        .iter()
        .map(|server| format!("IP:{}", server.ip))
        .collect();
    names.extend(
        ["localhost", "*.bank.internal", "bank.internal"]
            .iter()
            .map(|name| format!("DNS:{name}")),
    );
    names.push("IP:127.0.0.1".to_string());
    let extensions = dir.join("server.ext");
    std::fs::write(
        &extensions,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            names.join(",")
        ),
    )
    .map_err(|e| LabError::io(&extensions, e))?;
    run(
        openssl,
        &dir,
        &[
            &["req"][..],
            &NEW_EC_KEY,
            &[
                "-keyout",
                "server-key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=cutover lab server",
            ],
        ]
        .concat(),
    )?;
    run(
        openssl,
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    )
}

/// A self-signed CA (`ca.pem`, `ca-key.pem`) in `dir`.
pub fn generate_ca(openssl: &Path, dir: &Path, common_name: &str) -> Result<(), LabError> {
    let subject = format!("/CN={common_name}");
    run(
        openssl,
        dir,
        &[
            &["req", "-x509"][..],
            &NEW_EC_KEY,
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "3650",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    )
}

fn run(openssl: &Path, dir: &Path, args: &[&str]) -> Result<(), LabError> {
    let output = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| LabError::io(openssl, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LabError::StartFailed {
        server: "tls".to_string(),
        reason: format!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}
