//! Log output of the daemon: the filter from `HEADROOM_LOG`, text or JSON
//! lines on standard error (journald adds its own metadata under systemd).

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LOG_ENV};

/// Installs the global subscriber. An unparsable `HEADROOM_LOG` falls back to
/// "info" and is reported once the subscriber is up.
pub fn init(format: LogFormat) {
    let (filter, bad) = match std::env::var(LOG_ENV) {
        Ok(v) => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some((v, e.to_string()))),
        },
        Err(_) => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    if let Some((value, error)) = bad {
        tracing::warn!(%value, %error, "{LOG_ENV} is not a valid log filter; logging at info");
    }
}
