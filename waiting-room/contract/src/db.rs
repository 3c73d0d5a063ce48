//! The PostgreSQL schema: the migrations in `migrations/`, embedded in every binary so
//! that `waiting-room migrate` and the tests apply exactly the same schema.

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::Postgres;

/// The schema, from the workspace's `migrations/` directory.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

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
