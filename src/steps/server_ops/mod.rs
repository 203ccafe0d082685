//! Server operations that step kinds and drills share: each is one thing done
//! to a server or to DNS, proven, and audited, with no step of its own.

pub mod demotion;
pub mod dns;
pub mod hook;
pub mod replication;
