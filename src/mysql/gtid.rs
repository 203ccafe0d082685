//! GTID sets for both flavors, with one algebra.
//!
//! A set maps an *origin* to the sequence numbers it holds from that origin:
//! - MySQL: origin = source UUID (plus an optional tag, 8.3+), numbers are
//!   explicit intervals: `3e11fa47-…:1-5:7-9`.
//! - MariaDB: origin = (domain, server id). A position `0-10-500` means "every
//!   transaction server 10 logged in domain 0 up to sequence 500": the prefix
//!   `1..=500`. Under `gtid_strict_mode` a server applies each domain in order,
//!   so the prefix is exact for what it holds. Subtracting can leave a range
//!   that does not start at 1; that prints as `0-10-501..900`.
//!
//! Union, subtract and contains are plain set operations on these, which is
//! what MySQL's `GTID_SUBTRACT`/`GTID_SUBSET` compute.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mariadb,
    Mysql,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Mariadb => "mariadb",
            Flavor::Mysql => "mysql",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Mariadb {
        domain: u32,
        server: u32,
    },
    /// UUID in lowercase; tag in lowercase.
    Mysql {
        uuid: String,
        tag: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flavor} GTID set near `{near}`: {reason}")]
pub struct GtidError {
    pub flavor: Flavor,
    pub near: String,
    pub reason: &'static str,
}

/// Sorted, disjoint, non-adjacent inclusive ranges of sequence numbers ≥ 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(u64, u64)>);

