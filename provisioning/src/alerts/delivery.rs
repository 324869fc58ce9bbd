//! Where carrier alerts go: the log always, a webhook and mail when
//! configured (guideline §3.2.2(2): operators must be told even when the
//! platform is down, so mail goes straight to an SMTP relay).
//!
//! Alerts are delivered by one task in the order they were raised, so that
//! "caution" never arrives after the "warning" that followed it. A delivery
//! failure is logged with the alert id; it never blocks report ingestion.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use tokio::sync::mpsc;

/// One alert as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Database id.
    pub id: i64,
    /// Device id (`<institution code>/<device>`).
    pub device_id: String,
    /// `down`, `recovered`, `threshold:<metric>`, `failover`.
    pub kind: String,
    /// `normal`, `caution`, `warning`.
    pub level: String,
    /// Human-readable text.
    pub message: String,
    /// When it was raised, RFC 3339.
    pub at: String,
}

/// Mail delivery settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// SMTP relay host.
    pub host: String,
    /// SMTP relay port.
    pub port: u16,
    /// Sender.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// URL that receives a JSON POST per alert.
    pub url: String,
    /// Extra CA certificates (PEM) for an https URL.
    pub ca_pem: Option<Vec<u8>>,
}

/// Why the alert sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlertSetupError {
    /// The webhook client could not be built.
    #[error("webhook client: {0}; check --webhook and --webhook-ca")]
    Webhook(String),
}

/// The handle used to raise alerts; cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertSink {
    tx: mpsc::UnboundedSender<Alert>,
}

impl AlertSink {
    /// Starts the delivery task (needs a tokio runtime).
    pub fn start(mail: Option<MailConfig>, webhook: Option<WebhookConfig>) -> Result<Self, AlertSetupError> {
        let client = match &webhook {
            Some(hook) => Some(webhook_client(hook)?),
            None => None,
        };
        let transport = mail.as_ref().map(|m| {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(m.host.clone())
                .port(m.port)
                .timeout(Some(Duration::from_secs(10)))
                .build()
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Alert>();
        tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                tracing::warn!(
                    target: "alert",
                    id = alert.id, device = %alert.device_id, kind = %alert.kind,
                    level = %alert.level, message = %alert.message, "alert"
                );
                if let (Some(client), Some(hook)) = (&client, &webhook) {
                    deliver_webhook(client, &hook.url, &alert).await;
                }
                if let (Some(transport), Some(mail)) = (&transport, &mail) {
                    deliver_mail(transport, mail, &alert).await;
                }
            }
        });
        Ok(Self { tx })
    }

    /// Queues `alert` for delivery.
    pub fn raise(&self, alert: Alert) {
        if let Err(e) = self.tx.send(alert) {
            tracing::error!(id = e.0.id, "alert delivery task has stopped; alert only in the database");
        }
    }
}

fn webhook_client(hook: &WebhookConfig) -> Result<reqwest::Client, AlertSetupError> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10)).use_rustls_tls();
    if let Some(pem) = &hook.ca_pem {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| AlertSetupError::Webhook(e.to_string()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| AlertSetupError::Webhook(e.to_string()))
}

async fn deliver_webhook(client: &reqwest::Client, url: &str, alert: &Alert) {
    let body = serde_json::to_vec(alert).unwrap_or_default();
    let request = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    match request.send().await {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => tracing::error!(id = alert.id, status = %resp.status(), url, "webhook refused the alert"),
        Err(e) => tracing::error!(id = alert.id, error = %e, url, "webhook delivery failed"),
    }
}

/// Subject line: level in Japanese and English, kind and device.
pub fn mail_subject(alert: &Alert) -> String {
    let level = match alert.level.as_str() {
        "warning" => "警告/warning",
        "caution" => "注意/caution",
        _ => "通知/notice",
    };
    format!("[CPE {level}] {} {}", alert.kind, alert.device_id)
}

async fn deliver_mail(transport: &AsyncSmtpTransport<Tokio1Executor>, mail: &MailConfig, alert: &Alert) {
    let body = format!(
        "device: {}\nkind: {}\nlevel: {}\nat: {}\n\n{}\n",
        alert.device_id, alert.kind, alert.level, alert.at, alert.message
    );
    let mut builder = Message::builder().from(mail.from.clone()).subject(mail_subject(alert));
    for to in &mail.to {
        builder = builder.to(to.clone());
    }
    let message = match builder.body(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(id = alert.id, error = %e, "could not build the alert mail");
            return;
        }
    };
    if let Err(e) = transport.send(message).await {
        tracing::error!(id = alert.id, error = %e, relay = %mail.host, "alert mail not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_subject_names_level_in_japanese_and_english() {
        let alert = |level: &str| Alert {
            id: 1,
            device_id: "1312345678/main".into(),
            kind: "threshold:cpu".into(),
            level: level.into(),
            message: String::new(),
            at: String::new(),
        };
        assert_eq!(mail_subject(&alert("warning")), "[CPE 警告/warning] threshold:cpu 1312345678/main");
        assert_eq!(mail_subject(&alert("caution")), "[CPE 注意/caution] threshold:cpu 1312345678/main");
        assert_eq!(mail_subject(&alert("normal")), "[CPE 通知/notice] threshold:cpu 1312345678/main");
    }
}
