//! TLS and mutual TLS on both listeners, with certificates made by the
//! function behind `pond cert generate`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use pond::tls::{generate_dev_certs, DevCertOptions, DevCerts, TlsSettings};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::{column_strings, query, BoxError, TestServer, ADMIN_PASSWORD};

fn make_certs(dir: &Path, client: Option<&str>) -> DevCerts {
    let options = DevCertOptions { client: client.map(str::to_string), ..Default::default() };
    generate_dev_certs(dir, &options).expect("certificates")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("readable")
}

/// tonic's client TLS: trust `trust`'s CA; present `identity`'s client certificate if given.
fn client_tls(trust: &DevCerts, identity: Option<&DevCerts>, domain: Option<&str>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&trust.ca_cert)));
    if let Some(domain) = domain {
        tls = tls.domain_name(domain);
    }
    if let Some((cert, key)) = identity.and_then(|c| c.client.as_ref()) {
        tls = tls.identity(Identity::from_pem(read(cert), read(key)));
    }
    tls
}

/// Connects, logs in as admin and runs `SELECT 1`; every failure is an Err.
async fn flight_select_one(url: String, tls: Option<ClientTlsConfig>) -> Result<Vec<String>, BoxError> {
    let attempt = async {
        let mut endpoint = Channel::from_shared(url)?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let mut client = FlightSqlServiceClient::new(endpoint.connect().await?);
        client.handshake("admin", ADMIN_PASSWORD).await?;
        let batches = query(&mut client, "SELECT 1 AS one").await?;
        Ok::<_, BoxError>(column_strings(&batches, 0))
    };
    tokio::time::timeout(Duration::from_secs(20), attempt).await.map_err(|_| "timed out")?
}

fn tls_url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// reqwest trusting only `trust`'s CA, with `identity`'s client certificate if given.
fn https_client(trust: &DevCerts, identity: Option<&DevCerts>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&read(&trust.ca_cert)).unwrap();
    let mut builder = reqwest::Client::builder().tls_built_in_root_certs(false).add_root_certificate(ca).timeout(Duration::from_secs(20));
    if let Some((cert, key)) = identity.and_then(|c| c.client.as_ref()) {
        let mut pem = read(cert);
        pem.extend(read(key));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

async fn https_query(client: &reqwest::Client, s: &TestServer, sql: &str) -> serde_json::Value {
    let resp = client
        .post(s.http_url("/api/v1/query"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"sql": sql, "format": "json"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn http_health(client: &reqwest::Client, url: String) -> Result<reqwest::StatusCode, reqwest::Error> {
    client.get(url).send().await.map(|r| r.status())
}

#[tokio::test]
async fn flight_sql_and_http_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), None);
    let other = make_certs(&dir.path().join("other"), None);
    let s = TestServer::start_with(|b| b.tls(certs.settings())).await;
    let server = s.server();
    assert!(server.tls_enabled());

    // Flight SQL over TLS, by IP address and by DNS name (both in the certificate).
    let ones = flight_select_one(tls_url(server.flight_addr()), Some(client_tls(&certs, None, None))).await.unwrap();
    assert_eq!(ones, vec!["1"]);
    let ones = flight_select_one(tls_url(server.flight_addr()), Some(client_tls(&certs, None, Some("localhost")))).await.unwrap();
    assert_eq!(ones, vec!["1"]);

    // HTTPS: health and a query.
    let https = https_client(&certs, None);
    assert!(s.http_url("/health").starts_with("https://"));
    assert_eq!(http_health(&https, s.http_url("/health")).await.unwrap(), 200);
    assert_eq!(https_query(&https, &s, "SELECT 42 AS answer").await["data"], serde_json::json!([[42]]));

    // Client addresses survive TLS: failed logins on both listeners are
    // audited with their source (the audit table is written in the background).
    let wrong = https
        .post(s.http_url("/api/v1/query"))
        .basic_auth("admin", Some("wrong-password"))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let channel = Channel::from_shared(tls_url(server.flight_addr()))
        .unwrap()
        .tls_config(client_tls(&certs, None, None))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert!(FlightSqlServiceClient::new(channel).handshake("admin", "wrong-password").await.is_err());
    let failures = "SELECT DISTINCT protocol, source FROM pond_system.main.audit_log WHERE kind = 'auth_failed' ORDER BY 1";
    let expected = serde_json::json!([["flight", "127.0.0.1"], ["http", "127.0.0.1"]]);
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        seen = https_query(&https, &s, failures).await["data"].clone();
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, expected);

    // Plain text on the TLS ports fails on both listeners.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    assert!(http_health(&plain, format!("http://{}/health", server.http_addr())).await.is_err());
    assert!(flight_select_one(format!("http://{}", server.flight_addr()), None).await.is_err());

    // A client that trusts another CA refuses the server's certificate.
    assert!(flight_select_one(tls_url(server.flight_addr()), Some(client_tls(&other, None, None))).await.is_err());
    assert!(http_health(&https_client(&other, None), s.http_url("/health")).await.is_err());

    // The server keeps serving after the failed handshakes.
    assert_eq!(http_health(&https, s.http_url("/health")).await.unwrap(), 200);
    s.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), Some("e2e-client"));
    // A client certificate from another CA must not be accepted.
    let stranger = make_certs(&dir.path().join("stranger"), Some("stranger"));
    let s = TestServer::start_with(|b| b.tls(certs.settings())).await;
    let server = s.server();
    let flight_url = tls_url(server.flight_addr());

    // Without a client certificate: rejected.
    assert!(flight_select_one(flight_url.clone(), Some(client_tls(&certs, None, None))).await.is_err());
    assert!(http_health(&https_client(&certs, None), s.http_url("/health")).await.is_err());
    // With a certificate signed by another CA: rejected.
    assert!(flight_select_one(flight_url.clone(), Some(client_tls(&certs, Some(&stranger), None))).await.is_err());
    assert!(http_health(&https_client(&certs, Some(&stranger)), s.http_url("/health")).await.is_err());
    // With the client certificate: works.
    let ones = flight_select_one(flight_url, Some(client_tls(&certs, Some(&certs), None))).await.unwrap();
    assert_eq!(ones, vec!["1"]);
    assert_eq!(http_health(&https_client(&certs, Some(&certs)), s.http_url("/health")).await.unwrap(), 200);
    s.stop().await;
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), None);
    let data = dir.path().join("data");
    let start = |tls: TlsSettings| TestServer::builder(data.clone()).tls(tls).start();

    let only_cert = TlsSettings { cert: Some(certs.server_cert.clone()), ..Default::default() };
    let e = start(only_cert).await.err().expect("cert without key fails").to_string();
    assert!(e.contains("--tls-key"), "{e}");

    let only_key = TlsSettings { key: Some(certs.server_key.clone()), ..Default::default() };
    let e = start(only_key).await.err().expect("key without cert fails").to_string();
    assert!(e.contains("--tls-cert"), "{e}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let e = start(TlsSettings::new(&garbage, &certs.server_key)).await.err().expect("invalid PEM fails").to_string();
    assert!(e.contains("garbage.pem"), "{e}");

    let e =
        start(TlsSettings::new(&certs.server_cert, dir.path().join("missing-key.pem"))).await.err().expect("missing key fails").to_string();
    assert!(e.contains("missing-key.pem") && e.contains("--tls-key"), "{e}");

    assert!(!data.exists(), "a failed TLS set-up must not create the data directory");
}
