//! MySQL/MariaDB sessions with a timeout on every connect and query.
//!
//! mysql_async has no timeouts of its own, so every await on the network goes
//! through [`with_timeout`]. Errors name the cluster and never carry secrets.

pub mod control;
pub mod events;
pub mod gtid;
pub mod link;
pub mod scope;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, OptsBuilder, PoolConstraints, PoolOpts, SslOpts};

use crate::plan::Cluster;
use crate::secret::{self, Secret, SecretError};

pub use gtid::{Flavor, GtidSet};

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
    /// `None`: plain TCP. `Some`: TLS is required; a server without it is refused.
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// CA bundle that must have signed the server's certificate; `None`: the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any certificate (encryption without authentication).
    pub verify: bool,
}

impl Endpoint {
    /// The endpoint a plan's cluster describes, with its password read from its source.
    pub fn for_cluster(cluster: &Cluster) -> Result<Endpoint, SecretError> {
        let password = secret::resolve(
            &cluster.password,
            &format!("cluster `{}` password", cluster.name),
        )?;
        Ok(Endpoint {
            name: cluster.name.clone(),
            address: Address::Tcp {
                host: cluster.host.clone(),
                port: cluster.port,
            },
            user: cluster.user.clone(),
            password: Some(password),
            connect_timeout: cluster.pool.connect_timeout,
            query_timeout: cluster.pool.query_timeout,
            tls: cluster.tls.as_ref().map(|tls| TlsSettings {
                ca_file: tls.ca_file.clone(),
                verify: tls.verify,
            }),
        })
    }

    fn opts(&self) -> OptsBuilder {
        let mut builder = OptsBuilder::default()
            .user(Some(self.user.clone()))
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            // A loopback TCP address must not be swapped for a Unix socket with other grants.
            .prefer_socket(false)
            .stmt_cache_size(0)
            .tcp_nodelay(true);
        builder = match &self.address {
            Address::Tcp { host, port } => builder.ip_or_hostname(host.clone()).tcp_port(*port),
            Address::Socket(path) => builder.socket(Some(path.display().to_string())),
        };
        if let Some(tls) = &self.tls {
            let mut ssl = SslOpts::default()
                .with_danger_accept_invalid_certs(!tls.verify)
                .with_danger_skip_domain_validation(!tls.verify);
            if let Some(ca_file) = &tls.ca_file {
                ssl = ssl
                    .with_root_certs(vec![ca_file.clone().into()])
                    .with_disable_built_in_roots(true);
            }
            builder = builder.ssl_opts(ssl);
        }
        builder
    }

    fn connect_error(&self, error: mysql_async::Error) -> MysqlError {
        let mut reason = error.to_string();
        // MySQL's ER_SECURE_TRANSPORT_REQUIRED: require_secure_transport=ON.
        if self.tls.is_none()
            && matches!(&error, mysql_async::Error::Server(server) if server.code == 3159)
        {
            return self.tls_required();
        }
        // MariaDB refuses a plain connection to a TLS-only server as a bad
        // login, and MySQL does for a `REQUIRE SSL` account: name both causes
        // rather than try the password a second time.
        if self.tls.is_none()
            && matches!(&error, mysql_async::Error::Server(server) if server.code == 1045)
        {
            reason = format!(
                "{reason}: the password is wrong, or the server accepts this account only over TLS \
                 (require_secure_transport=ON or REQUIRE SSL) and the plan has no `tls:` for `{}`; \
                 add `tls: {{ ca_file: <the server's CA> }}` to it",
                self.name
            );
        }
        if let Some(tls) = &self.tls {
            let lower = reason.to_ascii_lowercase();
            if matches!(
                error,
                mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
            ) {
                reason = "the plan requires TLS (`tls:`) but the server does not offer it; \
                          enable TLS on the server or remove `tls:` from the cluster"
                    .to_string();
            } else if lower.contains("certificate") || lower.contains("unknownissuer") {
                let ca = tls.ca_file.as_ref().map_or_else(
                    || "the built-in roots".to_string(),
                    |ca| format!("tls.ca_file {}", ca.display()),
                );
                reason = format!("TLS certificate rejected ({reason}); check {ca}");
            } else if let Some(ca_file) = tls
                .ca_file
                .as_ref()
                .filter(|_| lower.contains("no such file"))
            {
                reason = format!("cannot read tls.ca_file {}: {reason}", ca_file.display());
            }
        }
        MysqlError::Connect {
            cluster: self.name.clone(),
            address: self.address.to_string(),
            reason,
        }
    }

