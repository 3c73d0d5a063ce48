//! PostgreSQL: the connection pool and the schema migrations in `migrations/`, embedded
//! in every binary so that `waiting-room migrate` and the tests apply exactly the same
//! schema.

use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

/// The schema, from the workspace's `migrations/` directory.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// A pool that connects on first use, so a service starts (and reports "not ready")
/// while PostgreSQL is down instead of failing to start.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(url)
}

/// Creates the database named in `url` if it does not exist, then applies every pending
/// migration. Safe to run concurrently (sqlx takes an advisory lock).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    if !Postgres::database_exists(url).await? {
        Postgres::create_database(url).await?;
        tracing::info!("created database");
    }
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}
