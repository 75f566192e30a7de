//! From a vendor's webhook body to one won deal, or the reason it is not one.
//!
//! Pure: no I/O. The service completes a ConnectWise deal through the PSA
//! when it has a connector (see [`Reading::LookUp`]), checks slugs against
//! the tenants that exist, and submits the result as one
//! `psa.opportunity.won` event whose payload has the shape documented at
//! the top of `client-onboarding.toml`.
//!
//! Reasons name fields and checks, never values from the body: they are
//! stored in the clear in `hook_deliveries`.

use gatehouse_core::notify::EmailAddress;
use gatehouse_core::tenant::{Region, TenantSlug};
use serde_json::{Map, Value, json};

/// A won deal, as far as the body tells.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct WonDeal {
    /// `connectwise`, `autotask`, `halopsa`, or what a generic sender says.
    pub psa: String,
    /// The engine's deduplication key.
    pub dedup_key: String,
    pub company_id: Option<String>,
    pub company_name: Option<String>,
    pub slug: Option<String>,
    pub region: Option<String>,
    pub m365_tenant_id: Option<String>,
    /// The company's internet domain, or its website as the PSA holds it
    /// (checked and reduced to the bare domain by [`payload`]).
    pub domain: Option<String>,
    pub opportunity_id: Option<String>,
    /// Whether this kind of deal must name its opportunity (an Autotask
    /// company turning customer has none).
    pub needs_opportunity: bool,
    pub owner_email: Option<String>,
    pub contact_email: Option<String>,
}

/// What a body says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    /// A won deal.
    Won(WonDeal),
    /// A ConnectWise opportunity callback: whether it is won, and its
    /// company, are asked of the PSA when a connector is configured;
    /// otherwise `from_payload` (what the callback's `Entity` says) stands.
    LookUp {
        opportunity_id: String,
        from_payload: Box<Reading>,
        partial: WonDeal,
    },
    /// Not a won deal; recorded and answered 200.
    Ignored(String),
    /// Unreadable; recorded and answered 400.
    Malformed(String),
}

/// The defaults the intake fills in.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub region: Region,
    pub owner: Option<EmailAddress>,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// Case-insensitive member lookup (vendors disagree on casing).
fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The body as a JSON object, or why it is malformed.
fn parse_json(body: &[u8]) -> Result<Value, String> {
    let value = serde_json::from_slice::<Value>(body).map_err(|e| {
        format!(
            "the body is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err("the body is not a JSON object".into())
    }
}

/// Reads a ConnectWise callback (`Type`, `Action`, `ID`, `Entity` as a JSON
/// string of the record).
pub(crate) fn connectwise(body: &[u8]) -> Reading {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reason) => return Reading::Malformed(reason),
    };
    let kind = text(field(&value, "Type")).unwrap_or_default();
    if !kind.eq_ignore_ascii_case("opportunity") {
        return Reading::Ignored(format!(
            "a ConnectWise `{}` callback is not an opportunity",
            safe_word(&kind)
        ));
    }
    let action = text(field(&value, "Action")).unwrap_or_default();
    if action.eq_ignore_ascii_case("deleted") {
        return Reading::Ignored("the opportunity was deleted".into());
    }
    let entity = match field(&value, "Entity") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) if v.is_object() => v,
            _ => return Reading::Malformed("Entity is not a JSON object in a string".into()),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => return Reading::Malformed("Entity is missing".into()),
    };
    let Some(id) = text(field(&entity, "id")).or_else(|| text(field(&value, "ID"))) else {
        return Reading::Malformed("missing fields: opportunity.id (Entity.id or ID)".into());
    };
    let status = field(&entity, "status");
    let won_flag = status
        .and_then(|s| field(s, "wonFlag"))
        .and_then(Value::as_bool);
    let status_name = status.and_then(|s| text(field(s, "name")));
    let won = won_flag.unwrap_or_else(|| {
        status_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("won"))
    });
    let company = field(&entity, "company");
    let partial = WonDeal {
        psa: "connectwise".into(),
        dedup_key: format!("connectwise:opportunity:{id}:won"),
        company_id: company.and_then(|c| text(field(c, "id"))),
        company_name: company.and_then(|c| text(field(c, "name"))),
        opportunity_id: Some(id.clone()),
        needs_opportunity: true,
        owner_email: field(&entity, "primarySalesRep").and_then(|r| text(field(r, "email"))),
        contact_email: field(&entity, "contact").and_then(|c| text(field(c, "email"))),
        ..WonDeal::default()
    };
    let from_payload = if won {
        Reading::Won(partial.clone())
    } else {
        Reading::Ignored("the opportunity's status is not won".into())
    };
    Reading::LookUp {
        opportunity_id: id,
        from_payload: Box::new(from_payload),
        partial,
    }
}

