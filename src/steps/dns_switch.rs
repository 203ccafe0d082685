//! `dns_switch`: an RFC 2136 compare-and-swap signed with TSIG, then proof
//! that every authoritative server answers the new value with one serial.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Description, StepError, millis};
use crate::dns::{self, RecordSpec};
use crate::plan::{DnsConfig, ValidatedPlan};
use crate::steps::context::Context;

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

/// What `dns_switch` journals: the record moved from one cluster's value to
/// another's (the inverse moves it back), and how long the servers took.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSwitchObserved {
    pub record: String,
    pub from: String,
    pub to: String,
    pub old_value: String,
    pub new_value: String,
    pub serial: Option<u32>,
    pub verified_on: Vec<String>,
    pub verify_ms: u64,
}

pub async fn act(
    ctx: &mut Context,
    to: &str,
    wait_ttl: bool,
    verify_timeout: Duration,
) -> Result<DnsSwitchObserved, StepError> {
    let from = ctx.state.dns_points_to.clone();
    let observed = switch(ctx, &from, to, verify_timeout).await?;
    if wait_ttl && let Some(dns) = &ctx.plan.dns {
        tracing::info!("waiting out the record's TTL ({} s)", dns.ttl);
        tokio::time::sleep(Duration::from_secs(u64::from(dns.ttl))).await;
    }
    Ok(observed)
}

/// Point the record at `to`'s value if it holds `from`'s, then verify.
pub async fn switch(
    ctx: &mut Context,
    from: &str,
    to: &str,
    verify_timeout: Duration,
) -> Result<DnsSwitchObserved, StepError> {
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
    Ok(DnsSwitchObserved {
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

pub async fn undo(
    ctx: &mut Context,
    observed: &DnsSwitchObserved,
    verify_timeout: Duration,
) -> Result<(), StepError> {
    if observed.from.is_empty() || observed.to.is_empty() {
        return Ok(());
    }
    switch(ctx, &observed.to, &observed.from, verify_timeout).await?;
    Ok(())
}

/// `from`: the cluster the record names when the step starts.
pub fn describe(
    plan: &ValidatedPlan,
    from: &str,
    to: &str,
    wait_ttl: bool,
    verify_timeout: Duration,
) -> Description {
    let Some(dns) = &plan.dns else {
        return Description {
            cluster: "-".into(),
            action: "dns_switch without a dns section".into(),
            commands: vec![],
            verify: vec![],
            inverse: "-".into(),
        };
    };
    let from_value = dns.values.get(from).cloned().unwrap_or_default();
    let to_value = dns.values.get(to).cloned().unwrap_or_default();
    let servers = dns
        .authoritative
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Description {
        cluster: dns.update_server.to_string(),
        action: format!(
            "switch {} from {from_value} to {to_value} (compare-and-swap, TSIG `{}`), verified on {servers} within {} ms{}",
            dns.record,
            dns.tsig.name,
            verify_timeout.as_millis(),
            if wait_ttl { ", then wait one TTL" } else { "" }
        ),
        commands: vec![format!(
            "nsupdate -y hmac-sha256:{}:<secret> <<EOF\nserver {} {}\nzone {}\nprereq yxrrset {} {:?} {from_value}\nupdate delete {} {:?}\nupdate add {} {} {:?} {to_value}\nsend\nEOF",
            dns.tsig.name,
            dns.update_server.ip(),
            dns.update_server.port(),
            dns.zone,
            dns.record,
            dns.record_type,
            dns.record,
            dns.record_type,
            dns.record,
            dns.ttl,
            dns.record_type
        )
        .replace("Cname", "CNAME")],
        verify: dns
            .authoritative
            .iter()
            .map(|server| {
                format!(
                    "dig +norec @{} -p {} {} → {to_value} with the aa flag; dig @{} -p {} {} SOA: same serial everywhere",
                    server.ip(),
                    server.port(),
                    dns.record,
                    server.ip(),
                    server.port(),
                    dns.zone
                )
            })
            .collect(),
        inverse: format!("the same compare-and-swap back: {to_value} → {from_value}"),
    }
}

impl super::StepBehaviour for crate::plan::kinds::DnsSwitch {
    type Observed = DnsSwitchObserved;

    async fn act(
        &self,
        ctx: &mut crate::steps::context::Context,
    ) -> Result<DnsSwitchObserved, StepError> {
        act(ctx, &self.to, self.wait_ttl, self.verify_timeout).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        observed: &DnsSwitchObserved,
    ) -> Result<(), StepError> {
        undo(ctx, observed, self.verify_timeout).await
    }

    fn describe(
        &self,
        plan: &crate::plan::ValidatedPlan,
        state: &crate::steps::context::SwitchState,
    ) -> Description {
        describe(
            plan,
            &state.dns_points_to,
            &self.to,
            self.wait_ttl,
            self.verify_timeout,
        )
    }

    fn needs(&self, plan: &crate::plan::ValidatedPlan, needs: &mut super::PrecheckNeeds) {
        needs.dns_switch |= plan.dns.is_some();
    }

    fn establishes(&self) -> crate::plan::Established {
        crate::plan::Established::Dns
    }

    async fn live_fact(&self, plan: &crate::plan::ValidatedPlan) -> Option<String> {
        current_answer(plan).await
    }

    fn is_mutating(&self) -> bool {
        true
    }
}

/// What the authoritative server answers for the record now, with its zone's
/// serial: the dry run's live fact for a DNS switch.
async fn current_answer(plan: &ValidatedPlan) -> Option<String> {
    let config = plan.dns.as_ref()?;
    let answer = dns::query_authoritative(
        config.update_server,
        &config.record,
        config.record_type.into(),
        Duration::from_millis(1500),
    )
    .await
    .ok()?;
    let serial = dns::soa_serial(
        config.update_server,
        &config.zone,
        Duration::from_millis(1500),
    )
    .await
    .ok();
    Some(format!(
        "{} = {:?} at {} (serial {})",
        config.record,
        answer.values,
        config.update_server,
        serial.map_or("?".into(), |s| s.to_string())
    ))
}

// How it is written in a plan, and checked.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSwitchStep {
    #[serde(default)]
    pub name: Option<crate::plan::Located<String>>,
    pub to: crate::plan::Located<String>,
    /// Wait one TTL after the switch is verified.
    #[serde(default)]
    pub wait_ttl: Option<bool>,
    #[serde(default)]
    pub verify_timeout: Option<crate::plan::Located<crate::plan::model::HumanDuration>>,
}

impl crate::plan::KindSyntax for crate::plan::kinds::DnsSwitch {
    type Raw = DnsSwitchStep;

    fn explicit_name(raw: &Self::Raw) -> Option<&crate::plan::Located<String>> {
        raw.name.as_ref()
    }

    fn check(raw: Self::Raw, c: &mut dyn crate::plan::StepCheck) -> Self {
        let to = c.enabled_cluster(&raw.to);
        c.dns_target(&raw.to, "dns_switch");
        crate::plan::kinds::DnsSwitch {
            to,
            wait_ttl: raw.wait_ttl.unwrap_or(false),
            verify_timeout: c.optional_duration(
                raw.verify_timeout.as_ref(),
                c.gates().dns_verify_timeout,
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(3600),
                "dns_switch verify_timeout",
            ),
        }
    }
}