    fn tls_required(&self) -> MysqlError {
        MysqlError::Connect {
            cluster: self.name.clone(),
            address: self.address.to_string(),
            reason: format!(
                "the server accepts only TLS connections (require_secure_transport=ON) and the plan \
                 has none for `{}`: add `tls: {{ ca_file: <the server's CA> }}` to it",
                self.name
            ),
        }
    }

    fn connect_timed_out(&self, after: Duration) -> MysqlError {
        MysqlError::Timeout {
            cluster: self.name.clone(),
            address: self.address.to_string(),
            what: "connect".to_string(),
            after,
        }
    }
}

/// A connection pool to one cluster, sized from the plan (never the crate's 10..100 default).
pub struct ClusterPool {
    pool: mysql_async::Pool,
    endpoint: Endpoint,
}

impl ClusterPool {
    pub fn new(endpoint: Endpoint, max: u32) -> ClusterPool {
        let constraints =
            PoolConstraints::new(0, max.max(1) as usize).expect("0 <= max and max >= 1");
        let opts = endpoint.opts().pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(Duration::from_secs(30)),
        );
        ClusterPool {
            pool: mysql_async::Pool::new(opts),
            endpoint,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A pooled session; it goes back to the pool when dropped.
    pub async fn session(&self) -> Result<Session, MysqlError> {
        match with_timeout(self.endpoint.connect_timeout, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(Session {
                conn,
                endpoint: self.endpoint.clone(),
            }),
            Ok(Err(error)) => Err(self.endpoint.connect_error(error)),
            Err(after) => Err(self.endpoint.connect_timed_out(after)),
        }
    }

    /// Close every pooled connection, waiting at most a second.
    pub async fn close(self) {
        let _ = with_timeout(Duration::from_secs(1), self.pool.disconnect()).await;
    }
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
        /// The server's own error number, when the server refused the statement.
        code: Option<u16>,
    },
}

impl MysqlError {
    /// The cluster (or lab server) the error happened on.
    pub fn cluster(&self) -> &str {
        match self {
            MysqlError::Connect { cluster, .. }
            | MysqlError::Timeout { cluster, .. }
            | MysqlError::Query { cluster, .. } => cluster,
        }
    }

