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
