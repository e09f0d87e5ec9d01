//! MQTT 5.0 message properties in the database: the columns of
//! `message_log` and `retained` (migration 0008), written and read the
//! same way for both. User Properties are JSON text, `[["name", "value"],
//! ...]`, so that `sqlite3` shows them.

use crate::message::MessageProperties;
use bytes::Bytes;
use std::sync::Arc;

/// The property columns of one message in `message_log` or `retained`:
/// all `None` for one without properties.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Columns {
    pub expires_at: Option<i64>,
    pub payload_format: Option<i64>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: Option<String>,
}

impl Columns {
    pub fn of(properties: Option<&MessageProperties>) -> Columns {
        let Some(p) = properties else {
            return Columns::default();
        };
        Columns {
            expires_at: p.expires_at.map(|at| i64::try_from(at).unwrap_or(i64::MAX)),
            payload_format: p.payload_format_indicator.map(i64::from),
            content_type: p.content_type.as_deref().map(str::to_owned),
            response_topic: p.response_topic.as_deref().map(str::to_owned),
            correlation_data: p.correlation_data.as_deref().map(<[u8]>::to_vec),
            user_properties: (!p.user_properties.is_empty()).then(|| {
                let pairs: Vec<[&str; 2]> = p
                    .user_properties
                    .iter()
                    .map(|(k, v)| [&**k, &**v])
                    .collect();
                serde_json::to_string(&pairs).unwrap_or_default()
            }),
        }
    }

    /// The properties these columns hold; `None` when they hold none. User
    /// Properties that are not the JSON roost writes are left out, with a
    /// warning (someone edited the row).
    pub fn properties(self, what: impl std::fmt::Display) -> Option<Arc<MessageProperties>> {
        let user_properties = match self.user_properties.as_deref() {
            None => Vec::new(),
            Some(json) => match serde_json::from_str::<Vec<[String; 2]>>(json) {
                Ok(pairs) => pairs
                    .into_iter()
                    .map(|[k, v]| (k.into(), v.into()))
                    .collect(),
                Err(e) => {
                    log::warn!("database: the user properties of {what} are not [[name, value], ...] JSON ({e}); left out");
                    Vec::new()
                }
            },
        };
        let p = MessageProperties {
            payload_format_indicator: self.payload_format.and_then(|v| u8::try_from(v).ok()),
            expires_at: self.expires_at.and_then(|v| u64::try_from(v).ok()),
            content_type: self.content_type.map(Into::into),
            response_topic: self.response_topic.map(Into::into),
            correlation_data: self.correlation_data.map(Bytes::from),
            user_properties,
        };
        (p != MessageProperties::default()).then(|| Arc::new(p))
    }

    /// Reads the columns from a rusqlite row, the first at `at`.
    pub fn from_rusqlite(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Columns> {
        Ok(Columns {
            expires_at: row.get(at)?,
            payload_format: row.get(at + 1)?,
            content_type: row.get(at + 2)?,
            response_topic: row.get(at + 3)?,
            correlation_data: row.get(at + 4)?,
            user_properties: row.get(at + 5)?,
        })
    }

    /// Reads the columns from a sqlx row, by name.
    pub fn from_sqlx(row: &sqlx::sqlite::SqliteRow) -> Columns {
        use sqlx::Row;
        Columns {
            expires_at: row.get("expires_at"),
            payload_format: row.get("payload_format"),
            content_type: row.get("content_type"),
            response_topic: row.get("response_topic"),
            correlation_data: row.get("correlation_data"),
            user_properties: row.get("user_properties"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property survives the columns, User Properties in their order
    /// with a repeated name, as JSON a person can read.
    #[test]
    fn properties_survive_their_columns() {
        let p = MessageProperties {
            payload_format_indicator: Some(1),
            expires_at: Some(1_900_000_000),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(&[0, 0xFF])),
            user_properties: vec![
                ("b".into(), "2".into()),
                ("a".into(), "1".into()),
                ("b".into(), "\"quoted\"".into()),
            ],
        };
        let columns = Columns::of(Some(&p));
        assert_eq!(
            columns.user_properties.as_deref(),
            Some(r#"[["b","2"],["a","1"],["b","\"quoted\""]]"#)
        );
        assert_eq!(columns.clone().properties("m").as_deref(), Some(&p));
        assert_eq!(Columns::of(None), Columns::default());
        assert_eq!(Columns::default().properties("m"), None);
        let edited = Columns {
            user_properties: Some("{not a list}".into()),
            ..columns
        };
        assert!(edited.properties("m").unwrap().user_properties.is_empty());
    }
}