    /// The server's error number, if the server refused a statement.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            MysqlError::Query { code, .. } => *code,
            _ => None,
        }
    }

    /// Whether the server refused a statement with one of `codes`.
    pub fn is_server_error(&self, codes: &[u16]) -> bool {
        self.server_code().is_some_and(|code| codes.contains(&code))
    }

    /// A statement's failure, keeping the server's error number.
    pub fn query(cluster: &str, what: &str, error: &mysql_async::Error) -> MysqlError {
        let code = match error {
            mysql_async::Error::Server(server) => Some(server.code),
            _ => None,
        };
        MysqlError::Query {
            cluster: cluster.to_string(),
            what: what.to_string(),
            reason: error.to_string(),
            code,
        }
    }
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
    /// One unpooled connection (for one-off work such as the lab's setup).
    pub async fn connect(endpoint: &Endpoint) -> Result<Session, MysqlError> {
        match with_timeout(endpoint.connect_timeout, Conn::new(endpoint.opts())).await {
            Ok(Ok(conn)) => Ok(Session {
                conn,
                endpoint: endpoint.clone(),
            }),
            Ok(Err(error)) => Err(endpoint.connect_error(error)),
            Err(after) => Err(endpoint.connect_timed_out(after)),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn failure(&self, what: &str, error: mysql_async::Error) -> MysqlError {
        MysqlError::query(&self.endpoint.name, what, &error)
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
        match with_timeout(limit, self.conn.query::<mysql_async::Row, _>(sql)).await {
            Ok(Ok(rows)) => rows
                .into_iter()
                .map(|row| self.convert(what, row))
                .collect(),
            Ok(Err(error)) => Err(self.failure(what, error)),
            Err(after) => Err(self.timeout(what, after)),
        }
    }

    /// A row as `T`; a row that does not fit (a NULL, a negative number for an
    /// unsigned type) is an error naming the query, not a panic. The values
    /// are not shown: a row may hold a secret (`SHOW GRANTS`).
    fn convert<T: FromRow>(&self, what: &str, row: mysql_async::Row) -> Result<T, MysqlError> {
        T::from_row_opt(row).map_err(|mysql_async::FromRowError(row)| MysqlError::Query {
            cluster: self.endpoint.name.clone(),
            what: what.to_string(),
            reason: format!(
                "a row of {} column(s) does not fit {}",
                row.len(),
                std::any::type_name::<T>()
            ),
            code: None,
        })
    }

    pub async fn query_first<T: FromRow + Send + 'static>(
        &mut self,
        what: &str,
        sql: &str,
    ) -> Result<Option<T>, MysqlError> {
        self.query_first_within(self.endpoint.query_timeout, what, sql)
            .await
    }

    /// Like [`Session::query_first`] with an explicit bound (for server-side waits).
    pub async fn query_first_within<T: FromRow + Send + 'static>(
        &mut self,
        limit: Duration,
        what: &str,
        sql: &str,
    ) -> Result<Option<T>, MysqlError> {
        match with_timeout(limit, self.conn.query_first::<mysql_async::Row, _>(sql)).await {
            Ok(Ok(row)) => row.map(|row| self.convert(what, row)).transpose(),
            Ok(Err(error)) => Err(self.failure(what, error)),
            Err(after) => Err(self.timeout(what, after)),
        }
    }

    /// Run a `LOAD DATA LOCAL INFILE` statement with `data` as the file's contents
    /// (streamed from memory; no file touches the disk).
    pub async fn load_data(
        &mut self,
        what: &str,
        sql: &str,
        data: bytes::Bytes,
    ) -> Result<(), MysqlError> {
        use futures_util::StreamExt;
        self.conn.set_infile_handler(async move {
            Ok(futures_util::stream::once(async move { Ok(data) }).boxed())
        });
        self.exec(what, sql).await
    }

    /// Start a query whose rows are read batch by batch (a table of any size
    /// is never held in memory). Every fetch is bounded by the query timeout.
    pub async fn stream<'a>(
        &'a mut self,
        what: &str,
        sql: &str,
    ) -> Result<RowStream<'a>, MysqlError> {
        let limit = self.endpoint.query_timeout;
        let name = self.endpoint.name.clone();
        let address = self.endpoint.address.to_string();
        let what = what.to_string();
        match with_timeout(limit, self.conn.query_iter(sql.to_string())).await {
            Ok(Ok(result)) => Ok(RowStream {
                result,
                limit,
                name,
                address,
                what,
            }),
            Ok(Err(error)) => Err(MysqlError::query(&name, &what, &error)),
            Err(after) => Err(MysqlError::Timeout {
                cluster: name,
                address,
                what,
                after,
            }),
        }
    }

    /// Close politely, but never wait more than a second for it.
    pub async fn close(self) {
        let _ = with_timeout(Duration::from_secs(1), self.conn.disconnect()).await;
    }
}

/// Rows of one query, fetched in batches.
pub struct RowStream<'a> {
    result: mysql_async::QueryResult<'a, 'static, mysql_async::TextProtocol>,
    limit: Duration,
    name: String,
    address: String,
    what: String,
}

impl RowStream<'_> {
    fn failure(&self, error: mysql_async::Error) -> MysqlError {
        MysqlError::query(&self.name, &self.what, &error)
    }

    fn timeout(&self, after: Duration) -> MysqlError {
        MysqlError::Timeout {
            cluster: self.name.clone(),
            address: self.address.clone(),
            what: self.what.clone(),
            after,
        }
    }

    /// Up to `rows` more rows; `None` once the result is exhausted.
    pub async fn next_batch(
        &mut self,
        rows: usize,
    ) -> Result<Option<Vec<mysql_async::Row>>, MysqlError> {
        let mut batch = Vec::with_capacity(rows);
        while batch.len() < rows {
            match with_timeout(self.limit, self.result.next()).await {
                Ok(Ok(Some(row))) => batch.push(row),
                Ok(Ok(None)) => break,
                Ok(Err(error)) => return Err(self.failure(error)),
                Err(after) => return Err(self.timeout(after)),
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

/// Quote an identifier (a schema, table, column or event name).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
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
