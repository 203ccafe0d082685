//! Secrets read from the environment or a file, never printed.

use std::fmt;

use crate::plan::SecretSource;

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for handing to a driver. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{owner}: environment variable {variable} is not set (export it, e.g. `eval \"$(cutover lab env)\"` for the lab)"
    )]
    EnvMissing { owner: String, variable: String },
    #[error("{owner}: environment variable {variable} is empty")]
    EnvEmpty { owner: String, variable: String },
    #[error("{owner}: cannot read secret file {path}: {reason}")]
    File {
        owner: String,
        path: String,
        reason: String,
    },
    #[error("{owner}: secret file {path} is empty")]
    FileEmpty { owner: String, path: String },
}

/// Read a secret. `owner` names what needs it (e.g. "cluster `c1` password").
pub fn resolve(source: &SecretSource, owner: &str) -> Result<Secret, SecretError> {
    match source {
        SecretSource::Env(variable) => match std::env::var(variable) {
            Ok(value) if !value.is_empty() => Ok(Secret(value)),
            Ok(_) => Err(SecretError::EnvEmpty {
                owner: owner.to_string(),
                variable: variable.clone(),
            }),
            Err(_) => Err(SecretError::EnvMissing {
                owner: owner.to_string(),
                variable: variable.clone(),
            }),
        },
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| SecretError::File {
                owner: owner.to_string(),
                path: path.display().to_string(),
                reason: error.kind().to_string(),
            })?;
            let value = text.lines().next().unwrap_or_default().trim().to_string();
            if value.is_empty() {
                return Err(SecretError::FileEmpty {
                    owner: owner.to_string(),
                    path: path.display().to_string(),
                });
            }
            Ok(Secret(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(****)");
        assert_eq!(format!("{secret}"), "****");
        assert!(!format!("{secret:?}{secret}").contains("hunter2"));
    }

    #[test]
    fn file_secret_takes_the_first_line_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "  s3cret \nignored\n").unwrap();
        let secret = resolve(&SecretSource::File(path), "test").unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn missing_env_names_the_variable_not_a_value() {
        let error = resolve(
            &SecretSource::Env("CUTOVER_TEST_SURELY_UNSET_VARIABLE".into()),
            "cluster `c1` password",
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("CUTOVER_TEST_SURELY_UNSET_VARIABLE"),
            "{text}"
        );
        assert!(text.contains("cluster `c1` password"), "{text}");
    }
}
