//! The sales channel: every instance hears of a sale's changes through
//! `NOTIFY`, and this is the one place that writes to it.

use sqlx::PgExecutor;

/// The channel on which sale changes are announced to every instance. This
/// module is the one that writes to it ([`announce_changed`], and
/// [`remaining_announcement`] and its kin for statements that move stock or
/// admission); the live board
/// ([`crate::live`]) reads it through [`Announcement::parse`].
pub const CHANNEL: &str = "flashsale_sale";

/// A change of a sale that every instance must hear of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// An admin changed the sale's terms or stock: reload it (`<id>`).
    Changed(i64),
    /// A purchase moved the stock: `remaining` units are left (`<id>:<n>`).
    Remaining { sale_id: i64, remaining: i64 },
    /// Holds or orders were released: `remaining` units are left, and their
    /// buyers may buy again (`<id>:<n>:released`).
    Released { sale_id: i64, remaining: i64 },
    /// The waiting room admitted every place up to `through`
    /// (`<id>:<n>:admitted`).
    Admitted { sale_id: i64, through: i64 },
}

impl Announcement {
    /// Reads a payload of [`CHANNEL`].
    pub fn parse(payload: &str) -> Option<Announcement> {
        let mut parts = payload.split(':');
        let sale_id = parts.next()?.parse().ok()?;
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => Some(Announcement::Changed(sale_id)),
            (Some(n), None, _) => Some(Announcement::Remaining {
                sale_id,
                remaining: n.parse().ok()?,
            }),
            (Some(n), Some("released"), None) => Some(Announcement::Released {
                sale_id,
                remaining: n.parse().ok()?,
            }),
            (Some(n), Some("admitted"), None) => Some(Announcement::Admitted {
                sale_id,
                through: n.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// Announces that a sale's terms changed. Inside a transaction it is sent when
/// the transaction commits, and never if it rolls back.
pub async fn announce_changed(conn: impl PgExecutor<'_>, sale_id: i64) -> Result<(), sqlx::Error> {
    crate::db::notify(conn, CHANNEL, &sale_id.to_string()).await
}

/// A SQL expression that announces [`Announcement::Remaining`] for the sale
/// `sale_id` (a SQL expression, e.g. a parameter) with `remaining` (another),
/// for the statement that moves the stock, so the announcement costs no round
/// trip of its own. It is sent on commit; its value is `void`.
pub fn remaining_announcement(sale_id: &str, remaining: &str) -> String {
    format!("pg_notify('{CHANNEL}', ({sale_id})::text || ':' || ({remaining})::text)")
}

/// Like [`remaining_announcement`], for a statement that released units
/// ([`Announcement::Released`]).
pub fn released_announcement(sale_id: &str, remaining: &str) -> String {
    format!(
        "pg_notify('{CHANNEL}', ({sale_id})::text || ':' || ({remaining})::text || ':released')"
    )
}

/// Like [`remaining_announcement`], for the admission step that moved
/// `admitted_through` ([`Announcement::Admitted`]).
pub fn admitted_announcement(sale_id: &str, through: &str) -> String {
    format!("pg_notify('{CHANNEL}', ({sale_id})::text || ':' || ({through})::text || ':admitted')")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_back_as_the_sql_writes_them() {
        assert_eq!(Announcement::parse("7"), Some(Announcement::Changed(7)));
        assert_eq!(
            Announcement::parse("7:0"),
            Some(Announcement::Remaining {
                sale_id: 7,
                remaining: 0
            })
        );
        assert_eq!(
            Announcement::parse("7:3:released"),
            Some(Announcement::Released {
                sale_id: 7,
                remaining: 3
            })
        );
        assert_eq!(
            Announcement::parse("7:40:admitted"),
            Some(Announcement::Admitted {
                sale_id: 7,
                through: 40
            })
        );
        assert_eq!(Announcement::parse("7:3:other"), None);
        assert_eq!(Announcement::parse("x:1"), None);
        assert_eq!(Announcement::parse(""), None);
        assert_eq!(
            remaining_announcement("$1", "s.remaining"),
            "pg_notify('flashsale_sale', ($1)::text || ':' || (s.remaining)::text)"
        );
        assert!(released_announcement("$1", "s.remaining").ends_with("|| ':released')"));
        assert!(admitted_announcement("$1", "e.n").ends_with("|| ':admitted')"));
    }
}
