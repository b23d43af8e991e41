//! The duration keys of earlier releases, accepted for one more release.
//!
//! Durations used to be integers in a unit named by the key
//! (`poll_timeout_ms = 50`); they are now written one way, as a string with
//! its unit (`poll_timeout = "50ms"`). Before parsing, every old key is
//! rewritten in the source text, on its own line, to the current form, and a
//! warning says how to update the file. Errors about a rewritten key name it
//! as written. Setting a key in both forms is an error.

use toml_edit::{ImDocument, Item, TableLike};

/// A key of an earlier release: where it lives, its name, its replacement
/// and the unit its integer was in.
struct Old {
    /// Tables leading to it; `"*"` stands for every element of an array of
    /// tables.
    table: &'static [&'static str],
    old: &'static str,
    new: &'static str,
    unit: &'static str,
}

const OLD_KEYS: &[Old] = &[
    Old {
        table: &["workers"],
        old: "poll_timeout_ms",
        new: "poll_timeout",
        unit: "ms",
    },
    Old {
        table: &["workers"],
        old: "publish_interval_ms",
        new: "publish_interval",
        unit: "ms",
    },
    Old {
        table: &["workers"],
        old: "pacer_burst_us",
        new: "pacer_burst",
        unit: "us",
    },
    Old {
        table: &["workers"],
        old: "pacer_max_queue_delay_ms",
        new: "pacer_max_queue_delay",
        unit: "ms",
    },
    Old {
        table: &["classifier"],
        old: "idle_timeout_secs",
        new: "idle_timeout",
        unit: "s",
    },
    Old {
        table: &["control"],
        old: "high_freq_ms",
        new: "high_freq_interval",
        unit: "ms",
    },
    Old {
        table: &["control"],
        old: "low_freq_ms",
        new: "low_freq_interval",
        unit: "ms",
    },
    Old {
        table: &["exchange"],
        old: "failure_timeout_ms",
        new: "failure_timeout",
        unit: "ms",
    },
    Old {
        table: &["director"],
        old: "tcp_idle_secs",
        new: "tcp_idle",
        unit: "s",
    },
    Old {
        table: &["director"],
        old: "udp_idle_secs",
        new: "udp_idle",
        unit: "s",
    },
    Old {
        table: &["director"],
        old: "gratuitous_arp_interval_ms",
        new: "gratuitous_arp_interval",
        unit: "ms",
    },
    Old {
        table: &["vip", "*"],
        old: "sticky_secs",
        new: "sticky_timeout",
        unit: "s",
    },
    Old {
        table: &["vip", "*", "health_check"],
        old: "interval_ms",
        new: "interval",
        unit: "ms",
    },
    Old {
        table: &["vip", "*", "health_check"],
        old: "timeout_ms",
        new: "timeout",
        unit: "ms",
    },
];

/// The source with old keys rewritten, and what was rewritten.
#[derive(Debug)]
pub(crate) struct Upgraded {
    /// The source to parse (the input itself when nothing was old).
    pub src: String,
    /// `line: field: message` per rewritten key.
    pub warnings: Vec<String>,
    /// (current field path, field path as written), e.g.
    /// (`workers.poll_timeout`, `workers.poll_timeout_ms`).
    renamed: Vec<(String, String)>,
}

impl Upgraded {
    /// A field path as the file wrote it.
    pub fn as_written(&self, field: String) -> String {
        match self.renamed.iter().find(|(new, _)| *new == field) {
            Some((_, old)) => old.clone(),
            None => field,
        }
    }
}

/// One old key found: where, and the replacement text.
struct Hit {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
    text: String,
}

