//! DNS: RFC 2136 compare-and-swap updates signed with TSIG, and direct
//! queries of one authoritative server (no caching resolver in between).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType, TSigner};

use crate::plan::{DnsRecordType, TsigAlgorithmName};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("DNS server {server}: no answer within {} ms", after.as_millis())]
    Timeout { server: SocketAddr, after: Duration },
    #[error(
        "DNS server {server}: TSIG authentication failed for key `{key}`: the server rejected the signature (check that the secret matches the server's key)"
    )]
    TsigAuth { server: SocketAddr, key: String },
    #[error(
        "DNS server {server} refused the update of {record} ({rcode}): is it signed with a key the zone allows to update?"
    )]
    Refused {
        server: SocketAddr,
        record: String,
        rcode: String,
    },
    #[error(
        "DNS server {server}: {record} is not `{expected}`, so it was not changed (compare-and-swap prerequisite failed: {rcode})"
    )]
    NotExpected {
        server: SocketAddr,
        record: String,
        expected: String,
        rcode: String,
    },
    #[error("DNS server {server}: {reason}")]
    Protocol { server: SocketAddr, reason: String },
    #[error("TSIG key `{key}`: {reason}")]
    BadKey { key: String, reason: String },
    #[error("`{value}` is not a valid {what}")]
    BadName { what: String, value: String },
}

/// A TSIG key as the plan describes it, with its secret resolved.
#[derive(Debug, Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithmName,
    pub secret: Secret,
}

impl TsigKey {
    pub fn signer(&self) -> Result<TSigner, DnsError> {
        let bad = |reason: String| DnsError::BadKey {
            key: self.name.clone(),
            reason,
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.secret.expose().trim())
            .map_err(|_| bad("the secret is not base64 (as `tsig-keygen` prints it)".into()))?;
        let algorithm = match self.algorithm {
            TsigAlgorithmName::HmacSha256 => {
                hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256
            }
            TsigAlgorithmName::HmacSha384 => {
                hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha384
            }
            TsigAlgorithmName::HmacSha512 => {
                hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha512
            }
        };
        let name = Name::from_str(&self.name).map_err(|error| bad(error.to_string()))?;
        TSigner::new(key, algorithm, name, 300).map_err(|error| bad(error.to_string()))
    }
}

/// What one authoritative server answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthoritativeAnswer {
    pub server: SocketAddr,
    pub rcode: String,
    /// The AA bit: the server answered from its own zone data.
    pub authoritative: bool,
    /// Record data of the answers for the asked type, as text (names fully qualified).
    pub values: Vec<String>,
}

fn name(value: &str, what: &str) -> Result<Name, DnsError> {
    Name::from_str(value).map_err(|_| DnsError::BadName {
        what: what.to_string(),
        value: value.to_string(),
    })
}

fn client(
    server: SocketAddr,
    timeout: Duration,
    signer: Option<TSigner>,
) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::new())
        .with_timeout(Some(timeout))
        .with_signer(signer)
        .with_max_retries(1)
        .build();
    let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(background);
    client
}

/// Map transport errors; a failed TSIG check of the response surfaces from
/// hickory as a "truncated HMAC" or verification error and means the server
/// rejected our key.
fn transport_error(
    server: SocketAddr,
    timeout: Duration,
    key: Option<&str>,
    error: impl std::fmt::Display,
) -> DnsError {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    if let Some(key) = key
        && (lower.contains("truncated hmac")
            || lower.contains("tsig")
            || lower.contains("hmac")
            || lower.contains("signature"))
    {
        return DnsError::TsigAuth {
            server,
            key: key.to_string(),
        };
    }
    if lower.contains("timed out") || lower.contains("timeout") {
        return DnsError::Timeout {
            server,
            after: timeout,
        };
    }
    DnsError::Protocol {
        server,
        reason: text,
    }
}

fn rdata_text(rdata: &RData) -> String {
    match rdata {
        RData::A(address) => address.0.to_string(),
        RData::CNAME(target) => target.0.to_ascii().to_ascii_lowercase(),
        other => other.to_string(),
    }
}

/// One unsigned query straight to `server`, bounded by `timeout`.
async fn ask(
    server: SocketAddr,
    name: Name,
    record_type: RecordType,
    timeout: Duration,
) -> Result<hickory_proto::op::DnsResponse, DnsError> {
    let mut client = client(server, timeout, None);
    tokio::time::timeout(timeout, client.query(name, DNSClass::IN, record_type))
        .await
        .map_err(|_| DnsError::Timeout {
            server,
            after: timeout,
        })?
        .map_err(|error| transport_error(server, timeout, None, error))
}

/// Ask one server directly for `record` of `record_type`.
pub async fn query_authoritative(
    server: SocketAddr,
    record: &str,
    record_type: RecordType,
    timeout: Duration,
) -> Result<AuthoritativeAnswer, DnsError> {
    let record_name = name(record, "DNS name")?;
    let response = ask(server, record_name.clone(), record_type, timeout).await?;
    let values = response
        .answers
        .iter()
        .filter(|answer| answer.record_type() == record_type && answer.name == record_name)
        .map(|answer| rdata_text(&answer.data))
        .collect();
    Ok(AuthoritativeAnswer {
        server,
        rcode: response.response_code.to_string(),
        authoritative: response.metadata.authoritative,
        values,
    })
}

/// The zone's SOA serial as one server reports it.
pub async fn soa_serial(
    server: SocketAddr,
    zone: &str,
    timeout: Duration,
) -> Result<u32, DnsError> {
    let response = ask(server, name(zone, "zone")?, RecordType::SOA, timeout).await?;
    serial_of(&response).ok_or_else(|| DnsError::Protocol {
        server,
        reason: format!(
            "no SOA for zone {zone} ({}): is this server authoritative for it?",
            response.response_code
        ),
    })
}

