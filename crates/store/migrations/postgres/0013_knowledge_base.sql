-- The knowledge base: client runbooks and articles.
-- Titles, bodies and tags are sealed under the tenant's data key (`sealed`);
-- what stays in the clear is what scoping, paging and versioning need.
-- Articles hang off the tenant's key like secrets do: destroying the key
-- (deleting the tenant) removes them, their history and their publications.

CREATE TABLE kb_articles (
    tenant_id  TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    collection TEXT NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 1),
    created_by TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    sealed     BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX kb_articles_collection ON kb_articles (tenant_id, collection, id);

-- Every version of every article, the current one included.
CREATE TABLE kb_article_versions (
    tenant_id  TEXT NOT NULL,
    article_id TEXT NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 1),
    author     TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    sealed     BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, article_id, version),
    FOREIGN KEY (tenant_id, article_id) REFERENCES kb_articles (tenant_id, id) ON DELETE CASCADE
);

-- What one `kb.publish` call created, under its idempotency key, so that a
-- retried call finds its articles instead of writing them again.
CREATE TABLE kb_publications (
    tenant_id  TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    collection TEXT NOT NULL,
    articles   TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