impl Intervals {
    pub fn single(start: u64, end: u64) -> Intervals {
        debug_assert!(1 <= start && start <= end);
        Intervals(vec![(start, end)])
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|(start, end)| end - start + 1).sum()
    }

    pub fn last(&self) -> Option<u64> {
        self.0.last().map(|&(_, end)| end)
    }

    pub fn contains_seq(&self, seq: u64) -> bool {
        self.0
            .binary_search_by(|&(start, end)| {
                if end < seq {
                    std::cmp::Ordering::Less
                } else if start > seq {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    fn insert(&mut self, start: u64, end: u64) {
        self.0.push((start, end));
        self.normalise();
    }

    fn normalise(&mut self) {
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(start, end) in &self.0 {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.0 = merged;
    }

    pub fn union(&self, other: &Intervals) -> Intervals {
        let mut out = Intervals([self.0.as_slice(), other.0.as_slice()].concat());
        out.normalise();
        out
    }

    pub fn subtract(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        let mut cuts = other.0.iter().peekable();
        for &(mut start, end) in &self.0 {
            while let Some(&&(cut_start, cut_end)) = cuts.peek() {
                if cut_end < start {
                    cuts.next();
                    continue;
                }
                if cut_start > end {
                    break;
                }
                if cut_start > start {
                    out.push((start, cut_start - 1));
                }
                if cut_end >= end {
                    start = end + 1;
                    break;
                }
                start = cut_end + 1;
                cuts.next();
            }
            if start <= end {
                out.push((start, end));
            }
        }
        Intervals(out)
    }

    pub fn intersect(&self, other: &Intervals) -> Intervals {
        self.subtract(&self.subtract(other))
    }

    pub fn is_superset(&self, other: &Intervals) -> bool {
        other.subtract(self).is_empty()
    }
}

/// A GTID set of one flavor (origins of both kinds may coexist only if built by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    origins: BTreeMap<Origin, Intervals>,
}

impl GtidSet {
    pub fn new() -> GtidSet {
        GtidSet::default()
    }

    pub fn parse(flavor: Flavor, text: &str) -> Result<GtidSet, GtidError> {
        match flavor {
            Flavor::Mariadb => parse_mariadb(text),
            Flavor::Mysql => parse_mysql(text),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    pub fn origins(&self) -> impl Iterator<Item = (&Origin, &Intervals)> {
        self.origins.iter()
    }

    /// Number of transactions in the set (for MySQL; for MariaDB this counts
    /// sequence numbers, which over-counts when servers interleave in a domain).
    pub fn count(&self) -> u64 {
        self.origins.values().map(Intervals::len).sum()
    }

    pub fn add(&mut self, origin: Origin, start: u64, end: u64) {
        if start == 0 || start > end {
            return;
        }
        self.origins.entry(origin).or_default().insert(start, end);
    }

    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        for (origin, intervals) in &other.origins {
            let merged = match out.origins.get(origin) {
                Some(mine) => mine.union(intervals),
                None => intervals.clone(),
            };
            out.origins.insert(origin.clone(), merged);
        }
        out
    }

    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::new();
        for (origin, intervals) in &self.origins {
            let left = match other.origins.get(origin) {
                Some(theirs) => intervals.subtract(theirs),
                None => intervals.clone(),
            };
            if !left.is_empty() {
                out.origins.insert(origin.clone(), left);
            }
        }
        out
    }

    /// The transactions whose origin `keep` accepts.
    pub fn filter_origins(&self, keep: impl Fn(&Origin) -> bool) -> GtidSet {
        GtidSet {
            origins: self
                .origins
                .iter()
                .filter(|(origin, _)| keep(origin))
                .map(|(origin, intervals)| (origin.clone(), intervals.clone()))
                .collect(),
        }
    }

    pub fn intersect(&self, other: &GtidSet) -> GtidSet {
        self.subtract(&self.subtract(other))
    }

    /// Every transaction of `other` is in `self`.
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.subtract(self).is_empty()
    }

    /// The highest sequence number per MariaDB domain.
    fn domain_heads(&self) -> BTreeMap<u32, u64> {
        let mut heads = BTreeMap::new();
        for (origin, intervals) in &self.origins {
            if let (Origin::Mariadb { domain, .. }, Some(last)) = (origin, intervals.last()) {
                let head = heads.entry(*domain).or_insert(0);
                *head = last.max(*head);
            }
        }
        heads
    }
}

/// Transactions the source has executed that the replica has not.
///
/// MySQL: exact (the size of `source − replica`). MariaDB: per domain, the
/// source's highest sequence minus the replica's, which counts transactions
/// exactly when a domain's history is linear (what strict mode enforces).
pub fn transactions_behind(flavor: Flavor, replica: &GtidSet, source: &GtidSet) -> u64 {
    match flavor {
        Flavor::Mysql => source.subtract(replica).count(),
        Flavor::Mariadb => {
            let replica_heads = replica.domain_heads();
            source
                .domain_heads()
                .iter()
                .map(|(domain, head)| {
                    head.saturating_sub(replica_heads.get(domain).copied().unwrap_or(0))
                })
                .sum()
        }
    }
}

/// Errant transactions: what the replica holds that its source never had.
pub fn errant(replica: &GtidSet, source: &GtidSet) -> GtidSet {
    replica.subtract(source)
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut separator = |f: &mut fmt::Formatter<'_>| {
            if !std::mem::take(&mut first) {
                f.write_str(",")?;
            }
            Ok::<(), fmt::Error>(())
        };
        for (origin, intervals) in &self.origins {
            match origin {
                Origin::Mariadb { domain, server } => {
                    for &(start, end) in intervals.ranges() {
                        separator(f)?;
                        if start == 1 {
                            write!(f, "{domain}-{server}-{end}")?;
                        } else {
                            write!(f, "{domain}-{server}-{start}..{end}")?;
                        }
                    }
                }
                Origin::Mysql { uuid, tag } => {
                    separator(f)?;
                    f.write_str(uuid)?;
                    if let Some(tag) = tag {
                        write!(f, ":{tag}")?;
                    }
                    for &(start, end) in intervals.ranges() {
                        if start == end {
                            write!(f, ":{start}")?;
                        } else {
                            write!(f, ":{start}-{end}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn error(flavor: Flavor, near: &str, reason: &'static str) -> GtidError {
    GtidError {
        flavor,
        near: near.chars().take(60).collect(),
        reason,
    }
}

fn parse_mariadb(text: &str) -> Result<GtidSet, GtidError> {
    let flavor = Flavor::Mariadb;
    let mut set = GtidSet::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let mut parts = item.splitn(3, '-');
        let (Some(domain), Some(server), Some(seq)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(error(flavor, item, "expected domain-server-sequence"));
        };
        let domain = domain
            .parse()
            .map_err(|_| error(flavor, item, "the domain id is not a number"))?;
        let server = server
            .parse()
            .map_err(|_| error(flavor, item, "the server id is not a number"))?;
        let (start, end) = match seq.split_once("..") {
            Some((start, end)) => (
                start
                    .parse()
                    .map_err(|_| error(flavor, item, "the sequence is not a number"))?,
                end.parse()
                    .map_err(|_| error(flavor, item, "the sequence is not a number"))?,
            ),
            None => {
                let end: u64 = seq
                    .parse()
                    .map_err(|_| error(flavor, item, "the sequence is not a number"))?;
                // Sequence 0 means "nothing yet" (a fresh server's position).
                if end == 0 {
                    continue;
                }
                (1, end)
            }
        };
        if start > end || start == 0 {
            return Err(error(flavor, item, "the range is empty"));
        }
        set.add(Origin::Mariadb { domain, server }, start, end);
    }
    Ok(set)
}

fn parse_mysql(text: &str) -> Result<GtidSet, GtidError> {
    let flavor = Flavor::Mysql;
    let mut set = GtidSet::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let mut fields = item.split(':');
        let uuid = fields.next().unwrap_or_default().trim();
        if !is_uuid(uuid) {
            return Err(error(flavor, item, "expected a server UUID"));
        }
        let uuid = uuid.to_ascii_lowercase();
        let mut tag = None;
        let mut any = false;
        for field in fields {
            let field = field.trim();
            if field.starts_with(|c: char| c.is_ascii_digit()) {
                let (start, end) = match field.split_once('-') {
                    Some((start, end)) => (start.parse(), end.parse()),
                    None => (field.parse(), field.parse()),
                };
                let (Ok(start), Ok(end)) = (start, end) else {
                    return Err(error(flavor, item, "an interval is not `N` or `N-M`"));
                };
                if start == 0 || start > end {
                    return Err(error(flavor, item, "an interval is empty or starts at 0"));
                }
                set.add(
                    Origin::Mysql {
                        uuid: uuid.clone(),
                        tag: tag.clone(),
                    },
                    start,
                    end,
                );
                any = true;
            } else if is_tag(field) {
                tag = Some(field.to_ascii_lowercase());
            } else {
                return Err(error(flavor, item, "expected an interval or a tag"));
            }
        }
        if !any {
            return Err(error(flavor, item, "a UUID without intervals"));
        }
    }
    Ok(set)
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_tag(text: &str) -> bool {
    let mut bytes = text.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && text.len() <= 32
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn mysql(text: &str) -> GtidSet {
        GtidSet::parse(Flavor::Mysql, text).unwrap()
    }

    fn mariadb(text: &str) -> GtidSet {
        GtidSet::parse(Flavor::Mariadb, text).unwrap()
    }

    // Expected values are the outputs the MySQL 8.0 reference manual documents
    // for GTID_SUBTRACT and GTID_SUBSET ("Functions Used with GTIDs").
    #[test]
    fn mysql_subtract_matches_the_manual() {
        let all = mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:21-57");
        let one = mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:21");
        assert_eq!(all.subtract(&one).to_string(), format!("{A}:22-57"));
        let many = mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:20-25");
        assert_eq!(all.subtract(&many).to_string(), format!("{A}:26-57"));
        let middle = mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:23-24");
        assert_eq!(
            all.subtract(&middle).to_string(),
            format!("{A}:21-22:25-57")
        );
    }

    #[test]
    fn mysql_subset_matches_the_manual() {
        let all = mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:21-57");
        assert!(all.contains(&mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:23-25")));
        assert!(!all.contains(&mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:20-25")));
    }

    #[test]
    fn mysql_parses_multi_line_executed_sets_and_tags() {
        let text = format!("{A}:1-5:7-9,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-3,\n{A}:etl:1-2");
        let set = mysql(&text);
        assert_eq!(set.count(), 5 + 3 + 3 + 2);
        assert_eq!(mysql(&set.to_string()), set);
        assert!(set.to_string().contains(&format!("{A}:etl:1-2")));
        // Adjacent and overlapping intervals merge, as the server prints them.
        assert_eq!(
            mysql(&format!("{A}:1-3:4-6:5-9")).to_string(),
            format!("{A}:1-9")
        );
        assert_eq!(mysql("").to_string(), "");
    }

    #[test]
    fn malformed_sets_name_the_bad_part() {
        let error = GtidSet::parse(Flavor::Mysql, "nonsense:1-2").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid mysql GTID set near `nonsense:1-2`: expected a server UUID"
        );
        assert!(GtidSet::parse(Flavor::Mysql, &format!("{A}:5-2")).is_err());
        assert!(GtidSet::parse(Flavor::Mysql, &format!("{A}:0-2")).is_err());
        assert!(GtidSet::parse(Flavor::Mysql, A).is_err());
        assert!(GtidSet::parse(Flavor::Mariadb, "0-1").is_err());
        assert!(GtidSet::parse(Flavor::Mariadb, "0-x-5").is_err());
    }

    #[test]
    fn mariadb_positions_are_prefixes() {
        let state = mariadb("0-10-10000,0-13-10001,1-10-7");
        assert!(state.contains(&mariadb("0-10-9999")));
        assert!(!state.contains(&mariadb("0-10-10001")));
        assert_eq!(state.to_string(), "0-10-10000,0-13-10001,1-10-7");
        assert_eq!(mariadb("0-10-0"), GtidSet::new());
    }

    #[test]
    fn mariadb_errant_transaction_on_a_replica() {
        // c3 (server 13) took a direct write while replicating from legacy (server 10).
        let source = mariadb("0-10-10000");
        let replica = mariadb("0-10-10000,0-13-10001");
        assert_eq!(errant(&replica, &source).to_string(), "0-13-10001");
        assert!(errant(&source, &replica).is_empty());
        // A replica that was once the primary for a while: only what came after is errant.
        let source = mariadb("0-10-900,0-13-500");
        let replica = mariadb("0-10-900,0-13-510");
        let found = errant(&replica, &source);
        assert_eq!(found.to_string(), "0-13-501..510");
        assert_eq!(mariadb(&found.to_string()), found);
    }

    #[test]
    fn transactions_behind_for_both_flavors() {
        let source = mariadb("0-10-10050,1-10-3");
        let replica = mariadb("0-10-10000");
        assert_eq!(transactions_behind(Flavor::Mariadb, &replica, &source), 53);
        assert_eq!(transactions_behind(Flavor::Mariadb, &source, &replica), 0);
        let source = mysql(&format!("{A}:1-100"));
        let replica = mysql(&format!("{A}:1-90:95"));
        assert_eq!(transactions_behind(Flavor::Mysql, &replica, &source), 9);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        const UUIDS: [&str; 3] = [
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            "4e11fa47-71ca-11e1-9e33-c80aa9429562",
            "5e11fa47-71ca-11e1-9e33-c80aa9429562",
        ];

        /// A set as explicit (origin index, sequence) pairs: the reference model.
        fn model() -> impl Strategy<Value = BTreeSet<(usize, u64)>> {
            proptest::collection::btree_set((0..3_usize, 1..40_u64), 0..60)
        }

        fn build(model: &BTreeSet<(usize, u64)>) -> GtidSet {
            let mut set = GtidSet::new();
            for &(origin, seq) in model {
                set.add(
                    Origin::Mysql {
                        uuid: UUIDS[origin].to_string(),
                        tag: None,
                    },
                    seq,
                    seq,
                );
            }
            set
        }

        proptest! {
            #[test]
            fn operations_agree_with_plain_set_arithmetic(a in model(), b in model()) {
                let (set_a, set_b) = (build(&a), build(&b));
                let union: BTreeSet<_> = a.union(&b).copied().collect();
                let difference: BTreeSet<_> = a.difference(&b).copied().collect();
                let common: BTreeSet<_> = a.intersection(&b).copied().collect();
                prop_assert_eq!(set_a.union(&set_b), build(&union));
                prop_assert_eq!(set_a.subtract(&set_b), build(&difference));
                prop_assert_eq!(set_a.intersect(&set_b), build(&common));
                prop_assert_eq!(set_a.contains(&set_b), b.is_subset(&a));
                prop_assert_eq!(set_a.count(), a.len() as u64);
                prop_assert_eq!(
                    transactions_behind(Flavor::Mysql, &set_b, &set_a),
                    difference.len() as u64
                );
            }

            #[test]
            fn mysql_format_round_trips(a in model()) {
                let set = build(&a);
                prop_assert_eq!(GtidSet::parse(Flavor::Mysql, &set.to_string()).unwrap(), set);
            }

            #[test]
            fn mariadb_format_round_trips_after_subtract(
                heads in proptest::collection::vec((0..3_u32, 10..13_u32, 1..500_u64), 0..6),
                cuts in proptest::collection::vec((0..3_u32, 10..13_u32, 1..500_u64), 0..6),
            ) {
                let text = |items: &[(u32, u32, u64)]| items
                    .iter()
                    .map(|(d, s, n)| format!("{d}-{s}-{n}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let a = GtidSet::parse(Flavor::Mariadb, &text(&heads)).unwrap();
                let b = GtidSet::parse(Flavor::Mariadb, &text(&cuts)).unwrap();
                let left = a.subtract(&b);
                prop_assert_eq!(GtidSet::parse(Flavor::Mariadb, &left.to_string()).unwrap(), left.clone());
                prop_assert!(a.contains(&left));
                prop_assert!(left.intersect(&b).is_empty());
                prop_assert_eq!(left.union(&a.intersect(&b)), a);
            }

            #[test]
            fn union_is_a_semilattice(a in model(), b in model(), c in model()) {
                let (a, b, c) = (build(&a), build(&b), build(&c));
                prop_assert_eq!(a.union(&b), b.union(&a));
                prop_assert_eq!(a.union(&b).union(&c), a.union(&b.union(&c)));
                prop_assert_eq!(a.union(&a), a.clone());
                prop_assert!(a.union(&b).contains(&a));
            }
        }
    }
}
