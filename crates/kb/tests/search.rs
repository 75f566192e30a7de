//! Search over one tenant's in-memory index: ranking, phrases, boolean
//! queries, filters, paging, highlights, edits and bad queries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use gatehouse_core::id::{ArticleId, TenantId};
use gatehouse_core::kb::{Article, ArticleContent, Collection, Tag};
use gatehouse_kb::{KbError, SearchRequest, TenantIndex};
use time::{Duration, OffsetDateTime};

fn article(n: i64, collection: &str, title: &str, body: &str, tags: &[&str]) -> Article {
    let at = OffsetDateTime::UNIX_EPOCH + Duration::seconds(n);
    Article {
        id: ArticleId::generate(at),
        tenant_id: TenantId::generate(OffsetDateTime::UNIX_EPOCH),
        collection: Collection::parse(collection).unwrap(),
        version: 1,
        created_by: "system".into(),
        author: "system".into(),
        created_at: at,
        updated_at: at,
        content: ArticleContent::new(
            title,
            body,
            tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        )
        .unwrap(),
    }
}

fn request(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        collection: None,
        tag: None,
        offset: 0,
        limit: 10,
    }
}

struct Fixture {
    index: TenantIndex,
    firewall_title: Article,
    firewall_body: Article,
    backup: Article,
    printer: Article,
}

fn fixture() -> Fixture {
    let firewall_title = article(
        1,
        "runbooks",
        "Firewall rules",
        "Which ports are open at the office and who may change them.",
        &["network"],
    );
    let firewall_body = article(
        2,
        "runbooks",
        "Network overview",
        "The office network has two VLANs. The firewall sits between them and the internet circuit.",
        &["network"],
    );
    let backup = article(
        3,
        "runbooks",
        "Backup and disaster recovery",
        "Nightly backups run at 02:00. The last tested restore took four hours.",
        &["backup", "dr"],
    );
    let printer = article(
        4,
        "known-issues",
        "Printer drops off the network",
        "The restore of the printer's settings after a power cut is manual.",
        &["printers"],
    );
    let mut index = TenantIndex::new().unwrap();
    index
        .apply(
            &[
                firewall_title.clone(),
                firewall_body.clone(),
                backup.clone(),
                printer.clone(),
            ],
            &[],
        )
        .unwrap();
    Fixture {
        index,
        firewall_title,
        firewall_body,
        backup,
        printer,
    }
}

fn ids(results: &gatehouse_kb::SearchResults) -> Vec<ArticleId> {
    results.hits.iter().map(|h| h.id).collect()
}

#[test]
fn finds_words_in_title_and_body_and_ranks_title_hits_higher() {
    let f = fixture();
    let results = f.index.search(&request("firewall")).unwrap();
    assert_eq!(results.total, 2);
    assert_eq!(ids(&results), vec![f.firewall_title.id, f.firewall_body.id]);
    assert!(results.hits[0].score > results.hits[1].score);
    // Highlights: the title match, and the body fragment around its match.
    let top = &results.hits[0];
    assert_eq!(top.title.html, "<mark>Firewall</mark> rules");
    assert_eq!(top.title.highlights, vec![[0, 8]]);
    let second = &results.hits[1];
    assert!(
        second.snippet.html.contains("<mark>firewall</mark>"),
        "{}",
        second.snippet.html
    );
    let [start, end] = second.snippet.highlights[0];
    let marked: String = second
        .snippet
        .text
        .chars()
        .skip(start)
        .take(end - start)
        .collect();
    assert_eq!(marked, "firewall");
    // Only the title matched: the snippet is the body's opening, unmarked.
    assert!(top.snippet.highlights.is_empty());
    assert!(top.snippet.text.starts_with("Which ports"));
}