/// Reads an Autotask webhook (`Action`, `EntityType`, `Id`, `Fields`): an
/// opportunity whose status is won (Autotask's "Closed", 3), or a company
/// whose type turned Customer (1).
pub(crate) fn autotask(body: &[u8]) -> Reading {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reason) => return Reading::Malformed(reason),
    };
    let entity = text(field(&value, "EntityType")).unwrap_or_default();
    let action = text(field(&value, "Action")).unwrap_or_default();
    if action.eq_ignore_ascii_case("delete") || action.eq_ignore_ascii_case("deactivated") {
        return Reading::Ignored(format!("an Autotask `{}` notification", safe_word(&action)));
    }
    let Some(id) = text(field(&value, "Id")) else {
        return Reading::Malformed("missing fields: Id".into());
    };
    let empty = Value::Object(Map::new());
    let fields = field(&value, "Fields").unwrap_or(&empty);
    let is = |name: &str, number: i64, words: &[&str]| {
        field(fields, name).is_some_and(|v| match v {
            Value::Number(n) => n.as_i64() == Some(number),
            Value::String(s) => words.iter().any(|w| s.eq_ignore_ascii_case(w)),
            _ => false,
        })
    };
    let deal = |kind: &str, company_id: Option<String>, opportunity: Option<String>| WonDeal {
        psa: "autotask".into(),
        dedup_key: format!("autotask:{kind}:{id}:won"),
        company_id,
        company_name: text(field(fields, "companyName")),
        m365_tenant_id: None,
        domain: text(field(fields, "webAddress")),
        opportunity_id: opportunity,
        needs_opportunity: kind == "opportunity",
        owner_email: text(field(fields, "ownerEmail")),
        contact_email: text(field(fields, "contactEmail")),
        ..WonDeal::default()
    };
    if entity.eq_ignore_ascii_case("opportunity") || entity.eq_ignore_ascii_case("opportunities") {
        if !is("status", 3, &["closed", "won"]) {
            return Reading::Ignored("the opportunity's status is not won".into());
        }
        let company = text(field(fields, "companyID"));
        Reading::Won(deal("opportunity", company, Some(id.clone())))
    } else if entity.eq_ignore_ascii_case("company") || entity.eq_ignore_ascii_case("companies") {
        if !is("companyType", 1, &["customer"]) {
            return Reading::Ignored("the company's type is not customer".into());
        }
        Reading::Won(deal("company", Some(id.clone()), None))
    } else {
        Reading::Ignored(format!(
            "an Autotask `{}` notification is not a won deal",
            safe_word(&entity)
        ))
    }
}

/// Reads a HaloPSA webhook (`ticket` and `action` objects): a ticket of the
/// opportunity type whose status is won.
pub(crate) fn halopsa(body: &[u8]) -> Reading {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reason) => return Reading::Malformed(reason),
    };
    let Some(ticket) = field(&value, "ticket").filter(|t| t.is_object()) else {
        return Reading::Malformed("missing fields: ticket".into());
    };
    let Some(id) = text(field(ticket, "id")) else {
        return Reading::Malformed("missing fields: ticket.id".into());
    };
    let kind = text(field(ticket, "tickettype_name")).unwrap_or_default();
    if !kind.to_ascii_lowercase().contains("opportunity") {
        return Reading::Ignored("the ticket is not of the opportunity type".into());
    }
    let status = text(field(ticket, "status_name")).unwrap_or_default();
    if !status.eq_ignore_ascii_case("won") {
        return Reading::Ignored("the opportunity's status is not won".into());
    }
    Reading::Won(WonDeal {
        psa: "halopsa".into(),
        dedup_key: format!("halopsa:opportunity:{id}:won"),
        company_id: text(field(ticket, "client_id")),
        company_name: text(field(ticket, "client_name")),
        opportunity_id: Some(id),
        needs_opportunity: true,
        owner_email: text(field(ticket, "agent_email")),
        contact_email: text(field(ticket, "user_email"))
            .or_else(|| text(field(ticket, "emailaddress"))),
        ..WonDeal::default()
    })
}

