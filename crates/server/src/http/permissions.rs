//! What each API operation needs of the operator's role, asked of the
//! policies before the request's body is read.
//!
//! The services ask the policies again, with the resource at hand (tenant
//! scope, separation of duties): this table is the first line, which makes
//! a refusal a `403` whatever the body, and makes every route's need
//! visible in one place. The test `every_api_route_is_covered_by_the_policies`
//! compares it with the OpenAPI document, both ways, and calls every
//! operation with a role that lacks its permission.

use axum::http::Method;

use crate::authz::Permission::{self, *};

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: public by design (the audit log's public key).
    Public,
    /// Any signed-in operator, for themselves (`/me`, their own tokens;
    /// someone else's tokens need `ManageOperators`, checked by the service).
    Own,
    /// An operator whose role holds this permission.
    Role(Permission),
}

/// Every API operation: method, path (as in the OpenAPI document) and need.
pub const OPERATIONS: &[(&str, &str, Need)] = &[
    ("GET", "/api/v1/approvals", Need::Role(ReadWorkflows)),
    (
        "GET",
        "/api/v1/approvals/{approval}",
        Need::Role(ReadWorkflows),
    ),
    (
        "POST",
        "/api/v1/approvals/{approval}/approve",
        Need::Role(DecideApprovals),
    ),
    (
        "POST",
        "/api/v1/approvals/{approval}/modify",
        Need::Role(DecideApprovals),
    ),
    (
        "POST",
        "/api/v1/approvals/{approval}/reject",
        Need::Role(DecideApprovals),
    ),
    ("GET", "/api/v1/audit/entries", Need::Role(ReadAudit)),
    ("GET", "/api/v1/audit/logs", Need::Role(ReadAudit)),
    (
        "GET",
        "/api/v1/audit/logs/{log}/checkpoints",
        Need::Role(ReadAudit),
    ),
    (
        "POST",
        "/api/v1/audit/logs/{log}/checkpoints",
        Need::Role(IssueCheckpoints),
    ),
    (
        "GET",
        "/api/v1/audit/logs/{log}/checkpoints/latest",
        Need::Role(ReadAudit),
    ),
    (
        "GET",
        "/api/v1/audit/logs/{log}/entries/{idx}",
        Need::Role(ReadAudit),
    ),
    (
        "GET",
        "/api/v1/audit/logs/{log}/proofs/consistency",
        Need::Role(ReadAudit),
    ),
    (
        "GET",
        "/api/v1/audit/logs/{log}/proofs/inclusion",
        Need::Role(ReadAudit),
    ),
    (
        "POST",
        "/api/v1/audit/logs/{log}/verify",
        Need::Role(ReadAudit),
    ),
    ("GET", "/api/v1/audit/public-key", Need::Public),
    ("POST", "/api/v1/events", Need::Role(SubmitEvents)),
    ("GET", "/api/v1/me", Need::Own),
    ("GET", "/api/v1/onboardings", Need::Role(ReadWorkflows)),
    (
        "GET",
        "/api/v1/onboardings/{onboarding}",
        Need::Role(ReadWorkflows),
    ),
    (
        "GET",
        "/api/v1/onboardings/{onboarding}/items",
        Need::Role(ReadWorkflows),
    ),
    (
        "GET",
        "/api/v1/onboardings/{onboarding}/items/{item}/file",
        Need::Role(ReadChecklistFiles),
    ),
    (
        "PUT",
        "/api/v1/onboardings/{onboarding}/items/{item}/file",
        Need::Role(WorkChecklists),
    ),
    (
        "POST",
        "/api/v1/onboardings/{onboarding}/items/{item}/receive",
        Need::Role(WorkChecklists),
    ),
    (
        "POST",
        "/api/v1/onboardings/{onboarding}/items/{item}/secret",
        Need::Role(WorkChecklists),
    ),
    (
        "POST",
        "/api/v1/onboardings/{onboarding}/items/{item}/waive",
        Need::Role(WaiveChecklistItems),
    ),
    ("GET", "/api/v1/operators", Need::Role(ReadOperators)),
    ("POST", "/api/v1/operators", Need::Role(ManageOperators)),
    (
        "POST",
        "/api/v1/operators/{operator}/disable",
        Need::Role(ManageOperators),
    ),
    (
        "POST",
        "/api/v1/operators/{operator}/enable",
        Need::Role(ManageOperators),
    ),
    (
        "PUT",
        "/api/v1/operators/{operator}/scope",
        Need::Role(ManageOperators),
    ),
    ("GET", "/api/v1/operators/{operator}/tokens", Need::Own),
    ("POST", "/api/v1/operators/{operator}/tokens", Need::Own),
    ("GET", "/api/v1/tasks", Need::Role(ReadWorkflows)),
    ("GET", "/api/v1/tasks/{task}", Need::Role(ReadWorkflows)),
    (
        "POST",
        "/api/v1/tasks/{task}/complete",
        Need::Role(CompleteTasks),
    ),
    ("GET", "/api/v1/tenant-groups", Need::Role(ReadTenants)),
    ("POST", "/api/v1/tenant-groups", Need::Role(ManageTenants)),
    (
        "DELETE",
        "/api/v1/tenant-groups/{group}",
        Need::Role(ManageTenants),
    ),
    (
        "GET",
        "/api/v1/tenant-groups/{group}",
        Need::Role(ReadTenants),
    ),
    (
        "DELETE",
        "/api/v1/tenant-groups/{group}/tenants/{tenant}",
        Need::Role(ManageTenants),
    ),
    (
        "PUT",
        "/api/v1/tenant-groups/{group}/tenants/{tenant}",
        Need::Role(ManageTenants),
    ),
    ("GET", "/api/v1/tenants", Need::Role(ReadTenants)),
    ("POST", "/api/v1/tenants", Need::Role(ManageTenants)),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}",
        Need::Role(ManageTenants),
    ),
    ("GET", "/api/v1/tenants/{tenant}", Need::Role(ReadTenants)),
    (
        "PATCH",
        "/api/v1/tenants/{tenant}",
        Need::Role(ManageTenants),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/access-policy",
        Need::Role(ReadPeople),
    ),
    (
        "PUT",
        "/api/v1/tenants/{tenant}/access-policy",
        Need::Role(ManageAccessPolicy),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/access-policy/preview",
        Need::Role(ReadPeople),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/activate",
        Need::Role(ManageTenants),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/audit/oscal",
        Need::Role(ReadAudit),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/connectors",
        Need::Role(ManageSecrets),
    ),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}/connectors/{name}",
        Need::Role(ManageSecrets),
    ),
    (
        "PUT",
        "/api/v1/tenants/{tenant}/connectors/{name}",
        Need::Role(ManageSecrets),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/drift",
        Need::Role(ReadPeople),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/drift/remediate",
        Need::Role(ManagePeople),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/elevations",
        Need::Role(ReadPeople),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/elevations",
        Need::Role(RequestElevation),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/elevations/{id}/revoke",
        Need::Role(ManagePeople),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/gates",
        Need::Role(ReadTenants),
    ),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}/gates/{area}",
        Need::Role(ManageGates),
    ),
    (
        "PUT",
        "/api/v1/tenants/{tenant}/gates/{area}",
        Need::Role(ManageGates),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/kb/articles",
        Need::Role(ReadKnowledge),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/kb/articles",
        Need::Role(WriteKnowledge),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/kb/articles/{article}",
        Need::Role(ReadKnowledge),
    ),
    (
        "PUT",
        "/api/v1/tenants/{tenant}/kb/articles/{article}",
        Need::Role(WriteKnowledge),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/kb/articles/{article}/versions",
        Need::Role(ReadKnowledge),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/kb/search",
        Need::Role(ReadKnowledge),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/offboard",
        Need::Role(ManageTenants),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/people",
        Need::Role(ReadPeople),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/people/events",
        Need::Role(ManagePeople),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/people/import",
        Need::Role(ManagePeople),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/people/{person}",
        Need::Role(ReadPeople),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/people/{person}/reconcile",
        Need::Role(ManagePeople),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/revocations",
        Need::Role(ReadPeople),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/scim/tokens",
        Need::Role(ReadTenants),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/scim/tokens",
        Need::Role(ManageSecrets),
    ),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}/scim/tokens/{token}",
        Need::Role(ManageSecrets),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/secrets",
        Need::Role(ManageSecrets),
    ),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}/secrets/{name}",
        Need::Role(ManageSecrets),
    ),
    (
        "PUT",
        "/api/v1/tenants/{tenant}/secrets/{name}",
        Need::Role(ManageSecrets),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/suspend",
        Need::Role(ManageTenants),
    ),
    ("DELETE", "/api/v1/tokens/{token}", Need::Own),
    ("GET", "/api/v1/workflows", Need::Role(ReadWorkflows)),
    (
        "GET",
        "/api/v1/workflows/{workflow}",
        Need::Role(ReadWorkflows),
    ),
    (
        "POST",
        "/api/v1/workflows/{workflow}/cancel",
        Need::Role(CancelWorkflows),
    ),
    (
        "POST",
        "/api/v1/workflows/{workflow}/compensate",
        Need::Role(CancelWorkflows),
    ),
    (
        "POST",
        "/api/v1/workflows/{workflow}/steps/{step}/rollback",
        Need::Role(DecideApprovals),
    ),
];

/// The need of the operation `method` `path` (a route template), if listed.
pub fn need_of(method: &Method, path: &str) -> Option<Need> {
    OPERATIONS
        .iter()
        .find(|(m, p, _)| *p == path && method.as_str() == *m)
        .map(|(_, _, need)| *need)
}
