//! The one integration-test binary. Tests that need the lab share its fixed
//! addresses, so they run one at a time (the `lab` nextest group).

mod harness;

mod cli;
mod docker;
mod lab;
mod lab_bad_input;
mod lab_checksum;
mod lab_crash;
mod lab_cutover;
mod lab_drill;
mod lab_fidelity;
mod lab_fidelity_changes;
mod lab_hot_rows;
mod lab_migration;
mod lab_mysql;
mod lab_pooled;
mod lab_scoped_cutover;
mod lab_shared_source;
mod lab_shared_state;
mod lab_snapshot;
mod lab_store;
mod lab_takeover;
mod lab_topology;
mod layering;
mod plan_corpus;
