//! `gatehouse kb …`: a tenant's knowledge base at the command line.

use std::io::Read;
use std::process::ExitCode;

use gatehouse_core::id::ArticleId;
use gatehouse_core::kb::{Article, ArticleContent, Collection, Tag};
use gatehouse_core::operator::OperatorName;
use gatehouse_kb::SearchRequest;
use gatehouse_server::app::{ArticleFilter, MAX_PAGE, TenantRef};
use serde_json::{Value, json};

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Knowledge-base subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KbCommand {
    /// List a tenant's articles.
    List {
        /// Tenant id or slug.
        tenant: String,
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one article.
    Show {
        /// Tenant id or slug.
        tenant: String,
        /// Article id (`kba_…`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new article; its body is read from `--body-file` or standard input.
    Add {
        /// Tenant id or slug.
        tenant: String,
        /// The collection, such as `runbooks`.
        #[arg(long)]
        collection: String,
        /// The title.
        #[arg(long)]
        title: String,
        /// A tag (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Read the body from this file instead of standard input.
        #[arg(long)]
        body_file: Option<std::path::PathBuf>,
        /// Write as this operator (default: Gatehouse itself, `system`).
        #[arg(long = "as")]
        as_operator: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Full-text search: words (all required), "phrases", OR, -word, title:word.
    Search {
        /// Tenant id or slug.
        tenant: String,
        /// The query.
        query: String,
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Only articles with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// At most this many results (1–100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Skip this many results.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn article_json(article: &Article) -> Value {
    json!({
        "id": article.id.to_string(),
        "tenant_id": article.tenant_id.to_string(),
        "collection": article.collection.as_str(),
        "version": article.version,
        "title": article.content.title,
        "body": article.content.body,
        "tags": article.content.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
        "created_by": article.created_by,
        "author": article.author,
        "created_at": rfc3339(article.created_at),
        "updated_at": rfc3339(article.updated_at),
    })
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

fn collection(text: Option<String>) -> Result<Option<Collection>, CliError> {
    Ok(text.as_deref().map(Collection::parse).transpose()?)
}

/// Runs a knowledge-base subcommand.
pub async fn run(args: &ConfigArgs, command: KbCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        KbCommand::List {
            tenant,
            collection: only,
            json,
        } => {
            let tenant = TenantRef::parse(&tenant);
            let only = collection(only)?;
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = app
                    .kb_articles(
                        &CLI,
                        &tenant,
                        ArticleFilter {
                            collection: only.clone(),
                            after,
                            limit: MAX_PAGE,
                        },
                    )
                    .await?;
                all.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if json {
                print_json(&all.iter().map(article_json).collect::<Vec<_>>())?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.to_string(),
                            a.collection.to_string(),
                            a.version.to_string(),
                            a.content.title.clone(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "COLLECTION", "VERSION", "TITLE"], &rows);
            }
        }
        KbCommand::Show { tenant, id, json } => {
            let id: ArticleId = id.parse()?;
            let article = app.kb_article(&CLI, &TenantRef::parse(&tenant), id).await?;
            if json {
                print_json(&article_json(&article))?;
            } else {
                println!("# {}", article.content.title);
                println!(
                    "{} · {} · version {} by {} at {}",
                    article.id,
                    article.collection,
                    article.version,
                    article.author,
                    rfc3339(article.updated_at)
                );
                if !article.content.tags.is_empty() {
                    let tags: Vec<&str> = article.content.tags.iter().map(Tag::as_str).collect();
                    println!("tags: {}", tags.join(", "));
                }
                println!();
                println!("{}", article.content.body);
            }
        }
        KbCommand::Add {
            tenant,
            collection: into,
            title,
            tags,
            body_file,
            as_operator,
            json,
        } => {
            let body = match body_file {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?,
                None => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text)?;
                    text
                }
            };
            let tags = tags
                .iter()
                .map(|t| Tag::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            let content = ArticleContent::new(&title, &body, tags)?;
            let actor = match as_operator {
                Some(name) => app.act_as(&OperatorName::parse(&name)?).await?,
                None => CLI,
            };
            let article = app
                .create_kb_article(
                    &actor,
                    &TenantRef::parse(&tenant),
                    Collection::parse(&into)?,
                    content,
                )
                .await?;
            if json {
                print_json(&article_json(&article))?;
            } else {
                println!("{}", article.id);
            }
        }
        KbCommand::Search {
            tenant,
            query,
            collection: only,
            tag,
            limit,
            offset,
            json,
        } => {
            let request = SearchRequest {
                query,
                collection: collection(only)?,
                tag: tag.as_deref().map(Tag::parse).transpose()?,
                offset,
                limit,
            };
            let results = app
                .search_kb(&CLI, &TenantRef::parse(&tenant), request)
                .await?;
            if json {
                print_json(&results)?;
            } else {
                println!("{} matching article(s)", results.total);
                for hit in &results.hits {
                    println!();
                    println!("{}  {}  ({:.2})", hit.id, hit.title.text, hit.score);
                    println!("    {}", hit.snippet.text.replace('\n', " "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