/// Rewrites the old keys of `src`. Errors are (line, field, message). A file
/// that does not parse is returned unchanged: the parser reports it.
pub(crate) fn upgrade(src: &str) -> Result<Upgraded, (usize, String, String)> {
    let mut out = Upgraded {
        src: src.to_string(),
        warnings: Vec::new(),
        renamed: Vec::new(),
    };
    let Ok(doc) = ImDocument::parse(src) else {
        return Ok(out);
    };
    let mut hits = Vec::new();
    for old in OLD_KEYS {
        let mut tables = Vec::new();
        collect(doc.as_table(), old.table, String::new(), &mut tables);
        for (path, t) in tables {
            let Some((key, item)) = t.get_key_value(old.old) else {
                continue;
            };
            let field = |k: &str| format!("{path}.{k}");
            let line = key.span().map_or(0, |s| line_at(src, s.start));
            if t.contains_key(old.new) {
                return Err((
                    line,
                    field(old.old),
                    format!(
                        "set either {} or its deprecated form {}, not both",
                        old.new, old.old
                    ),
                ));
            }
            let (Some(k), Some(v), Some(n)) = (
                key.span(),
                item.as_value().and_then(|v| v.span()),
                item.as_integer(),
            ) else {
                return Err((
                    line,
                    field(old.old),
                    format!(
                        "takes an integer in {} (deprecated: write {} = \"10{}\")",
                        old.unit, old.new, old.unit
                    ),
                ));
            };
            let value = format!("\"{n}{}\"", old.unit);
            out.warnings.push(format!(
                "{line}: {}: deprecated, write {} = {value} (the old key is accepted until the next release)",
                field(old.old),
                old.new
            ));
            out.renamed.push((field(old.new), field(old.old)));
            hits.push(Hit {
                key: k,
                value: v,
                text: format!("{} = {value}", old.new),
            });
        }
    }
    // Splice from the end so earlier offsets stay valid; key and value are on
    // one line (TOML has no line breaks between them), so lines are kept.
    hits.sort_by_key(|h| std::cmp::Reverse(h.key.start));
    for h in hits {
        out.src.replace_range(h.key.start..h.value.end, &h.text);
    }
    Ok(out)
}

/// The tables at `path` below `t`, with their dotted paths (`vip[1]`).
fn collect<'a>(
    t: &'a dyn TableLike,
    path: &[&str],
    here: String,
    out: &mut Vec<(String, &'a dyn TableLike)>,
) {
    let Some((first, rest)) = path.split_first() else {
        out.push((here, t));
        return;
    };
    if *first == "*" {
        return; // only after an array name, handled below
    }
    let join = |k: &str| {
        if here.is_empty() {
            k.to_string()
        } else {
            format!("{here}.{k}")
        }
    };
    let Some(item) = t.get(first) else {
        return;
    };
    match (item, rest.first()) {
        (Item::ArrayOfTables(a), Some(&"*")) => {
            for (i, sub) in a.iter().enumerate() {
                collect(sub, &rest[1..], format!("{}[{i}]", join(first)), out);
            }
        }
        (Item::Table(sub), _) => collect(sub, rest, join(first), out),
        (Item::Value(v), _) => {
            if let Some(sub) = v.as_inline_table() {
                collect(sub, rest, join(first), out);
            }
        }
        _ => {}
    }
}

fn line_at(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_are_rewritten_in_place() {
        let src = "[workers]\npoll_timeout_ms = 50 # idle\n\n[[vip]]\nname = \"a\"\nsticky_secs = 9\nhealth_check = { kind = \"tcp\", port = 1, interval_ms = 1000, timeout_ms = 5 }\n";
        let u = upgrade(src).unwrap();
        assert_eq!(
            u.src,
            "[workers]\npoll_timeout = \"50ms\" # idle\n\n[[vip]]\nname = \"a\"\nsticky_timeout = \"9s\"\nhealth_check = { kind = \"tcp\", port = 1, interval = \"1000ms\", timeout = \"5ms\" }\n"
        );
        assert_eq!(u.warnings.len(), 4);
        assert!(u.warnings[0]
            .starts_with("2: workers.poll_timeout_ms: deprecated, write poll_timeout = \"50ms\""));
        assert_eq!(
            u.as_written("vip[0].health_check.timeout".into()),
            "vip[0].health_check.timeout_ms"
        );
        assert_eq!(u.as_written("workers.cores".into()), "workers.cores");
    }

    #[test]
    fn both_forms_or_a_string_are_errors() {
        let (line, field, msg) =
            upgrade("\n[control]\nhigh_freq_ms = 20\nhigh_freq_interval = \"20ms\"\n").unwrap_err();
        assert_eq!((line, field.as_str()), (3, "control.high_freq_ms"));
        assert!(msg.contains("not both"), "{msg}");
        let (_, _, msg) = upgrade("[control]\nlow_freq_ms = \"2s\"\n").unwrap_err();
        assert!(msg.contains("takes an integer in ms"), "{msg}");
    }

    #[test]
    fn current_files_are_untouched() {
        let src = include_str!("../headroom.toml");
        let u = upgrade(src).unwrap();
        assert_eq!(u.src, src);
        assert!(u.warnings.is_empty());
    }
}
