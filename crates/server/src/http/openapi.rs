//! The OpenAPI document's frame: title, version, security scheme. The paths
//! come from the routes themselves (see `super::api_routes`).

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Gatehouse API", description = "The control plane for managed service providers. Every route needs `Authorization: Bearer <token>`, except the audit log's public key."),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Client tenants and their lifecycle"),
        (name = "tenant-groups", description = "Named sets of tenants that operators' scopes may name (installation-wide operators only)"),
        (name = "secrets", description = "Tenants' secrets, encrypted under each tenant's own key"),
        (name = "connectors", description = "Tenants' connectors: the PSA, RMM, Microsoft 365 and documentation systems their actions reach"),
        (name = "gates", description = "Tenants' gate levels per process area: raised per tenant, never below the area's floor"),
        (name = "operators", description = "MSP staff accounts and API tokens"),
        (name = "audit", description = "The audit log: browsing, proofs and verification (role auditor, lead or admin); its public key needs no token"),
        (name = "workflows", description = "Events, workflow instances, approvals (gate L2) and human tasks (gate L3)"),
        (name = "identity", description = "People, lifecycle events, the access policy, drift, just-in-time elevation and leavers' revocations"),
        (name = "scim", description = "Tenants' SCIM bearer tokens (the SCIM 2.0 endpoint itself is /scim/v2/{tenant}/, described by its own /ServiceProviderConfig, /ResourceTypes and /Schemas)"),
        (name = "onboarding", description = "Client onboardings: stage, progress, what blocks them, and their documentation checklists"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

pub(super) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The complete OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    super::api_routes().into_openapi()
}