/// Reads Gatehouse's own format: `{"type": "client.won", "id", "psa"?,
/// "company": {id, name, slug?, region?, m365_tenant_id?}, "opportunity":
/// {id}?, "owner": {email}, "contact": {email}?}`.
pub(crate) fn generic(body: &[u8]) -> Reading {
    let value = match parse_json(body) {
        Ok(v) => v,
        Err(reason) => return Reading::Malformed(reason),
    };
    let kind = text(value.get("type")).unwrap_or_default();
    if kind != "client.won" {
        return Reading::Ignored(format!("a `{}` event is not client.won", safe_word(&kind)));
    }
    let Some(id) = text(value.get("id")) else {
        return Reading::Malformed("missing fields: id".into());
    };
    let psa = match text(value.get("psa")) {
        None => "generic".to_owned(),
        Some(psa) if ["connectwise", "autotask", "halopsa", "generic"].contains(&psa.as_str()) => {
            psa
        }
        Some(_) => {
            return Reading::Malformed(
                "psa must be connectwise, autotask, halopsa or generic".into(),
            );
        }
    };
    Reading::Won(WonDeal {
        psa,
        dedup_key: format!("generic:client.won:{id}"),
        company_id: text(at(&value, &["company", "id"])),
        company_name: text(at(&value, &["company", "name"])),
        slug: text(at(&value, &["company", "slug"])),
        region: text(at(&value, &["company", "region"])),
        m365_tenant_id: text(at(&value, &["company", "m365_tenant_id"])),
        domain: text(at(&value, &["company", "domain"])),
        opportunity_id: text(at(&value, &["opportunity", "id"])).or(Some(id)),
        needs_opportunity: true,
        owner_email: text(at(&value, &["owner", "email"])),
        contact_email: text(at(&value, &["contact", "email"])),
    })
}

/// A word from the body, shown only if it is a plain identifier (so a
/// reason never carries arbitrary text).
fn safe_word(word: &str) -> &str {
    let plain = !word.is_empty()
        && word.len() <= 40
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain { word } else { "unknown" }
}

/// A slug from a company name: lowercase ASCII letters and digits, runs of
/// anything else as one dash, starting with a letter, 3 to 63 characters.
pub(crate) fn slug_from_name(name: &str) -> Option<String> {
    let mut slug = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let trimmed: String = slug
        .trim_start_matches(|c: char| !c.is_ascii_lowercase())
        .chars()
        .take(56)
        .collect();
    let mut slug = trimmed.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        return None;
    }
    while slug.len() < 3 {
        slug.push('x');
    }
    TenantSlug::parse(&slug).ok().map(|s| s.as_str().to_owned())
}

/// The candidates for a derived slug: the base, then `-2`, `-3`, ….
pub(crate) fn slug_candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(base.to_owned()).chain((2..100).map(move |n| format!("{base}-{n}")))
}

