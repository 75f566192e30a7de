//! One tenant's search index: a tantivy index held in memory.
//!
//! The index holds the opened (plaintext) titles and bodies of one
//! tenant's articles, so it never touches a disk: it is built in RAM from
//! the articles the service opened with the tenant's key, and dropped when
//! the [`crate::IndexCache`] evicts it. One index per tenant means a
//! search cannot reach another tenant's article, whatever its query says:
//! there is nothing of theirs in it.
//!
//! Writes are applied in batches ([`TenantIndex::apply`]): a writer is
//! opened, the changed documents replaced, the batch committed and the
//! writer closed again, so an idle index costs no threads. Tantivy is
//! blocking; callers on an async runtime run these methods on a blocking
//! thread.

use std::collections::HashMap;

use gatehouse_core::id::ArticleId;
use gatehouse_core::kb::{Article, Collection, Tag};
use serde::Serialize;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::{Snippet, SnippetGenerator};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::KbError;

/// How much more a match in the title counts than one in the body.
pub const TITLE_BOOST: f32 = 3.0;
/// The longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// The most results one page returns.
pub const MAX_PAGE: usize = 100;
/// Characters of body text around the matches in a snippet.
const SNIPPET_CHARS: usize = 200;
/// The writer's memory budget: tantivy's minimum, plenty for a batch of
/// articles (it flushes to a new in-memory segment when it is reached).
const WRITER_BUDGET: usize = 15_000_000;

/// A search, as parsed at the edge.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The query: terms, `"phrases"`, `AND`/`OR`/`NOT` (or `+`/`-`),
    /// parentheses, `title:`/`body:` prefixes. Terms are required by
    /// default (`backup restore` finds articles with both).
    pub query: String,
    /// Only articles of this collection.
    pub collection: Option<Collection>,
    /// Only articles with this tag.
    pub tag: Option<Tag>,
    /// Skip this many results (pagination).
    pub offset: usize,
    /// At most this many results (1 to [`MAX_PAGE`]).
    pub limit: usize,
}

/// A part of a text with its matches marked.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Highlighted {
    /// The text (for a body, the fragment around the best matches).
    pub text: String,
    /// The matches, as `[start, end)` character offsets into `text`.
    pub highlights: Vec<[usize; 2]>,
    /// `text` as HTML: escaped, with each match in `<mark>…</mark>`.
    pub html: String,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// The article.
    #[schema(value_type = String)]
    pub id: ArticleId,
    /// Its collection.
    #[schema(value_type = String)]
    pub collection: Collection,
    /// Its version when indexed.
    pub version: u32,
    /// Its relevance (BM25, title matches boosted); higher is better.
    pub score: f32,
    /// The title, with its matches.
    pub title: Highlighted,
    /// A fragment of the body around the best matches (the start of the
    /// body when only the title matched).
    pub snippet: Highlighted,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    /// How many articles match in all (every page).
    pub total: usize,
    /// This page, best first.
    pub hits: Vec<SearchHit>,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    body: Field,
    collection: Field,
    tags: Field,
}

/// One tenant's in-memory index and the versions it holds.
pub struct TenantIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    versions: HashMap<ArticleId, u32>,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantIndex")
            .field("articles", &self.versions.len())
            .finish_non_exhaustive()
    }
}

fn index_error(context: &'static str) -> impl FnOnce(tantivy::TantivyError) -> KbError {
    move |err| KbError::Index(format!("{context}: {err}"))
}

