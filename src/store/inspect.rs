//! `roost inspect`: the database as tables for people, read through a
//! read-only connection (safe while the broker runs: WAL readers never
//! block it).

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Row, SqliteConnection};
use std::path::Path;

/// What `roost inspect` can show.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum View {
    /// Connected clients and persistent sessions, with their counts.
    Sessions,
    /// Subscriptions of persistent sessions.
    Subscriptions,
    /// Queued and in-flight messages of persistent sessions, oldest first.
    Queued,
    /// Retained messages by topic.
    Retained,
}

pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Left-aligned columns separated by two spaces, with a rule under the
    /// header (like `sqlite3 -column`). Client ids, topics and user names
    /// are the clients' own text: control characters in them are shown
    /// escaped (`\n`, `\u{1b}`), so a row cannot move the cursor, clear
    /// the screen or fake another row.
    pub fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|cell| printable(cell)).collect())
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = vec![
            line(self.headers.iter().map(|h| h.to_string()).collect()),
            line(widths.iter().map(|w| "-".repeat(*w)).collect()),
        ];
        out.extend(rows.into_iter().map(line));
        out.join("\n") + "\n"
    }
}

/// `text` with its control characters escaped as Rust writes them.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_debug()),
            false => out.push(c),
        }
    }
    out
}

/// A payload as text if it is printable UTF-8, else as hex; cut at 40 characters.
fn preview(payload: &[u8]) -> String {
    let text = match std::str::from_utf8(payload) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => payload.iter().map(|b| format!("{b:02x}")).collect(),
    };
    if text.chars().count() > 40 {
        text.chars().take(39).collect::<String>() + "…"
    } else {
        text
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Opens `db` read-only; a missing file is an error, not a new database.
pub async fn open_read_only(db: &Path) -> Result<SqliteConnection, sqlx::Error> {
    if !db.exists() {
        return Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no such database", db.display()),
        )));
    }
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    SqliteConnection::connect_with(&options).await
}

/// A 5.0 session's expiry interval as `roost inspect` shows it: `3600s`,
/// `never`, or `-` for 3.1.1 (`session.expiry_secs` governs it).
fn expiry(secs: Option<i64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s >= i64::from(u32::MAX) => "never".into(),
        Some(s) => format!("{s}s"),
    }
}

