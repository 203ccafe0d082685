//! `dns_switch`: an RFC 2136 compare-and-swap signed with TSIG, then proof
//! that every authoritative server answers the new value with one serial.

use std::time::Duration;

use super::server_ops::dns::{Switched, switch};
use super::{Description, StepError};
use crate::dns;
use crate::plan::ValidatedPlan;
use crate::steps::context::Context;

pub async fn act(
    ctx: &mut Context,
    to: &str,
    wait_ttl: bool,
    verify_timeout: Duration,
) -> Result<Switched, StepError> {
    let from = ctx.state.dns_points_to.clone();
    let observed = switch(ctx, &from, to, verify_timeout).await?;
    if wait_ttl && let Some(dns) = &ctx.plan.dns {
        tracing::info!("waiting out the record's TTL ({} s)", dns.ttl);
        tokio::time::sleep(Duration::from_secs(u64::from(dns.ttl))).await;
    }
    Ok(observed)
}

pub async fn undo(
    ctx: &mut Context,
    observed: &Switched,
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
    type Observed = Switched;

    fn time_bound(&self, _plan: &crate::plan::ValidatedPlan) -> std::time::Duration {
        self.verify_timeout
    }

    async fn act(&self, ctx: &mut crate::steps::context::Context) -> Result<Switched, StepError> {
        act(ctx, &self.to, self.wait_ttl, self.verify_timeout).await
    }

    async fn undo(
        &self,
        ctx: &mut crate::steps::context::Context,
        observed: &Switched,
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
