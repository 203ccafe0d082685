//! MySQL/MariaDB sessions with a timeout on every connect and query.
//!
//! mysql_async has no timeouts of its own, so every await on the network goes
//! through [`with_timeout`]. Errors name the cluster and never carry secrets.

pub mod gtid;

use std::time::Duration;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, OptsBuilder};

use crate::secret::Secret;

/// Where and how to reach one server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The plan's cluster name (or a lab server name), used in every error.
    pub name: String,
    pub address: Address,
    pub user: String,
    pub password: Option<Secret>,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Socket(std::path::PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("cluster `{cluster}` ({address}): cannot connect: {reason}")]
    Connect {
        cluster: String,
        address: String,
        reason: String,
    },
    #[error("cluster `{cluster}` ({address}): {what} timed out after {} ms", after.as_millis())]
    Timeout {
        cluster: String,
        address: String,
        what: String,
        after: Duration,
    },
    #[error("cluster `{cluster}`: {what} failed: {reason}")]
    Query {
        cluster: String,
        what: String,
        reason: String,
    },
}

/// Await `future` for at most `limit`.
pub async fn with_timeout<T>(
    limit: Duration,
    future: impl Future<Output = T>,
) -> Result<T, Duration> {
    tokio::time::timeout(limit, future).await.map_err(|_| limit)
}

/// One connection to one server.
pub struct Session {
    conn: Conn,
    endpoint: Endpoint,
}

impl Session {
    pub async fn connect(endpoint: &Endpoint) -> Result<Session, MysqlError> {
        let mut builder = OptsBuilder::default()
            .user(Some(endpoint.user.clone()))
            .pass(endpoint.password.as_ref().map(|p| p.expose().to_string()))
            // A loopback TCP address must not be swapped for a Unix socket with other grants.
            .prefer_socket(false)
            .stmt_cache_size(0)
            .tcp_nodelay(true);
        builder = match &endpoint.address {
            Address::Tcp { host, port } => builder.ip_or_hostname(host.clone()).tcp_port(*port),
            Address::Socket(path) => builder.socket(Some(path.display().to_string())),
        };
        let connect = Conn::new(builder);
        match with_timeout(endpoint.connect_timeout, connect).await {
            Ok(Ok(conn)) => Ok(Session {
                conn,
                endpoint: endpoint.clone(),
            }),
            Ok(Err(error)) => Err(MysqlError::Connect {
                cluster: endpoint.name.clone(),
                address: endpoint.address.to_string(),
                reason: error.to_string(),
            }),
            Err(after) => Err(MysqlError::Timeout {
                cluster: endpoint.name.clone(),
                address: endpoint.address.to_string(),
                what: "connect".to_string(),
                after,
            }),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn failure(&self, what: &str, error: mysql_async::Error) -> MysqlError {
        MysqlError::Query {
            cluster: self.endpoint.name.clone(),
            what: what.to_string(),
            reason: error.to_string(),
        }
    }

    fn timeout(&self, what: &str, after: Duration) -> MysqlError {
        MysqlError::Timeout {
            cluster: self.endpoint.name.clone(),
            address: self.endpoint.address.to_string(),
            what: what.to_string(),
            after,
        }
    }

    /// Run statements that return no rows. `what` describes them for errors
    /// (statements may hold secrets, so they are never echoed).
    pub async fn exec(&mut self, what: &str, sql: &str) -> Result<(), MysqlError> {
        self.exec_within(self.endpoint.query_timeout, what, sql)
            .await
    }

    pub async fn exec_within(
        &mut self,
        limit: Duration,
        what: &str,
        sql: &str,
    ) -> Result<(), MysqlError> {
        match with_timeout(limit, self.conn.query_drop(sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.failure(what, error)),
            Err(after) => Err(self.timeout(what, after)),
        }
    }

    pub async fn query<T: FromRow + Send + 'static>(
        &mut self,
        what: &str,
        sql: &str,
    ) -> Result<Vec<T>, MysqlError> {
        let limit = self.endpoint.query_timeout;
        match with_timeout(limit, self.conn.query(sql)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(error)) => Err(self.failure(what, error)),
            Err(after) => Err(self.timeout(what, after)),
        }
    }

    pub async fn query_first<T: FromRow + Send + 'static>(
        &mut self,
        what: &str,
        sql: &str,
    ) -> Result<Option<T>, MysqlError> {
        let limit = self.endpoint.query_timeout;
        match with_timeout(limit, self.conn.query_first(sql)).await {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(error)) => Err(self.failure(what, error)),
            Err(after) => Err(self.timeout(what, after)),
        }
    }

    /// Close politely, but never wait more than a second for it.
    pub async fn close(self) {
        let _ = with_timeout(Duration::from_secs(1), self.conn.disconnect()).await;
    }
}

/// Quote a string literal for SQL text (for values that cannot be bound, like `CHANGE MASTER`).
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            '\0' => quoted.push_str("\\0"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\u{1a}' => quoted.push_str("\\Z"),
            other => quoted.push(other),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quote_escapes_quotes_and_backslashes() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
        assert_eq!(quote("x\0y"), r"'x\0y'");
    }
}
