//! The notification dispatcher `serve` runs next to the engine worker: its
//! channels built from the configuration, refused at start-up when they are
//! half configured.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::clock::Clock;
use gatehouse_core::notify::EmailAddress;
use gatehouse_core::store::{NotificationStore, Store};
use gatehouse_engine::notify::smtp::SmtpChannel;
use gatehouse_engine::notify::webhook::WebhookChannel;
use gatehouse_engine::notify::{Channel, Dispatcher, DispatcherConfig};

use crate::CliError;
use crate::config::Config;

/// How long one webhook request or one SMTP transaction may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

fn address(setting: &str, text: &str) -> Result<EmailAddress, CliError> {
    EmailAddress::parse(text).map_err(|e| CliError::Config(format!("{setting}: {e}")))
}

/// The dispatcher over `store`, with a webhook channel when
/// `notify_webhook_url` is set and an e-mail channel when `smtp_host` is.
pub fn open_dispatcher(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<Dispatcher, CliError> {
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    match (&config.notify_webhook_url, &config.notify_webhook_secret) {
        (Some(url), Some(secret)) => channels.push(Arc::new(
            WebhookChannel::new(url, secret, SEND_TIMEOUT)
                .map_err(|e| CliError::Config(e.to_string()))?,
        )),
        (Some(_), None) => {
            return Err(CliError::Config(
                "notify_webhook_url is set but notify_webhook_secret is not: webhooks are always signed".into(),
            ));
        }
        (None, _) => {}
    }
    if let Some(host) = &config.smtp_host {
        let from = config.smtp_from.as_deref().ok_or_else(|| {
            CliError::Config("smtp_host is set but smtp_from (the sender address) is not".into())
        })?;
        channels.push(Arc::new(SmtpChannel::new(
            host,
            config.smtp_port,
            address("smtp_from", from)?,
            SEND_TIMEOUT,
        )));
    }
    let default_reviewer = config
        .notify_default_reviewer
        .as_deref()
        .map(|r| address("notify_default_reviewer", r))
        .transpose()?;
    let store: Arc<dyn NotificationStore> = store;
    Ok(Dispatcher::new(
        store,
        channels,
        clock,
        DispatcherConfig {
            lease: SEND_TIMEOUT * 4,
            default_reviewer,
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigArgs;

    fn config() -> Config {
        Config::load(
            &ConfigArgs {
                data_dir: Some("/tmp/gh-notify-nowhere".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn half_configured_channels_are_refused_naming_the_setting() {
        let db = gatehouse_store::testing::TestDatabase::sqlite()
            .await
            .unwrap();
        let clock: Arc<dyn Clock> = Arc::new(gatehouse_core::clock::FakeClock::default());
        let open = |config: &Config| open_dispatcher(config, db.store.clone(), clock.clone());

        let none = open(&config()).unwrap();
        assert!(!none.has_channels());

        let mut c = config();
        c.notify_webhook_url = Some("https://hooks.example/x".into());
        let err = open(&c).unwrap_err().to_string();
        assert!(err.contains("notify_webhook_secret"), "{err}");
        c.notify_webhook_secret = Some("0123456789abcdef0123".into());
        assert!(open(&c).unwrap().has_channels());

        let mut c = config();
        c.smtp_host = Some("127.0.0.1".into());
        let err = open(&c).unwrap_err().to_string();
        assert!(err.contains("smtp_from"), "{err}");
        c.smtp_from = Some("not an address".into());
        let err = open(&c).unwrap_err().to_string();
        assert!(err.contains("smtp_from"), "{err}");
        c.smtp_from = Some("gatehouse@msp.example".into());
        c.notify_default_reviewer = Some("x@".into());
        let err = open(&c).unwrap_err().to_string();
        assert!(err.contains("notify_default_reviewer"), "{err}");
        c.notify_default_reviewer = Some("lead@msp.example".into());
        assert!(open(&c).unwrap().has_channels());
        db.cleanup().await;
    }
}
