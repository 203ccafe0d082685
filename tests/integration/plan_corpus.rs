//! Every broken plan is refused with exit 2, its message and its line.

use std::time::{Duration, Instant};

use predicates::str::contains;

use crate::harness::{Sandbox, repo_root, stdout_json};

/// (file, expected message fragment, line)
const CORPUS: &[(&str, &str, u64)] = &[
    ("01-duplicate-key.yaml", "duplicate mapping key: host", 11),
    ("02-unknown-field.yaml", "unknown field `usr`", 6),
    ("03-inline-password.yaml", "has a literal `password`", 7),
    ("04-unknown-cluster.yaml", "unknown cluster `c9`", 17),
    ("05-two-sources.yaml", "two sources: `c1` and `legacy`", 9),
    (
        "06-target-is-source.yaml",
        "promote candidate `legacy` is the source",
        17,
    ),
    ("07-bad-duration.yaml", "`10 parsecs` is not a duration", 17),
    ("08-empty-file.yaml", "plan file is empty", 1),
    ("09-non-utf8.yaml", "not valid UTF-8", 1),
    ("10-alias-bomb.yaml", "alias bomb", 6),
    (
        "11-deep-nesting.yaml",
        "nesting is deeper than 32 levels",
        2,
    ),
    ("12-disabled-cluster.yaml", "cluster `c1` is disabled", 19),
    ("13-duplicate-phase.yaml", "duplicate phase name `go`", 18),
    (
        "14-port-out-of-range.yaml",
        "port is 70000, but must be between 1 and 65535",
        6,
    ),
    (
        "15-two-password-sources.yaml",
        "sets both `password_env` and `password_file`",
        7,
    ),
    (
        "16-inline-tsig-secret.yaml",
        "`dns.tsig` has a literal `secret`",
        29,
    ),
    (
        "17-dns-switch-without-dns.yaml",
        "dns_switch needs a `dns` section",
        17,
    ),
    (
        "18-bad-env-name.yaml",
        "is not an environment variable name",
        7,
    ),
    ("19-no-source.yaml", "no source cluster", 1),
    ("20-syntax-error.yaml", "unclosed bracket", 17),
    ("21-wrong-type.yaml", "expected a whole number", 6),
    (
        "22-bad-rollback-mode.yaml",
        "unknown variant `sometimes`",
        15,
    ),
    (
        "23-snapshot-into-source.yaml",
        "snapshot target `legacy` is the source",
        17,
    ),
    (
        "24-crash-drill-without-inject.yaml",
        "needs `inject`: the command that fails the primary",
        25,
    ),
    (
        "25-drill-takes-over-with-its-primary.yaml",
        "drill.dr names `legacy`, the primary being failed",
        26,
    ),
    (
        "26-keep-sessions-with-a-host.yaml",
        "`refunds_app@10.0.0.%` is not an account name",
        16,
    ),
    (
        "27-scope-without-databases.yaml",
        "`scope: databases` fences only the plan's databases, but the plan names none",
        13,
    ),
];

#[test]
fn every_broken_plan_is_refused_with_its_line() {
    let sandbox = Sandbox::new();
    let corpus = repo_root().join("tests/plans/broken");
    let files = std::fs::read_dir(&corpus).unwrap().count();
    assert_eq!(files, CORPUS.len(), "every corpus file has an expectation");
    for (file, message, line) in CORPUS {
        let path = corpus.join(file);
        let human = sandbox
            .cutover()
            .args(["plan", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(human.status.code(), Some(2), "{file}: exit code");
        let stderr = String::from_utf8_lossy(&human.stderr);
        assert!(
            stderr.contains(message),
            "{file}: message `{message}` in:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("{file}:{line}:")),
            "{file}: location line {line} in:\n{stderr}"
        );

        let json = sandbox
            .cutover()
            .args(["plan", "check", "--output", "json"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(json.status.code(), Some(2), "{file}: exit code (json)");
        let document = stdout_json(&json);
        assert_eq!(document["valid"], false, "{file}");
        let errors = document["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|error| error["line"] == *line
                && error["column"].as_u64().unwrap() >= 1
                && error["message"].as_str().unwrap().contains(message)),
            "{file}: JSON errors {errors:?}"
        );
    }
}

#[test]
fn alias_bomb_is_refused_in_under_a_second() {
    let sandbox = Sandbox::new();
    let started = Instant::now();
    sandbox
        .cutover()
        .args(["plan", "check", "tests/plans/broken/10-alias-bomb.yaml"])
        .assert()
        .code(2);
    // Process start included; the parse itself is milliseconds.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_huge_plan_is_refused_before_parsing() {
    let sandbox = Sandbox::new();
    let mut text = String::from("name: huge\ndescription: \"");
    text.push_str(&"x".repeat(1_100_000));
    text.push_str("\"\n");
    let path = sandbox.write("huge.yaml", text);
    sandbox
        .cutover()
        .args(["plan", "check"])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(contains("plans are limited to 1048576 bytes"));
}

#[test]
fn a_missing_plan_file_is_invalid_input() {
    let sandbox = Sandbox::new();
    sandbox
        .cutover()
        .args(["plan", "check", "no/such/plan.yaml"])
        .assert()
        .code(2)
        .stderr(contains("cannot read plan file"));
}

#[test]
fn an_inline_password_is_never_echoed() {
    let sandbox = Sandbox::new();
    for format in ["human", "json"] {
        let output = sandbox
            .cutover()
            .args([
                "plan",
                "check",
                "--output",
                format,
                "tests/plans/broken/03-inline-password.yaml",
            ])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(all.contains("has a literal `password`"), "{all}");
        assert!(all.contains("****") || format == "json", "{all}");
        assert!(!all.contains("hunter2"), "the secret leaked:\n{all}");
    }
}
