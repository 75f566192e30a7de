//! Rows as the databases return them, and their parsing back into domain
//! types. A value that does not parse is reported as corrupt, never
//! silently dropped or defaulted.

use gatehouse_core::id::{OperatorId, TenantId, TokenId};
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, TokenHash};
use gatehouse_core::secret::{SecretMeta, SecretName};
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug};
use time::OffsetDateTime;

fn corrupt(what: &str) -> impl FnOnce(gatehouse_core::DomainError) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: String,
    slug: String,
    display_name: String,
    region: String,
    state: String,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: row.id.parse().map_err(corrupt("tenants.id"))?,
            slug: TenantSlug::parse(&row.slug).map_err(corrupt("tenants.slug"))?,
            display_name: DisplayName::parse(&row.display_name)
                .map_err(corrupt("tenants.display_name"))?,
            region: Region::parse(&row.region).map_err(corrupt("tenants.region"))?,
            state: row.state.parse().map_err(corrupt("tenants.state"))?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantKeyRow {
    tenant_id: String,
    kek_id: String,
    wrapped: Vec<u8>,
    created_at: OffsetDateTime,
    rewrapped_at: Option<OffsetDateTime>,
}

impl TryFrom<TenantKeyRow> for TenantKey {
    type Error = StoreError;

    fn try_from(row: TenantKeyRow) -> Result<Self, StoreError> {
        Ok(TenantKey {
            tenant_id: row
                .tenant_id
                .parse::<TenantId>()
                .map_err(corrupt("tenant_keys.tenant_id"))?,
            wrapped: WrappedKey {
                kek_id: row.kek_id,
                ciphertext: row.wrapped,
            },
            created_at: row.created_at,
            rewrapped_at: row.rewrapped_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretMetaRow {
    tenant_id: String,
    name: String,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<SecretMetaRow> for SecretMeta {
    type Error = StoreError;

    fn try_from(row: SecretMetaRow) -> Result<Self, StoreError> {
        Ok(SecretMeta {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(corrupt("tenant_secrets.tenant_id"))?,
            name: SecretName::parse(&row.name).map_err(corrupt("tenant_secrets.name"))?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OperatorRow {
    id: String,
    name: String,
    display_name: String,
    role: String,
    disabled: bool,
    created_at: OffsetDateTime,
}

impl TryFrom<OperatorRow> for Operator {
    type Error = StoreError;

    fn try_from(row: OperatorRow) -> Result<Self, StoreError> {
        Ok(Operator {
            id: row
                .id
                .parse::<OperatorId>()
                .map_err(corrupt("operators.id"))?,
            name: OperatorName::parse(&row.name).map_err(corrupt("operators.name"))?,
            display_name: DisplayName::parse(&row.display_name)
                .map_err(corrupt("operators.display_name"))?,
            role: row.role.parse().map_err(corrupt("operators.role"))?,
            disabled: row.disabled,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    operator_id: String,
    name: String,
    token_hash: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(ApiToken {
            id: row
                .id
                .parse::<TokenId>()
                .map_err(corrupt("api_tokens.id"))?,
            operator_id: row
                .operator_id
                .parse()
                .map_err(corrupt("api_tokens.operator_id"))?,
            name: row.name,
            hash: TokenHash::from_stored(row.token_hash),
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// A token joined with its operator (columns of both, operator ones prefixed `op_`).
#[derive(sqlx::FromRow)]
pub(crate) struct TokenWithOperatorRow {
    #[sqlx(flatten)]
    pub(crate) token: TokenRow,
    op_id: String,
    op_name: String,
    op_display_name: String,
    op_role: String,
    op_disabled: bool,
    op_created_at: OffsetDateTime,
}

impl TokenWithOperatorRow {
    pub(crate) fn operator(&self) -> Result<Operator, StoreError> {
        Operator::try_from(OperatorRow {
            id: self.op_id.clone(),
            name: self.op_name.clone(),
            display_name: self.op_display_name.clone(),
            role: self.op_role.clone(),
            disabled: self.op_disabled,
            created_at: self.op_created_at,
        })
    }
}