pub async fn table(
    conn: &mut SqliteConnection,
    view: View,
    client: Option<&str>,
) -> Result<Table, sqlx::Error> {
    // `?1` is the client filter; NULL shows every client.
    let sql = match view {
        View::Sessions => {
            "SELECT s.client_id, s.persistent, s.connected, s.username, s.connected_since, s.last_seen,
                    s.keep_alive,
                    (SELECT COUNT(*) FROM subscriptions x WHERE x.client_id = s.client_id) AS subscriptions,
                    (SELECT COALESCE(SUM(r.last_id - r.first_id + 1), 0) FROM queue_runs r
                        WHERE r.client_id = s.client_id)
                      - (SELECT COUNT(*) FROM inflight i WHERE i.client_id = s.client_id) AS queued,
                    (SELECT COUNT(*) FROM inflight i WHERE i.client_id = s.client_id) AS in_flight,
                    (SELECT COUNT(*) FROM inbound_qos2 q WHERE q.client_id = s.client_id)
                        AS awaiting_pubrel,
                    s.protocol, s.session_expiry
             FROM sessions s WHERE ?1 IS NULL OR s.client_id = ?1 ORDER BY s.client_id"
        }
        View::Subscriptions => {
            "SELECT client_id, topic_filter, qos FROM subscriptions
             WHERE ?1 IS NULL OR client_id = ?1 ORDER BY client_id, topic_filter"
        }
        View::Queued => {
            "SELECT client_id, message_id, state, packet_id, qos, topic, payload, created_at
             FROM queued_messages WHERE ?1 IS NULL OR client_id = ?1 ORDER BY client_id, message_id"
        }
        View::Retained => "SELECT topic, qos, payload, updated_at FROM retained ORDER BY topic",
    };
    let rows = sqlx::query(sql).bind(client).fetch_all(&mut *conn).await?;
    let yes_no = |v: i64| if v != 0 { "yes" } else { "no" }.to_string();
    Ok(match view {
        View::Sessions => Table {
            headers: vec![
                "client_id",
                "persistent",
                "connected",
                "user",
                "connected_since",
                "last_seen",
                "keep_alive",
                "subscriptions",
                "queued",
                "in_flight",
                "awaiting_pubrel",
                "protocol",
                "session_expiry",
            ],
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        r.get("client_id"),
                        yes_no(r.get("persistent")),
                        yes_no(r.get("connected")),
                        opt(r.get::<Option<String>, _>("username")),
                        opt(r.get::<Option<String>, _>("connected_since")),
                        opt(r.get::<Option<String>, _>("last_seen")),
                        r.get::<i64, _>("keep_alive").to_string(),
                        r.get::<i64, _>("subscriptions").to_string(),
                        r.get::<i64, _>("queued").to_string(),
                        r.get::<i64, _>("in_flight").to_string(),
                        r.get::<i64, _>("awaiting_pubrel").to_string(),
                        opt(r.get::<Option<String>, _>("protocol")),
                        expiry(r.get("session_expiry")),
                    ]
                })
                .collect(),
        },
        View::Subscriptions => Table {
            headers: vec!["client_id", "topic_filter", "qos"],
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        r.get("client_id"),
                        r.get("topic_filter"),
                        r.get::<i64, _>("qos").to_string(),
                    ]
                })
                .collect(),
        },
        View::Queued => Table {
            headers: vec![
                "client_id",
                "message_id",
                "state",
                "packet_id",
                "qos",
                "topic",
                "bytes",
                "payload",
                "created_at",
            ],
            rows: rows
                .iter()
                .map(|r| {
                    let payload: Option<Vec<u8>> = r.get("payload");
                    vec![
                        r.get("client_id"),
                        r.get::<i64, _>("message_id").to_string(),
                        r.get("state"),
                        opt(r.get::<Option<i64>, _>("packet_id")),
                        r.get::<i64, _>("qos").to_string(),
                        opt(r.get::<Option<String>, _>("topic")),
                        opt(payload.as_ref().map(Vec::len)),
                        opt(payload.as_deref().map(preview)),
                        opt(r.get::<Option<String>, _>("created_at")),
                    ]
                })
                .collect(),
        },
        View::Retained => Table {
            headers: vec!["topic", "qos", "bytes", "payload", "updated_at"],
            rows: rows
                .iter()
                .map(|r| {
                    let payload: Vec<u8> = r.get("payload");
                    vec![
                        r.get("topic"),
                        r.get::<i64, _>("qos").to_string(),
                        payload.len().to_string(),
                        preview(&payload),
                        r.get("updated_at"),
                    ]
                })
                .collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_aligns_columns_under_a_rule() {
        let t = Table {
            headers: vec!["a", "long header"],
            rows: vec![vec!["wide value".into(), "x".into()]],
        };
        assert_eq!(
            t.render(),
            "a           long header\n----------  -----------\nwide value  x\n"
        );
    }

    #[test]
    fn preview_shows_text_or_hex_and_cuts_long_payloads() {
        assert_eq!(preview(b"21.5"), "21.5");
        assert_eq!(preview(&[0, 255]), "00ff");
        assert_eq!(preview(&[b'x'; 50]).chars().count(), 40);
    }

    /// A client id with a newline and an escape sequence is shown escaped,
    /// on its own row.
    #[test]
    fn render_escapes_control_characters() {
        let table = Table {
            headers: vec!["client_id", "topic"],
            rows: vec![vec!["evil\nroot  admin".into(), "t/\u{1b}[2Jx".into()]],
        };
        let text = table.render();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("evil\\nroot"), "{text}");
        assert!(text.contains("t/\\u{1b}[2Jx"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }
}
