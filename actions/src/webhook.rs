//! Webhooks: the event as JSON, POSTed with a timeout per attempt and
//! retries with doubling back-off.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use headroom_config::triggers::{webhook_target, WebhookAction};
use headroom_control::triggers::TriggerEvent;

use crate::{event_json, ActionRecord, ExecutorConfig, Outcome};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub(crate) fn run(
    cfg: &ExecutorConfig,
    stop: &Receiver<()>,
    w: &WebhookAction,
    e: &TriggerEvent,
    rec: &mut ActionRecord,
) {
    let allowed = webhook_target(&w.url)
        .map_err(|m| m.to_string())
        .and_then(|(host, port)| {
            if cfg.node.allows_webhook(&host, port) {
                Ok(())
            } else {
                Err(format!(
                    "host {host}:{port} is not in this node's [actions] allowed_webhooks"
                ))
            }
        });
    let token = match &w.token {
        None => Ok(None),
        Some(name) => cfg
            .node
            .secrets
            .get(name)
            .map(|t| Some(t.clone()))
            .ok_or_else(|| format!("no secret named {name:?} in this node's [actions] secrets")),
    };
    let (Ok(()), Ok(token)) = (&allowed, token.clone()) else {
        rec.outcome = Outcome::Refused;
        rec.attempts = 0;
        rec.error = allowed.err().or(token.err());
        return;
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(w.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let body = serde_json::to_vec(&event_json(e)).unwrap_or_default();
    let mut backoff = w.backoff;
    rec.attempts = 0;
    for attempt in 0..=w.retries {
        if attempt > 0 {
            match stop.recv_timeout(backoff) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => {
                    rec.outcome = Outcome::Cancelled;
                    rec.error = Some(format!("shut down before attempt {}", attempt + 1));
                    return;
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        rec.attempts += 1;
        let mut req = agent
            .post(&w.url)
            .header("content-type", "application/json");
        if let Some(t) = &token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        match req.send(&body[..]) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                rec.http_status = Some(status);
                if (200..300).contains(&status) {
                    rec.outcome = Outcome::Ok;
                    rec.error = None;
                    return;
                }
                rec.error = Some(format!("HTTP {status}"));
            }
            Err(err) => {
                rec.http_status = None;
                rec.error = Some(match err {
                    ureq::Error::Timeout(_) => format!("no answer within {:?}", w.timeout),
                    other => other.to_string(),
                });
            }
        }
    }
    rec.outcome = Outcome::Failed;
    if let Some(e) = &mut rec.error {
        *e = format!("{e} (after {} attempts)", rec.attempts);
    }
}
