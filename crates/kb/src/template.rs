//! Article templates: Markdown files that `kb.publish` renders with a
//! tenant's details into one article per top-level heading.
//!
//! The format, kept deliberately small so an MSP can write its own:
//!
//! ```text
//! <!-- Anything before the first `# ` heading is a comment for authors. -->
//! # {{ tenant.name }}: contacts and escalation
//! tags: contacts, escalation
//!
//! Body in Markdown, down to the next `# ` heading.
//! ```
//!
//! Each line starting with `# ` opens an article whose title is the rest of
//! the line. A first line `tags: a, b` under it gives its tags. The
//! placeholders `{{ name }}` are replaced from the variables the caller
//! passes; a placeholder without a value is an error, never left in the
//! text or silently emptied.

use std::collections::BTreeMap;

use gatehouse_core::kb::{ArticleContent, Tag};

use crate::KbError;

/// The built-in client runbook: the knowledge-transfer checklist of an MSP
/// taking over a client, one article per topic.
pub const CLIENT_RUNBOOK: &str = include_str!("../templates/client-runbook.md");

/// The built-in template called `name`, if there is one.
pub fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "client-runbook" => Some(CLIENT_RUNBOOK),
        _ => None,
    }
}

/// The names of the built-in templates.
pub const BUILTIN_NAMES: &[&str] = &["client-runbook"];

/// Replaces every `{{ name }}` in `text` from `vars`.
fn fill(text: &str, vars: &BTreeMap<String, String>, line: usize) -> Result<String, KbError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(KbError::Template(format!(
                "line {line}: `{{{{` without a closing `}}}}`"
            )));
        };
        let name = after[..close].trim();
        let value = vars.get(name).ok_or_else(|| {
            KbError::Template(format!("line {line}: no value for `{{{{ {name} }}}}`"))
        })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders `template` with `vars` into articles, in the template's order.
pub fn render(
    template: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<ArticleContent>, KbError> {
    struct Draft {
        title: String,
        tags: Vec<Tag>,
        body: Vec<String>,
        line: usize,
    }
    let mut drafts: Vec<Draft> = Vec::new();
    let mut in_comment = false;
    for (number, raw) in template.lines().enumerate() {
        let line = number + 1;
        if let Some(title) = raw.strip_prefix("# ") {
            drafts.push(Draft {
                title: fill(title, vars, line)?,
                tags: Vec::new(),
                body: Vec::new(),
                line,
            });
            continue;
        }
        let Some(draft) = drafts.last_mut() else {
            // The preamble: comments for the template's authors.
            in_comment = in_comment || raw.contains("<!--");
            if in_comment && raw.contains("-->") {
                in_comment = false;
            }
            continue;
        };
        if draft.body.is_empty()
            && draft.tags.is_empty()
            && let Some(list) = raw.strip_prefix("tags:")
        {
            for tag in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                draft.tags.push(
                    Tag::parse(tag).map_err(|e| KbError::Template(format!("line {line}: {e}")))?,
                );
            }
            continue;
        }
        draft.body.push(fill(raw, vars, line)?);
    }
    if drafts.is_empty() {
        return Err(KbError::Template(
            "the template has no article (no line starting with `# `)".into(),
        ));
    }
    drafts
        .into_iter()
        .map(|draft| {
            let body = draft.body.join("\n");
            ArticleContent::new(&draft.title, body.trim(), draft.tags)
                .map_err(|e| KbError::Template(format!("the article at line {}: {e}", draft.line)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [
            ("tenant.name", "Northwind Legal"),
            ("tenant.slug", "northwind"),
            ("tenant.id", "ten_x"),
            ("tenant.region", "eu"),
            ("docs_organization", "org-42"),
            ("published_on", "2026-12-05"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn renders_one_article_per_heading() {
        let template = "<!-- about\nthis -->\n# {{ tenant.name }} contacts\ntags: contacts, escalation\n\nCall {{tenant.slug}}.\n# Backups\nBody";
        let articles = render(template, &vars()).unwrap();
        assert_eq!(articles.len(), 2);
        assert_eq!(articles[0].title, "Northwind Legal contacts");
        assert_eq!(articles[0].body, "Call northwind.");
        assert_eq!(
            articles[0].tags,
            vec![
                Tag::parse("contacts").unwrap(),
                Tag::parse("escalation").unwrap()
            ]
        );
        assert_eq!(articles[1].title, "Backups");
        assert!(articles[1].tags.is_empty());
    }

    #[test]
    fn a_missing_value_or_bad_tag_is_an_error() {
        assert!(matches!(
            render("# T\n{{ tenant.owner }}", &vars()),
            Err(KbError::Template(m)) if m.contains("tenant.owner")
        ));
        assert!(render("# T\n{{ open", &vars()).is_err());
        assert!(render("# T\ntags: Not A Tag", &vars()).is_err());
        assert!(render("no heading", &vars()).is_err());
    }

    #[test]
    fn the_client_runbook_renders_with_the_documented_variables() {
        let articles = render(CLIENT_RUNBOOK, &vars()).unwrap();
        assert!(articles.len() >= 8, "{} articles", articles.len());
        for article in &articles {
            assert!(!article.body.is_empty(), "{} has a body", article.title);
            assert!(
                !article.body.contains("{{"),
                "{} is fully rendered",
                article.title
            );
        }
        assert!(articles.iter().any(|a| a.title.contains("Northwind Legal")));
        assert!(builtin("client-runbook").is_some());
        assert!(builtin("nope").is_none());
    }
}
