//! Everything that talks to PostgreSQL: the pool, migrations, the embedded cluster, the
//! sync bookkeeping queries and the batch write.

pub mod batch;
pub mod catalog;
pub mod embedded;
pub mod fields;
pub mod migrations;
pub mod pool;
pub mod retry;
pub mod syncs;
pub mod tls;

pub use pool::{connect_pool, Database, StoreError};