fn serial_of(response: &hickory_proto::op::DnsResponse) -> Option<u32> {
    response
        .answers
        .iter()
        .find_map(|answer| match &answer.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
}

/// One record's identity and type, for updates.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub zone: String,
    pub record: String,
    pub record_type: DnsRecordType,
    pub ttl: u32,
}

fn record_set(spec: &RecordSpec, value: &str) -> Result<RecordSet, DnsError> {
    let record_name = name(&spec.record, "DNS record")?;
    let rdata = match spec.record_type {
        DnsRecordType::A => RData::A(A(value.parse().map_err(|_| DnsError::BadName {
            what: "IPv4 address".into(),
            value: value.to_string(),
        })?)),
        DnsRecordType::Cname => RData::CNAME(CNAME(name(value, "CNAME target")?)),
    };
    Ok(RecordSet::from(Record::from_rdata(
        record_name,
        spec.ttl,
        rdata,
    )))
}

/// RFC 2136 update: replace `current` with `new` only if the record is exactly `current`.
/// With `key: None` the update is sent unsigned.
pub async fn compare_and_swap(
    server: SocketAddr,
    spec: &RecordSpec,
    current: &str,
    new: &str,
    key: Option<&TsigKey>,
    timeout: Duration,
) -> Result<(), DnsError> {
    let signer = key.map(TsigKey::signer).transpose()?;
    let zone = name(&spec.zone, "zone")?;
    let current_set = record_set(spec, current)?;
    let new_set = record_set(spec, new)?;
    let mut client = client(server, timeout, signer);
    let key_name = key.map(|key| key.name.as_str());
    let response =
        tokio::time::timeout(timeout, client.compare_and_swap(current_set, new_set, zone))
            .await
            .map_err(|_| DnsError::Timeout {
                server,
                after: timeout,
            })?
            .map_err(|error| transport_error(server, timeout, key_name, error))?;
    match response.response_code {
        ResponseCode::NoError => Ok(()),
        ResponseCode::NXRRSet | ResponseCode::NXDomain | ResponseCode::YXRRSet => {
            Err(DnsError::NotExpected {
                server,
                record: spec.record.clone(),
                expected: current.to_string(),
                rcode: response.response_code.to_string(),
            })
        }
        ResponseCode::NotAuth
        | ResponseCode::BADSIG
        | ResponseCode::BADKEY
        | ResponseCode::BADTIME
            if key.is_some() =>
        {
            Err(DnsError::TsigAuth {
                server,
                key: key_name.unwrap_or_default().to_string(),
            })
        }
        code => Err(DnsError::Refused {
            server,
            record: spec.record.clone(),
            rcode: code.to_string(),
        }),
    }
}

/// A TSIG-signed SOA query: proves the key is accepted without changing anything.
pub async fn signed_soa_query(
    server: SocketAddr,
    zone: &str,
    key: &TsigKey,
    timeout: Duration,
) -> Result<u32, DnsError> {
    let signer = key.signer()?;
    let mut client = client(server, timeout, Some(signer));
    let response = tokio::time::timeout(
        timeout,
        client.query(name(zone, "zone")?, DNSClass::IN, RecordType::SOA),
    )
    .await
    .map_err(|_| DnsError::Timeout {
        server,
        after: timeout,
    })?
    .map_err(|error| transport_error(server, timeout, Some(&key.name), error))?;
    match response.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NotAuth
        | ResponseCode::BADSIG
        | ResponseCode::BADKEY
        | ResponseCode::BADTIME => {
            return Err(DnsError::TsigAuth {
                server,
                key: key.name.clone(),
            });
        }
        code => {
            return Err(DnsError::Protocol {
                server,
                reason: format!("signed SOA query answered {code}"),
            });
        }
    }
    serial_of(&response).ok_or_else(|| DnsError::Protocol {
        server,
        reason: format!("no SOA for zone {zone}"),
    })
}

/// Every server's answer and serial at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agreement {
    pub answers: Vec<AuthoritativeAnswer>,
    pub serials: Vec<Option<u32>>,
}

impl Agreement {
    /// Every server answers `expected` authoritatively with one serial.
    pub fn agrees_on(&self, expected: &str) -> bool {
        let first = self.serials.first().copied().flatten();
        first.is_some()
            && self.serials.iter().all(|serial| *serial == first)
            && self.answers.iter().all(|answer| {
                answer.authoritative
                    && answer.values.len() == 1
                    && same_value(&answer.values[0], expected)
            })
    }
}

/// Record values compare case-insensitively and with or without the final dot.
pub fn same_value(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Ask every server for `record` and the zone serial, concurrently.
pub async fn poll_servers(
    servers: &[SocketAddr],
    zone: &str,
    record: &str,
    record_type: RecordType,
    timeout: Duration,
) -> Result<Agreement, DnsError> {
    let mut answers = Vec::new();
    let mut serials = Vec::new();
    let queries = servers.iter().map(|server| async move {
        let answer = query_authoritative(*server, record, record_type, timeout).await;
        let serial = soa_serial(*server, zone, timeout).await.ok();
        (answer, serial)
    });
    for (answer, serial) in futures_util::future::join_all(queries).await {
        answers.push(answer?);
        serials.push(serial);
    }
    Ok(Agreement { answers, serials })
}

impl From<crate::plan::DnsRecordType> for RecordType {
    fn from(value: crate::plan::DnsRecordType) -> Self {
        match value {
            crate::plan::DnsRecordType::A => RecordType::A,
            crate::plan::DnsRecordType::Cname => RecordType::CNAME,
        }
    }
}
