//! Helpers shared by the end-to-end test files that need tokio-postgres
//! (a dev-dependency, so they live here rather than in the cpe-e2e library).
#![allow(clippy::unwrap_used, dead_code)]

/// The PostgreSQL to test against, or `None` (and a line saying the test was
/// skipped; under CI=true a failure, see [`cpe_e2e::skip_or_fail`]) when
/// `CPE_TEST_POSTGRES_URL` is unset; scripts/test.sh sets it.
/// Each call makes a schema of its own and points the URL at it, so tests
/// running in parallel never see (or mark down) each other's devices;
/// `prefix` names the test file in the schema, for whoever reads the database.
pub fn postgres_url(prefix: &str) -> Option<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let Ok(base) = std::env::var("CPE_TEST_POSTGRES_URL") else {
        cpe_e2e::skip_or_fail(
            &format!("{prefix} on PostgreSQL"),
            "CPE_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)",
        );
        return None;
    };
    let schema = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (url, name) = (base.clone(), schema.clone());
    // A thread of its own: the caller may already be inside a tokio runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        });
    })
    .join()
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}
