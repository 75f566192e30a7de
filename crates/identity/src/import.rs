//! CSV import of lifecycle events, with a per-row error report: a bad row
//! is reported by number and never stops the good ones.
//!
//! The first line names the columns. `person` is required; every other
//! column is optional:
//! - `event`: `hire`, `update` (the default), `leave_of_absence`, `return`,
//!   `terminate`, `contract_end` (and their synonyms, see
//!   [`EventKind::parse`]);
//! - `occurred_at`: RFC 3339 (default: the import's time);
//! - `id`: the event id (default: derived from the file's digest and the
//!   row, so importing the same file twice changes nothing);
//! - `kind`: `client_user`, `msp_staff`, `contractor`;
//! - `roles`: role template ids separated by `;`;
//! - any canonical attribute (an empty cell leaves the attribute as it is).
//!
//! A column the importer does not know refuses the whole file before any
//! row is read, since every row would silently lose it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::{EventKind, LifecycleEvent};
use crate::person::{PersonKind, is_attribute};

/// One row that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The line number in the file (the header is line 1).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// What a file holds.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The good rows' events, with their line numbers.
    pub events: Vec<(u64, LifecycleEvent)>,
    /// The bad rows.
    pub errors: Vec<RowError>,
}

const KNOWN: &[&str] = &["person", "event", "occurred_at", "id", "kind", "roles"];

/// Parses a CSV file of events from `source` (e.g. `csv:staff.csv`); `now`
/// is the time of rows without `occurred_at`.
///
/// # Errors
/// The header is unreadable, lacks `person`, or names an unknown column.
pub fn parse(bytes: &[u8], source: &str, now: OffsetDateTime) -> Result<Parsed, String> {
    let digest = hex::encode(&Sha256::digest(bytes)[..8]);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the header line cannot be read: {e}"))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if !header.iter().any(|h| h == "person") {
        return Err("the header has no `person` column (the person's key)".to_owned());
    }
    let mut seen = BTreeSet::new();
    for column in &header {
        if !KNOWN.contains(&column.as_str()) && !is_attribute(column) {
            return Err(format!(
                "the header names `{column}`, which is neither a canonical attribute ({}) nor one of {}",
                crate::person::ATTRIBUTES.join(", "),
                KNOWN.join(", ")
            ));
        }
        if !seen.insert(column.clone()) {
            return Err(format!("the header names `{column}` twice"));
        }
    }
    let mut parsed = Parsed::default();
    for (index, record) in reader.records().enumerate() {
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(index as u64 + 2, |p| p.line());
        let result = record
            .map_err(|e| format!("unreadable: {e}"))
            .and_then(|record| row(&header, &record, source, &digest, line, now));
        match result {
            Ok(event) => parsed.events.push((line, event)),
            Err(message) => parsed.errors.push(RowError { line, message }),
        }
    }
    Ok(parsed)
}

fn row(
    header: &[String],
    record: &csv::StringRecord,
    source: &str,
    digest: &str,
    line: u64,
    now: OffsetDateTime,
) -> Result<LifecycleEvent, String> {
    let mut event = LifecycleEvent {
        id: format!("{source}:{digest}:{line}"),
        person: String::new(),
        kind: EventKind::Update,
        source: source.to_owned(),
        occurred_at: now,
        attributes: BTreeMap::new(),
        person_kind: None,
        roles: None,
    };
    for (column, cell) in header.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        match column.as_str() {
            "person" => event.person = cell.to_owned(),
            "id" => event.id = cell.to_owned(),
            "event" => {
                event.kind = EventKind::parse(cell)
                    .ok_or_else(|| format!("event `{cell}` is not a lifecycle event"))?;
            }
            "occurred_at" => {
                event.occurred_at = OffsetDateTime::parse(cell, &Rfc3339)
                    .map_err(|_| format!("occurred_at `{cell}` is not an RFC 3339 time"))?;
            }
            "kind" => {
                event.person_kind = Some(match cell {
                    "client_user" => PersonKind::ClientUser,
                    "msp_staff" => PersonKind::MspStaff,
                    "contractor" => PersonKind::Contractor,
                    other => {
                        return Err(format!(
                            "kind `{other}` is not client_user, msp_staff or contractor"
                        ));
                    }
                });
            }
            "roles" => {
                event.roles = Some(
                    cell.split(';')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            attribute => {
                event
                    .attributes
                    .insert(attribute.to_owned(), Some(cell.to_owned()));
            }
        }
    }
    event.validate().map_err(|e| e.to_string())?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_and_good_rows_kept() {
        let file = "person,event,department,contract_end,roles\n\
                    E1,hire,Sales,,staff;sales\n\
                    E2,promote,Sales,,\n\
                    ,hire,Sales,,\n\
                    E3,terminate,,2026-02-30,\n\
                    E4,leave,,,\n";
        let parsed = parse(file.as_bytes(), "csv:test", OffsetDateTime::UNIX_EPOCH).unwrap();
        let lines: Vec<u64> = parsed.events.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 6]);
        assert_eq!(
            parsed.events[0].1.roles.as_ref().map(BTreeSet::len),
            Some(2)
        );
        assert_eq!(parsed.events[1].1.kind, EventKind::LeaveOfAbsence);
        let errors: Vec<(u64, bool)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, !e.message.is_empty()))
            .collect();
        assert_eq!(errors, [(3, true), (4, true), (5, true)]);
        assert!(parsed.errors[0].message.contains("promote"));
        assert!(parsed.errors[2].message.contains("not a date"));
    }

    #[test]
    fn the_same_file_gives_the_same_ids() {
        let file = b"person,department\nE1,Sales\n";
        let a = parse(file, "csv", OffsetDateTime::UNIX_EPOCH).unwrap();
        let b = parse(file, "csv", OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(a.events[0].1.id, b.events[0].1.id);
        let c = parse(
            b"person,department\nE1,Finance\n",
            "csv",
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_ne!(a.events[0].1.id, c.events[0].1.id);
    }

    #[test]
    fn an_unknown_column_refuses_the_file() {
        let err = parse(
            b"person,shoe_size\nE1,9\n",
            "csv",
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(err.contains("shoe_size"));
        let err = parse(b"name\nE1\n", "csv", OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert!(err.contains("person"));
    }
}
