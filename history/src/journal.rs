//! The event journal in the store: what the pool's triggers did (state changes) and what
//! their actions did (outcomes), one row per entry, kept as long as the one-hour tier.
//!
//! The master journals every entry in memory and hands it to the writer, which stores it in
//! the same transaction as the points of that second (so a store outage keeps it in the
//! backlog, not lost). `headroomctl events` reads the store and adds what is still in memory
//! and not stored yet ([`merge`]): the answer covers the daemon's earlier runs too.

use rusqlite::{params, Connection, Transaction};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Most rows one query returns (the newest are kept).
pub const READ_MAX: usize = 100_000;

/// One journal entry, as `headroomctl events`, the console and the store hold it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRow {
    /// Wall-clock time, ms since the Unix epoch.
    pub unix_ms: u64,
    /// The node that journaled it (the master at the time).
    #[serde(default)]
    pub node: u32,
    /// The line as printed.
    pub line: String,
    /// The entry as JSON (`--json`).
    pub entry: serde_json::Value,
}

/// The table (schema version 3).
pub(crate) const TABLE: &str = "
CREATE TABLE journal (id INTEGER PRIMARY KEY, unix_ms INTEGER NOT NULL,
    node INTEGER NOT NULL, line TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX journal_time ON journal (unix_ms);
";

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stores `rows` in `tx`.
pub(crate) fn insert(tx: &Transaction, rows: &[EventRow]) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(
        "INSERT INTO journal (unix_ms, node, line, entry) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for r in rows {
        q.execute(params![ms(r.unix_ms), r.node, r.line, r.entry.to_string()])?;
    }
    Ok(())
}

/// Removes rows older than `before_ms`; returns how many.
pub(crate) fn expire(tx: &Transaction, before_ms: i64) -> rusqlite::Result<u64> {
    Ok(tx.execute("DELETE FROM journal WHERE unix_ms < ?1", [before_ms])? as u64)
}

/// Rows at or after `since_ms`, oldest first, at most [`READ_MAX`] (the newest).
pub(crate) fn read(conn: &Connection, since_ms: u64) -> Result<Vec<EventRow>, StoreError> {
    let mut q = conn
        .prepare_cached(
            "SELECT unix_ms, node, line, entry FROM journal WHERE unix_ms >= ?1
             ORDER BY unix_ms DESC, id DESC LIMIT ?2",
        )
        .map_err(StoreError::sql)?;
    let rows = q
        .query_map(params![ms(since_ms), READ_MAX as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(StoreError::sql)?;
    let mut out = Vec::new();
    for row in rows {
        let (unix_ms, node, line, entry) = row.map_err(StoreError::sql)?;
        out.push(EventRow {
            unix_ms: u64::try_from(unix_ms).unwrap_or(0),
            node: u32::try_from(node).unwrap_or(0),
            line,
            // A row this build cannot parse still shows its line.
            entry: serde_json::from_str(&entry).unwrap_or(serde_json::Value::Null),
        });
    }
    out.reverse();
    Ok(out)
}

/// The stored rows and the ones still in memory, each entry once, oldest first.
pub fn merge(stored: Vec<EventRow>, memory: Vec<EventRow>) -> Vec<EventRow> {
    let mut seen: hashbrown::HashSet<(u64, u32, String)> = stored
        .iter()
        .map(|r| (r.unix_ms, r.node, r.line.clone()))
        .collect();
    let mut out = stored;
    for r in memory {
        if seen.insert((r.unix_ms, r.node, r.line.clone())) {
            out.push(r);
        }
    }
    // Stable: entries of one millisecond keep their journal order.
    out.sort_by_key(|r| r.unix_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ms: u64, line: &str) -> EventRow {
        EventRow {
            unix_ms: ms,
            node: 1,
            line: line.into(),
            entry: serde_json::json!({ "entry": "trigger", "line": line }),
        }
    }

    #[test]
    fn merge_keeps_each_entry_once_in_time_order() {
        let stored = vec![row(10, "a"), row(20, "b")];
        let memory = vec![row(20, "b"), row(20, "c"), row(30, "d")];
        let m = merge(stored, memory);
        let lines: Vec<&str> = m.iter().map(|r| r.line.as_str()).collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
    }

    #[test]
    fn rows_round_trip_through_the_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(TABLE).unwrap();
        let tx = conn.transaction().unwrap();
        insert(
            &tx,
            &[row(5, "old"), row(10, "x"), row(10, "y"), row(12, "z")],
        )
        .unwrap();
        assert_eq!(expire(&tx, 6).unwrap(), 1);
        tx.commit().unwrap();
        let got = read(&conn, 10).unwrap();
        assert_eq!(got, vec![row(10, "x"), row(10, "y"), row(12, "z")]);
        assert_eq!(read(&conn, 11).unwrap(), vec![row(12, "z")]);
    }
}
