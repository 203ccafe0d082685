//! Precheck: what each target's replication carries against what the plan's
//! links will carry (its databases and the orchestrator's own). A filter is
//! set on every link the orchestrator starts, but neither server keeps one
//! across a restart, and one set by hand may drop a database the plan moves.

use super::check::{CheckStatus, Precheck};
use crate::mysql::{Endpoint, Session, control, server};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;

/// Does a `replicate_wild_do_table` pattern (`db.table`, `%` and `_`
/// wildcards, `\` escapes) take every table of `database`?
fn takes_database(pattern: &str, database: &str) -> bool {
    let Some((db, table)) = split_pattern(pattern) else {
        return false;
    };
    table == "%" && like(&db, database)
}

/// `db` and `table` parts at the first unescaped dot, escapes kept.
fn split_pattern(pattern: &str) -> Option<(String, String)> {
    let mut escaped = false;
    for (i, c) in pattern.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '.' if !escaped => return Some((pattern[..i].into(), pattern[i + 1..].into())),
            _ => escaped = false,
        }
    }
    None
}

/// SQL `LIKE` with `\` escapes.
fn like(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            '%' => Token::Any,
            '_' => Token::One,
            other => Token::Char(other),
        });
    }
    fn matches(p: &[Token], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(Token::Any) => matches(&p[1..], t) || (!t.is_empty() && matches(p, &t[1..])),
            Some(Token::One) => !t.is_empty() && matches(&p[1..], &t[1..]),
            Some(Token::Char(c)) => t.first() == Some(c) && matches(&p[1..], &t[1..]),
        }
    }
    let text: Vec<char> = text.chars().collect();
    matches(&tokens, &text)
}

/// The verdict on one target's filter.
fn judge(has: &[String], needs: &[String], databases: &[String]) -> (CheckStatus, String) {
    let shown = |patterns: &[String]| {
        if patterns.is_empty() {
            "every database".to_string()
        } else {
            patterns.join(", ")
        }
    };
    if has == needs {
        return (CheckStatus::Pass, format!("carries {}", shown(has)));
    }
    let dropped: Vec<&String> = databases
        .iter()
        .filter(|db| !has.is_empty() && !has.iter().any(|p| takes_database(p, db)))
        .collect();
    if !dropped.is_empty() {
        return (
            CheckStatus::Fail,
            format!(
                "its replication filter ({}) drops {}, which the plan moves; the plan's links carry {}",
                has.join(", "),
                dropped
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                shown(needs)
            ),
        );
    }
    (
        CheckStatus::Warn,
        format!(
            "carries {} now; the links the plan starts carry {} (set when it points replication)",
            shown(has),
            shown(needs)
        ),
    )
}

/// One check per reachable target.
pub async fn checks(
    plan: &ValidatedPlan,
    targets: &[String],
) -> Result<Vec<Precheck>, SecretError> {
    let needs = control::replicated_tables(plan.databases.as_deref());
    let databases = plan.databases.clone().unwrap_or_default();
    let mut out = Vec::new();
    for name in targets {
        let Some(cluster) = plan.cluster(name) else {
            continue;
        };
        let Ok(mut session) = Session::connect(&Endpoint::for_cluster(cluster)?).await else {
            continue;
        };
        let read = async {
            let flavor = server::facts(&mut session).await?.flavor;
            control::replication_filter(&mut session, flavor).await
        }
        .await;
        session.close().await;
        let (status, detail) = match read {
            Ok(has) => judge(&has, &needs, &databases),
            Err(error) => (CheckStatus::Fail, error.to_string()),
        };
        out.push(Precheck {
            cluster: name.clone(),
            check: "replication filter".into(),
            status,
            detail,
            phase: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_take_whole_databases_only() {
        assert!(takes_database("refunds.%", "refunds"));
        assert!(takes_database("ref%.%", "refunds"));
        assert!(!takes_database("refunds.t%", "refunds"));
        assert!(takes_database("pay\\_out.%", "pay_out"));
        assert!(!takes_database("pay\\_out.%", "payXout"));
        assert!(takes_database("pay_out.%", "payXout"));
    }

    #[test]
    fn a_filter_that_drops_a_plan_database_fails() {
        let needs = strings(&["cutover.%", "cutover\\_probe.%", "refunds.%"]);
        let databases = strings(&["refunds"]);
        assert_eq!(judge(&needs, &needs, &databases).0, CheckStatus::Pass);
        assert_eq!(judge(&[], &needs, &databases).0, CheckStatus::Warn);
        let (status, detail) = judge(&strings(&["bars.%"]), &needs, &databases);
        assert_eq!(status, CheckStatus::Fail);
        assert!(detail.contains("drops `refunds`"), "{detail}");
    }
}