impl TenantIndex {
    /// An empty index.
    pub fn new() -> Result<Self, KbError> {
        let mut schema = Schema::builder();
        // English stemming, with positions for phrase queries.
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let fields = Fields {
            id: schema.add_text_field("id", STRING | STORED),
            title: schema.add_text_field("title", text.clone()),
            body: schema.add_text_field("body", text),
            collection: schema.add_text_field("collection", STRING | STORED),
            tags: schema.add_text_field("tags", STRING),
        };
        let index = Index::create_in_ram(schema.build());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_error("opening the index reader"))?;
        Ok(Self {
            index,
            reader,
            fields,
            versions: HashMap::new(),
        })
    }

    /// The version of each indexed article.
    pub fn versions(&self) -> &HashMap<ArticleId, u32> {
        &self.versions
    }

    /// How many articles are indexed.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Adds or replaces `upserts` (an article already indexed at the same
    /// or a later version is left alone, so batches racing each other
    /// cannot move an article back) and removes `removals`.
    pub fn apply(&mut self, upserts: &[Article], removals: &[ArticleId]) -> Result<(), KbError> {
        let upserts: Vec<&Article> = upserts
            .iter()
            .filter(|a| self.versions.get(&a.id).is_none_or(|v| *v < a.version))
            .collect();
        let removals: Vec<ArticleId> = removals
            .iter()
            .copied()
            .filter(|id| self.versions.contains_key(id))
            .collect();
        if upserts.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let mut writer: IndexWriter = self
            .index
            .writer_with_num_threads(1, WRITER_BUDGET)
            .map_err(index_error("opening the index writer"))?;
        let f = self.fields;
        for id in &removals {
            writer.delete_term(Term::from_field_text(f.id, &id.to_string()));
        }
        for article in &upserts {
            let id = article.id.to_string();
            writer.delete_term(Term::from_field_text(f.id, &id));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.id, &id);
            doc.add_text(f.title, &article.content.title);
            doc.add_text(f.body, &article.content.body);
            doc.add_text(f.collection, article.collection.as_str());
            for tag in &article.content.tags {
                doc.add_text(f.tags, tag.as_str());
            }
            writer
                .add_document(doc)
                .map_err(index_error("indexing an article"))?;
        }
        writer
            .commit()
            .map_err(index_error("committing the index"))?;
        writer
            .wait_merging_threads()
            .map_err(index_error("merging the index"))?;
        self.reader
            .reload()
            .map_err(index_error("reloading the index"))?;
        for id in &removals {
            self.versions.remove(id);
        }
        for article in upserts {
            self.versions.insert(article.id, article.version);
        }
        Ok(())
    }

    /// Parses `query` as a user typed it; [`KbError::BadQuery`] says why not.
    fn parse(&self, query: &str) -> Result<Box<dyn Query>, KbError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(KbError::BadQuery("the query is empty".into()));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(KbError::BadQuery(format!(
                "the query is longer than {MAX_QUERY_CHARS} characters"
            )));
        }
        let mut parser =
            QueryParser::for_index(&self.index, vec![self.fields.title, self.fields.body]);
        parser.set_conjunction_by_default();
        parser.set_field_boost(self.fields.title, TITLE_BOOST);
        parser
            .parse_query(query)
            .map_err(|err| KbError::BadQuery(err.to_string()))
    }

    /// Runs `request`: ranked hits with highlighted titles and snippets.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults, KbError> {
        if request.limit == 0 || request.limit > MAX_PAGE {
            return Err(KbError::BadQuery(format!(
                "the limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let f = self.fields;
        let user = self.parse(&request.query)?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user.box_clone())];
        if let Some(collection) = &request.collection {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.collection, collection.as_str()),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if let Some(tag) = &request.tag {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.tags, tag.as_str()),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let (top, total) = searcher
            .search(
                &query,
                &(
                    TopDocs::with_limit(request.limit).and_offset(request.offset),
                    Count,
                ),
            )
            .map_err(index_error("searching"))?;
        let mut title_snippets = SnippetGenerator::create(&searcher, &*user, f.title)
            .map_err(index_error("highlighting"))?;
        title_snippets.set_max_num_chars(1000);
        let mut body_snippets = SnippetGenerator::create(&searcher, &*user, f.body)
            .map_err(index_error("highlighting"))?;
        body_snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(index_error("reading a result"))?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let id: ArticleId = text(f.id)
                .parse()
                .map_err(|e| KbError::Index(format!("an indexed id does not parse: {e}")))?;
            let collection = Collection::parse(&text(f.collection)).map_err(|e| {
                KbError::Index(format!("an indexed collection does not parse: {e}"))
            })?;
            let title = text(f.title);
            let body = text(f.body);
            // The whole title, its matches marked.
            let title = match title_snippets.snippet(&title) {
                s if s.is_empty() => plain(&title),
                s => match title.find(s.fragment()) {
                    Some(offset) => highlighted(&title, offset, &s),
                    None => plain(&title),
                },
            };
            let snippet = match body_snippets.snippet(&body) {
                s if s.is_empty() => plain(&opening(&body, SNIPPET_CHARS)),
                s => highlighted(s.fragment(), 0, &s),
            };
            hits.push(SearchHit {
                version: self.versions.get(&id).copied().unwrap_or_default(),
                id,
                collection,
                score,
                title,
                snippet,
            });
        }
        Ok(SearchResults { total, hits })
    }
}

/// A text without matches.
fn plain(text: &str) -> Highlighted {
    Highlighted {
        text: text.to_owned(),
        highlights: Vec::new(),
        html: escape(text),
    }
}

/// The first `max` characters of `text`, cut at a word boundary.
fn opening(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(char::is_whitespace) {
        Some(at) if at > 0 => cut[..at].to_owned(),
        _ => cut,
    }
}

/// `text` with the matches of `snippet`, whose fragment starts at byte
/// `offset` of `text`, as character offsets and HTML.
fn highlighted(text: &str, offset: usize, snippet: &Snippet) -> Highlighted {
    let mut highlights = Vec::new();
    let mut html = String::new();
    let mut at = 0;
    for range in snippet.highlighted() {
        let (start, end) = (range.start + offset, range.end + offset);
        let (Some(before), Some(marked)) = (text.get(at..start), text.get(start..end)) else {
            continue;
        };
        html.push_str(&escape(before));
        html.push_str("<mark>");
        html.push_str(&escape(marked));
        html.push_str("</mark>");
        let first = text.get(..start).map_or(0, |prefix| prefix.chars().count());
        highlights.push([first, first + marked.chars().count()]);
        at = end;
    }
    html.push_str(&escape(text.get(at..).unwrap_or_default()));
    Highlighted {
        text: text.to_owned(),
        highlights,
        html,
    }
}

/// `text` safe to put in HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
