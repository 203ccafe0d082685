//! What `checksum` and `snapshot` share about the source's tables: their
//! shape read from the server (`schema`), identifiers and the canonical form
//! of a row (`canonical`), key ranges (`chunk`), the chunk checksum query
//! (`hash`), and the one consistent point every worker reads at (`point`).

pub mod canonical;
pub mod chunk;
pub mod hash;
pub mod point;
pub mod schema;
