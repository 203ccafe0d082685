//! Switch the plan's DNS record from one cluster to another and prove every
//! authoritative server answers it: the `dns_switch` step and a drill's
//! failover.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dns::{self, RecordSpec};
use crate::plan::DnsConfig;
use crate::steps::context::Context;
use crate::steps::{StepError, millis};

const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

fn config(ctx: &Context) -> Result<DnsConfig, StepError> {
    ctx.plan
        .dns
        .clone()
        .ok_or_else(|| StepError::Failed("dns_switch needs the plan's `dns` section".into()))
}

fn value_for(dns: &DnsConfig, cluster: &str) -> Result<String, StepError> {
    dns.values.get(cluster).cloned().ok_or_else(|| {
        StepError::Failed(format!("`dns.values` has no value for cluster `{cluster}`"))
    })
}

/// A record moved from one cluster's value to another's (moving it back
/// undoes it), and how long the authoritative servers took to agree.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Switched {
    pub record: String,
    pub from: String,
    pub to: String,
    pub old_value: String,
    pub new_value: String,
    pub serial: Option<u32>,
    pub verified_on: Vec<String>,
    pub verify_ms: u64,
}

/// Point the record at `to`'s value if it holds `from`'s, then verify.
pub async fn switch(
    ctx: &mut Context,
    from: &str,
    to: &str,
    verify_timeout: Duration,
) -> Result<Switched, StepError> {
    let dns = config(ctx)?;
    let old_value = value_for(&dns, from)?;
    let new_value = value_for(&dns, to)?;
    let key = ctx.tsig_key()?;
    let spec = RecordSpec {
        zone: dns.zone.clone(),
        record: dns.record.clone(),
        record_type: dns.record_type,
        ttl: dns.ttl,
    };
    let record_type = dns.record_type.into();
    let current =
        dns::query_authoritative(dns.update_server, &dns.record, record_type, QUERY_TIMEOUT)
            .await?;
    let already = current.values.len() == 1 && dns::same_value(&current.values[0], &new_value);
    if !already {
        // The server checks the prerequisite atomically; this read only makes
        // the refusal name what it found.
        if let Err(error) = dns::compare_and_swap(
            dns.update_server,
            &spec,
            &old_value,
            &new_value,
            key.as_ref(),
            QUERY_TIMEOUT * 3,
        )
        .await
        {
            ctx.audit(
                &dns.update_server.to_string(),
                &format!("UPDATE {} {old_value} → {new_value}", dns.record),
                &error.to_string(),
            )
            .await;
            return Err(match error {
                dns::DnsError::NotExpected { .. } => StepError::Refused(format!(
                    "{error}; it holds {:?}. Someone else changed it: check the record before retrying",
                    current.values
                )),
                other => StepError::Dns(other),
            });
        }
        ctx.audit(
            &dns.update_server.to_string(),
            &format!(
                "UPDATE {} {old_value} → {new_value} (RFC 2136 compare-and-swap, TSIG)",
                dns.record
            ),
            "ok",
        )
        .await;
    }
    let started = Instant::now();
    let agreement = verify(&dns, &new_value, verify_timeout).await?;
    ctx.state.dns_points_to = to.to_string();
    Ok(Switched {
        record: dns.record.clone(),
        from: from.to_string(),
        to: to.to_string(),
        old_value,
        new_value,
        serial: agreement.serials.first().copied().flatten(),
        verified_on: dns.authoritative.iter().map(ToString::to_string).collect(),
        verify_ms: millis(started.elapsed()),
    })
}

/// Poll every authoritative server until all answer `expected` with one serial.
pub async fn verify(
    dns: &DnsConfig,
    expected: &str,
    limit: Duration,
) -> Result<dns::Agreement, StepError> {
    let deadline = Instant::now() + limit;
    let mut last: Option<String>;
    loop {
        match dns::poll_servers(
            &dns.authoritative,
            &dns.zone,
            &dns.record,
            dns.record_type.into(),
            QUERY_TIMEOUT,
        )
        .await
        {
            Ok(agreement) if agreement.agrees_on(expected) => return Ok(agreement),
            Ok(agreement) => {
                last = Some(
                    agreement
                        .answers
                        .iter()
                        .zip(&agreement.serials)
                        .map(|(answer, serial)| {
                            format!(
                                "{} answers {:?} (aa={}, serial {})",
                                answer.server,
                                answer.values,
                                answer.authoritative,
                                serial.map_or("?".into(), |s| s.to_string())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            }
            Err(error) => last = Some(error.to_string()),
        }
        if Instant::now() >= deadline {
            return Err(StepError::Failed(format!(
                "DNS: not every authoritative server answers {} = {expected} within {} ms: {}",
                dns.record,
                limit.as_millis(),
                last.unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