#[test]
fn stems_terms_requires_all_terms_and_understands_boolean_queries() {
    let f = fixture();
    // "backup" matches "Backup" and "backups".
    assert_eq!(
        ids(&f.index.search(&request("backup")).unwrap()),
        vec![f.backup.id]
    );
    // Both terms are required by default.
    assert_eq!(
        ids(&f.index.search(&request("restore printer")).unwrap()),
        vec![f.printer.id]
    );
    let either = f.index.search(&request("firewall OR printer")).unwrap();
    assert_eq!(either.total, 3);
    let not = f.index.search(&request("restore -printer")).unwrap();
    assert_eq!(ids(&not), vec![f.backup.id]);
    let title_only = f.index.search(&request("title:network")).unwrap();
    assert_eq!(title_only.total, 2, "overview and printer titles");
}

#[test]
fn phrase_queries_match_words_in_order() {
    let f = fixture();
    let phrase = f.index.search(&request("\"tested restore\"")).unwrap();
    assert_eq!(ids(&phrase), vec![f.backup.id]);
    assert!(
        phrase.hits[0]
            .snippet
            .html
            .contains("<mark>tested</mark> <mark>restore</mark>")
    );
    // The same words, not adjacent in this order: no match.
    assert_eq!(
        f.index
            .search(&request("\"restore tested\""))
            .unwrap()
            .total,
        0
    );
}

#[test]
fn filters_by_collection_and_tag_and_pages() {
    let f = fixture();
    let mut known = request("network");
    known.collection = Some(Collection::parse("known-issues").unwrap());
    assert_eq!(ids(&f.index.search(&known).unwrap()), vec![f.printer.id]);
    let mut tagged = request("network OR backup");
    tagged.tag = Some(Tag::parse("dr").unwrap());
    assert_eq!(ids(&f.index.search(&tagged).unwrap()), vec![f.backup.id]);

    let all = f
        .index
        .search(&request("network OR firewall OR backup"))
        .unwrap();
    assert_eq!(all.total, 4);
    let mut page = request("network OR firewall OR backup");
    page.limit = 3;
    let first = f.index.search(&page).unwrap();
    page.offset = 3;
    let second = f.index.search(&page).unwrap();
    assert_eq!(first.total, 4);
    assert_eq!(second.total, 4);
    assert_eq!(first.hits.len(), 3);
    assert_eq!(second.hits.len(), 1);
    let mut paged = ids(&first);
    paged.extend(ids(&second));
    assert_eq!(paged, ids(&all));
}

#[test]
fn edits_and_removals_update_the_index() {
    let mut f = fixture();
    let mut edited = f.backup.clone();
    edited.version = 2;
    edited.content =
        ArticleContent::new("Backup", "Backups now go to the immutable vault.", vec![]).unwrap();
    f.index.apply(&[edited.clone()], &[f.printer.id]).unwrap();
    assert_eq!(
        f.index.search(&request("tested")).unwrap().total,
        0,
        "old words are gone"
    );
    let found = f.index.search(&request("immutable")).unwrap();
    assert_eq!(ids(&found), vec![edited.id]);
    assert_eq!(found.hits[0].version, 2);
    assert_eq!(f.index.search(&request("printer")).unwrap().total, 0);
    assert_eq!(f.index.len(), 3);
    // An older version arriving late does not move the article back.
    f.index.apply(&[f.backup.clone()], &[]).unwrap();
    assert_eq!(f.index.search(&request("immutable")).unwrap().total, 1);
}

#[test]
fn bad_queries_are_refused_with_a_reason() {
    let f = fixture();
    for bad in [
        "",
        "   ",
        "nosuchfield:x",
        "title:(firewall",
        "\"unclosed phrase",
    ] {
        match f.index.search(&request(bad)) {
            Err(KbError::BadQuery(reason)) => assert!(!reason.is_empty()),
            other => panic!("{bad:?}: expected a bad query, got {other:?}"),
        }
    }
    let long = "a ".repeat(600);
    assert!(matches!(
        f.index.search(&request(&long)),
        Err(KbError::BadQuery(_))
    ));
    let mut zero = request("firewall");
    zero.limit = 0;
    assert!(matches!(f.index.search(&zero), Err(KbError::BadQuery(_))));
}
