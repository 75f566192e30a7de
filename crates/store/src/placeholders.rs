//! Parameters of generated multi-row statements, per back end.
//!
//! The SQL is written once with PostgreSQL's numbered parameters (`$1`,
//! `$2`, …). SQLite accepts them too, but it keeps every numbered or named
//! parameter in a list that it scans linearly each time sqlx asks a
//! parameter's name while binding: a statement of `n` parameters then costs
//! `O(n²)` per execution, and a 256-row insert of 8 columns spent most of
//! its time there. Anonymous `?` parameters are not in that list, so the
//! generated multi-row statements use them on SQLite.

/// How a back end writes the parameters of a generated statement.
pub(crate) trait Placeholders {
    /// `text`, whose parameters are `$1, $2, …` each once and in order, in
    /// the form this back end binds fastest.
    fn sequential(text: String) -> String;
}

impl Placeholders for sqlx::Postgres {
    fn sequential(text: String) -> String {
        text
    }
}

impl Placeholders for sqlx::Sqlite {
    fn sequential(text: String) -> String {
        anonymous(text)
    }
}

/// How a back end tests membership in a set of ids bound as one parameter
/// (a JSON array of strings): the filter of a scoped operator's lists.
pub(crate) trait IdSet {
    /// SQL that is true when `param` is NULL (no limit) or `column` is one of
    /// the ids in the JSON array `param` holds.
    fn within(column: &str, param: &str) -> String;
}

impl IdSet for sqlx::Postgres {
    fn within(column: &str, param: &str) -> String {
        format!(
            "(CAST({param} AS TEXT) IS NULL OR {column} = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST({param} AS JSONB)))))"
        )
    }
}

impl IdSet for sqlx::Sqlite {
    fn within(column: &str, param: &str) -> String {
        format!("({param} IS NULL OR {column} IN (SELECT value FROM json_each({param})))")
    }
}

/// Date arithmetic, which the back ends spell differently.
pub(crate) trait Dialect {
    /// The UTC day of a timestamp column, as `YYYY-MM-DD` text.
    fn day_of(column: &str) -> String;
    /// Seconds from timestamp `from` to timestamp `to`, as a float.
    fn seconds_between(from: &str, to: &str) -> String;
}

impl Dialect for sqlx::Postgres {
    fn day_of(column: &str) -> String {
        format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
    }

    fn seconds_between(from: &str, to: &str) -> String {
        format!("CAST(EXTRACT(EPOCH FROM ({to} - {from})) AS DOUBLE PRECISION)")
    }
}

impl Dialect for sqlx::Sqlite {
    // Timestamps are stored as sortable UTC text (`SortableTime`).
    fn day_of(column: &str) -> String {
        format!("substr({column}, 1, 10)")
    }

    fn seconds_between(from: &str, to: &str) -> String {
        format!("((julianday({to}) - julianday({from})) * 86400.0)")
    }
}

/// The JSON array an [`IdSet::within`] parameter binds, or NULL.
pub(crate) fn id_set<T: ToString>(ids: Option<&[T]>) -> Option<String> {
    ids.map(|ids| {
        serde_json::Value::from(ids.iter().map(ToString::to_string).collect::<Vec<_>>()).to_string()
    })
}

/// `text` with `$1, $2, …` replaced by `?`, if they occur each once and in
/// order (then binding by position means the same); otherwise unchanged.
fn anonymous(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut expected = 1usize;
    let mut rest = text.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        match after[..digits].parse::<usize>() {
            Ok(n) if n == expected => {
                out.push('?');
                expected += 1;
                rest = &after[digits..];
            }
            _ => return text,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_parameters_become_anonymous_on_sqlite_only() {
        let text = "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)".to_owned();
        assert_eq!(
            <sqlx::Sqlite as Placeholders>::sequential(text.clone()),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(
            <sqlx::Postgres as Placeholders>::sequential(text.clone()),
            text
        );
    }

    #[test]
    fn reused_or_reordered_parameters_are_left_alone() {
        for text in [
            "SELECT 1 WHERE a = $1 OR b = $1",
            "SELECT 1 WHERE a = $2 AND b = $1",
            "SELECT 1 WHERE a = $1 AND b = $3",
        ] {
            assert_eq!(anonymous(text.to_owned()), text);
        }
        assert_eq!(
            anonymous("SELECT json_extract(x, '$.a') WHERE id = $1".to_owned()),
            "SELECT json_extract(x, '$.a') WHERE id = ?"
        );
    }
}
