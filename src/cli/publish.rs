//! `publish`: writes the current catalog to Redis now, without a sync (after Redis lost its
//! data, or to fill a new one). Exit 0 published, 1 nothing to publish, 2 error.

use crate::cli::{thousands, DatabaseSession};
use crate::config::Config;
use crate::publish::Publisher;

pub async fn run(config: Config) -> anyhow::Result<i32> {
    let Some(publisher) = Publisher::from_config(&config.redis)? else {
        eprintln!("error: REDIS_URL is not set; nothing to publish to");
        return Ok(2);
    };
    let session = DatabaseSession::open(&config).await?;
    let result = publisher.publish_current(&session.database).await;
    session.close().await;
    match result {
        Ok(Some(published)) => {
            for (source, models) in &published.sources {
                println!("{:<21} {:>10} models", source.as_str(), thousands(*models as i64));
            }
            println!("published in {:.1}s", published.elapsed.as_secs_f64());
            Ok(0)
        }
        Ok(None) => {
            println!("no source has a successful sync yet; nothing to publish");
            Ok(1)
        }
        Err(error) => {
            eprintln!("error: could not publish the catalog to Redis: {error}");
            Ok(2)
        }
    }
}
