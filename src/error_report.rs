//! Errors as operators read them: one line, each cause said once.

/// The error and its causes joined by ": ", leaving out a cause whose text
/// an outer message already includes (many errors quote their source).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_the_message_quotes_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(headroom_config::ConfigError::Io {
            file: "/nonexistent".into(),
            source: io,
        });
        assert_eq!(one_line(&e), "/nonexistent: cannot read: No such file");
        let e = anyhow::anyhow!("disk on fire").context("starting");
        assert_eq!(one_line(&e), "starting: disk on fire");
    }
}