/// Completes `deal` with the defaults and checks it: the event payload, or
/// the reason it cannot be one (missing or invalid fields, named). `slug`
/// is the slug to use (given, or derived and free).
pub(crate) fn payload(deal: &WonDeal, slug: &str, defaults: &Defaults) -> Result<Value, String> {
    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    if deal.company_id.is_none() {
        missing.push("company.id");
    }
    if deal.company_name.is_none() {
        missing.push("company.name");
    }
    if deal.needs_opportunity && deal.opportunity_id.is_none() {
        missing.push("opportunity.id");
    }
    let owner = match deal.owner_email.as_deref() {
        Some(text) => match EmailAddress::parse(text) {
            Ok(e) => Some(e),
            Err(_) => {
                invalid.push("owner.email is not an e-mail address");
                None
            }
        },
        None => {
            if defaults.owner.is_none() {
                missing.push("owner.email");
            }
            defaults.owner.clone()
        }
    };
    let contact = match deal.contact_email.as_deref() {
        Some(text) => match EmailAddress::parse(text) {
            Ok(e) => Some(e),
            Err(_) => {
                invalid.push("contact.email is not an e-mail address");
                None
            }
        },
        // No client contact named: the owner collects the documents.
        None => owner.clone(),
    };
    let region = match deal.region.as_deref() {
        Some(text) => match Region::parse(text) {
            Ok(r) => Some(r),
            Err(_) => {
                invalid.push("company.region is not a region code");
                None
            }
        },
        None => Some(defaults.region.clone()),
    };
    let domain = match deal.domain.as_deref() {
        Some(text) => {
            let domain = gatehouse_connectors::ports::domain_from_website(text);
            if domain.is_none() {
                invalid.push("company.domain is not a domain name or website");
            }
            domain
        }
        None => None,
    };
    if TenantSlug::parse(slug).is_err() {
        invalid.push("company.slug is not a valid tenant slug");
    }
    if !missing.is_empty() || !invalid.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing fields: {}", missing.join(", ")));
        }
        parts.extend(invalid.iter().map(|s| (*s).to_owned()));
        return Err(parts.join("; "));
    }
    Ok(json!({
        "psa": deal.psa,
        "company": {
            "id": deal.company_id,
            "name": deal.company_name,
            "slug": slug,
            "region": region.map(|r| r.as_str().to_owned()),
            "m365_tenant_id": deal.m365_tenant_id,
            "domain": domain,
        },
        "opportunity": { "id": deal.opportunity_id },
        "owner": { "email": owner.map(|e| e.as_str().to_owned()) },
        "contact": { "email": contact.map(|e| e.as_str().to_owned()) },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            region: Region::parse("eu").unwrap(),
            owner: None,
        }
    }

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slug_from_name("Acme Corp.").as_deref(), Some("acme-corp"));
        assert_eq!(
            slug_from_name("  Zoë & Sons, Ltd ").as_deref(),
            Some("zo-sons-ltd")
        );
        assert_eq!(slug_from_name("3M Europe").as_deref(), Some("m-europe"));
        assert_eq!(slug_from_name("Q").as_deref(), Some("qxx"));
        assert_eq!(slug_from_name("!!!"), None);
        let long = "a".repeat(100);
        assert_eq!(slug_from_name(&long).map(|s| s.len()), Some(56));
        let mut c = slug_candidates("acme");
        assert_eq!(c.next().as_deref(), Some("acme"));
        assert_eq!(c.next().as_deref(), Some("acme-2"));
    }

    #[test]
    fn connectwise_reads_the_entity_string() {
        let entity =
            json!({"id": 77, "status": {"name": "Won"}, "company": {"id": 5, "name": "Acme"}})
                .to_string();
        let body = json!({"Type": "Opportunity", "Action": "updated", "ID": 77, "Entity": entity})
            .to_string();
        let Reading::LookUp {
            opportunity_id,
            from_payload,
            ..
        } = connectwise(body.as_bytes())
        else {
            panic!("a lookup");
        };
        assert_eq!(opportunity_id, "77");
        let Reading::Won(deal) = *from_payload else {
            panic!("won")
        };
        assert_eq!(deal.dedup_key, "connectwise:opportunity:77:won");
        assert_eq!(deal.company_name.as_deref(), Some("Acme"));

        let lost = json!({"Type": "Opportunity", "Entity": json!({"id": 1, "status": {"name": "Lost"}}).to_string()}).to_string();
        let Reading::LookUp { from_payload, .. } = connectwise(lost.as_bytes()) else {
            panic!()
        };
        assert!(matches!(*from_payload, Reading::Ignored(_)));
        let odd = json!({"type": "client.won", "id": "1", "psa": "<b>"}).to_string();
        assert!(matches!(generic(odd.as_bytes()), Reading::Malformed(r) if !r.contains("<b>")));
        let ticket = json!({"Type": "Ticket", "Entity": "{}"}).to_string();
        assert!(matches!(
            connectwise(ticket.as_bytes()),
            Reading::Ignored(_)
        ));
        assert!(matches!(connectwise(b"{"), Reading::Malformed(_)));
    }

    #[test]
    fn missing_fields_are_named_and_values_never_echoed() {
        let deal = WonDeal {
            psa: "generic".into(),
            company_name: Some("Acme".into()),
            owner_email: Some("<script>".into()),
            needs_opportunity: true,
            ..WonDeal::default()
        };
        let err = payload(&deal, "acme", &defaults()).unwrap_err();
        assert_eq!(
            err,
            "missing fields: company.id, opportunity.id; owner.email is not an e-mail address"
        );
        assert!(!err.contains("script"));
    }

    #[test]
    fn the_contact_defaults_to_the_owner_and_the_region_to_the_default() {
        let deal = WonDeal {
            psa: "autotask".into(),
            company_id: Some("9".into()),
            company_name: Some("Acme".into()),
            opportunity_id: Some("4".into()),
            owner_email: Some("lead@msp.example".into()),
            ..WonDeal::default()
        };
        let value = payload(&deal, "acme", &defaults()).unwrap();
        assert_eq!(value["contact"]["email"], "lead@msp.example");
        assert_eq!(value["company"]["region"], "eu");
        assert_eq!(value["company"]["slug"], "acme");
        assert_eq!(value["company"]["m365_tenant_id"], Value::Null);
        assert_eq!(value["company"]["domain"], Value::Null);
    }

    #[test]
    fn the_domain_comes_from_the_website_and_a_bad_one_is_named() {
        let body = json!({"Action": "Update", "EntityType": "Company", "Id": 7,
            "Fields": {"companyType": 1, "companyName": "Tailspin Toys",
                       "webAddress": "https://www.TailspinToys.com/"}});
        let Reading::Won(deal) = autotask(body.to_string().as_bytes()) else {
            panic!("won");
        };
        let mut deal = WonDeal {
            owner_email: Some("lead@msp.example".into()),
            ..deal
        };
        let value = payload(&deal, "tailspin-toys", &defaults()).unwrap();
        assert_eq!(value["company"]["domain"], "tailspintoys.com");
        deal.domain = Some("not a <domain>".into());
        let err = payload(&deal, "tailspin-toys", &defaults()).unwrap_err();
        assert_eq!(err, "company.domain is not a domain name or website");
    }
}
