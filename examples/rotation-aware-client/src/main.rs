//! `rotation-aware-client SECRET_ID`: logs in to the PostgreSQL database a secret names and runs
//! `SELECT 1` every second, riding through rotations of the secret (see the library's docs).
//! `SECRETS_MANAGER_ENDPOINT` overrides the endpoint; `DB_TLS=false` turns TLS off (tests).

use std::time::Duration;

use rotation_aware_client::{Credentials, postgres_login};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret_id = std::env::args()
        .nth(1)
        .ok_or("usage: rotation-aware-client SECRET_ID")?;
    let tls = std::env::var("DB_TLS").map_or(true, |v| v != "false");
    let mut config = aws_config::from_env();
    if let Ok(endpoint) = std::env::var("SECRETS_MANAGER_ENDPOINT") {
        config = config.endpoint_url(endpoint);
    }
    let client = aws_sdk_secretsmanager::Client::new(&config.load().await);
    let mut credentials = Credentials::new(client, secret_id);
    loop {
        let mut conn = credentials
            .connect(|secret| postgres_login(secret, tls))
            .await?;
        let user = credentials.known().map(|s| s.username.clone());
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        println!("SELECT {one} as {}", user.unwrap_or_default());
        drop(conn);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
