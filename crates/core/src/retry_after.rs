//! Reading HTTP's `Retry-After` header.
//!
//! Every outbound caller (the engine's `http.post`, webhook notifications,
//! the connectors) honours a target's `Retry-After`, so the parsing lives
//! here, once.

use std::time::Duration;

use time::OffsetDateTime;
use time::macros::format_description;

/// Parses an HTTP `Retry-After` value (RFC 9110 §10.2.3) into how long to
/// wait from `now`: either delta-seconds (`120`) or an HTTP-date. All three
/// HTTP-date forms are accepted, as the RFC asks of recipients: IMF-fixdate
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), the obsolete RFC 850 form
/// (`Wednesday, 21-Oct-15 07:28:00 GMT`) and asctime
/// (`Wed Oct 21 07:28:00 2015`). A date in the past gives `Some(ZERO)`;
/// anything else gives `None`, and the caller backs off as usual. The
/// weekday must be spelled correctly but is not checked against the date:
/// the date is what the server means.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and a huge wait is capped later.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value, now)?;
    let wait = at - now;
    if wait.is_positive() {
        Duration::try_from(wait).ok()
    } else {
        Some(Duration::ZERO)
    }
}

/// Parses the three HTTP-date forms; `now` resolves RFC 850's two-digit years.
fn parse_http_date(value: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    use time::parsing::Parsed;
    use time::{Date, PrimitiveDateTime, Time};

    let imf_fixdate = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    if let Ok(at) = PrimitiveDateTime::parse(value, imf_fixdate) {
        return Some(at.assume_utc());
    }
    let asctime = format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
    );
    if let Ok(at) = PrimitiveDateTime::parse(value, asctime) {
        return Some(at.assume_utc());
    }

    let rfc850 = format_description!(
        "[weekday repr:long], [day]-[month repr:short]-[year repr:last_two] [hour]:[minute]:[second] GMT"
    );
    let mut parsed = Parsed::new();
    let rest = parsed.parse_items(value.as_bytes(), rfc850).ok()?;
    if !rest.is_empty() {
        return None;
    }
    // RFC 9110: a two-digit year more than 50 years ahead is in the past century.
    let this_year = now.year();
    let mut year = this_year - this_year.rem_euclid(100) + i32::from(parsed.year_last_two()?);
    if year > this_year + 50 {
        year -= 100;
    }
    let date = Date::from_calendar_date(year, parsed.month()?, parsed.day()?.get()).ok()?;
    let time = Time::from_hms(parsed.hour_24()?, parsed.minute()?, parsed.second()?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        let now = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "soon", "12s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_reads_every_http_date_form() {
        let now = datetime!(2015-10-21 07:20:00 UTC);
        for value in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "Thu, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now), Some(secs(480)), "{value}");
        }
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", now),
            Some(Duration::ZERO)
        );
        for bad in [
            "Wed, 21 Oct 2015 07:28:00 CET",
            "Wed, 21 Oct 2015 07:28:00",
            "2015-10-21T07:28:00Z",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn a_past_date_means_retry_now() {
        let now = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn rfc850_two_digit_years_never_land_more_than_50_years_ahead() {
        let now = datetime!(2026-01-01 00:00 UTC);
        // `76` is 2076, exactly 50 years ahead: kept in this century.
        assert_eq!(
            parse_retry_after("Friday, 01-Jan-76 00:00:00 GMT", now),
            Duration::try_from(datetime!(2076-01-01 00:00 UTC) - now).ok()
        );
        // `77` would be 2077, more than 50 years ahead: it is 1977, in the past.
        assert_eq!(
            parse_retry_after("Saturday, 01-Jan-77 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }
}
