//! Maps a field path (`jobs[1].name`) back to a line of the source, so that
//! validation errors found after deserialisation still point at the file.

use toml_edit::{ImDocument, Item};

/// One step of a field path.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Renders a path as `a.b[2].c`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// 1-based line of the deepest element of `path` present in `src`, or 0.
pub(crate) fn line_of(src: &str, path: &[Seg]) -> usize {
    let Ok(doc) = ImDocument::parse(src) else {
        return 0;
    };
    line_in_table(doc.as_table(), path)
        .map(|o| offset_to_line(src, o))
        .unwrap_or(0)
}

fn line_in_table(t: &toml_edit::Table, rest: &[Seg]) -> Option<usize> {
    let Some((Seg::Key(k), tail)) = rest.split_first() else {
        return t.span().map(|s| s.start);
    };
    let (key, item) = t.get_key_value(k)?;
    let here = key.span().map(|s| s.start);
    match (tail.first(), item) {
        (None, _) => here,
        (Some(Seg::Index(i)), Item::ArrayOfTables(a)) => {
            let sub = a.get(*i)?;
            line_in_table(sub, &tail[1..])
                .or(sub.span().map(|s| s.start))
                .or(here)
        }
        (Some(Seg::Index(i)), Item::Value(v)) => v
            .as_array()
            .and_then(|a| a.get(*i))
            .and_then(|v| v.span())
            .map(|s| s.start)
            .or(here),
        (Some(Seg::Key(_)), Item::Table(sub)) => line_in_table(sub, tail).or(here),
        _ => here,
    }
}

fn offset_to_line(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
