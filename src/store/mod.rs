//! Everything that talks to PostgreSQL: the pool, migrations, the embedded cluster, the
//! sync bookkeeping queries, the batch write and history (versions, changes).

pub mod batch;
pub mod catalog;
pub mod changes;
pub mod embedded;
pub mod fields;
pub mod history;
pub mod migrations;
pub mod pool;
pub mod retry;
pub mod syncs;
pub mod tls;

pub use pool::{connect_pool, Database, StoreError};
