//! The RFC 7643 §8.7 schema definitions: User, Group, the Enterprise User
//! extension and the common attributes, written with a small builder so
//! each line reads like the RFC's table of characteristics.

use super::{
    Attribute, AttributeType as T, Mutability as M, ResourceType, Returned as R, Schema,
    SchemaExtension, Uniqueness as U,
};

/// `urn:ietf:params:scim:schemas:core:2.0:User`.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// `urn:ietf:params:scim:schemas:core:2.0:Group`.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// An attribute with the RFC 7643 §2.2 defaults: single-valued, optional,
/// case-insensitive, readWrite, returned by default, not unique.
fn attr(name: &str, kind: T, description: &str) -> Attribute {
    Attribute {
        name: name.into(),
        kind,
        multi_valued: false,
        description: description.into(),
        required: false,
        canonical_values: Vec::new(),
        case_exact: false,
        mutability: M::ReadWrite,
        returned: R::Default,
        uniqueness: U::None,
        reference_types: Vec::new(),
        sub_attributes: Vec::new(),
    }
}

fn string(name: &str, description: &str) -> Attribute {
    attr(name, T::String, description)
}

fn complex(name: &str, description: &str, subs: Vec<Attribute>) -> Attribute {
    Attribute {
        sub_attributes: subs,
        ..attr(name, T::Complex, description)
    }
}

impl Attribute {
    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: M) -> Self {
        self.mutability = m;
        self
    }
    fn returned(mut self, r: R) -> Self {
        self.returned = r;
        self
    }
    fn unique(mut self, u: U) -> Self {
        self.uniqueness = u;
        self
    }
    fn canonical(mut self, values: &[&str]) -> Self {
        self.canonical_values = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }
    fn refs(mut self, types: &[&str]) -> Self {
        self.reference_types = types.iter().map(|v| (*v).to_owned()).collect();
        self
    }
    /// Applies a mutability to the attribute and all its sub-attributes.
    fn all_mutability(mut self, m: M) -> Self {
        self.mutability = m;
        for s in &mut self.sub_attributes {
            s.mutability = m;
        }
        self
    }
}

/// The usual sub-attributes of a multi-valued attribute: value, display,
/// type and primary (RFC 7643 §2.4).
fn multi_valued(name: &str, description: &str, value: Attribute, types: &[&str]) -> Attribute {
    complex(
        name,
        description,
        vec![
            value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            string("type", "A label indicating the attribute's function.").canonical(types),
            attr(
                "primary",
                T::Boolean,
                "Whether this is the preferred value.",
            ),
        ],
    )
    .multi()
}

pub(super) fn common_attributes() -> Vec<Attribute> {
    vec![
        attr("schemas", T::Reference, "The schema URIs of the resource.")
            .multi()
            .required()
            .case_exact()
            .mutability(M::ReadOnly)
            .returned(R::Always),
        string(
            "id",
            "A unique identifier for the resource, assigned by the service provider.",
        )
        .case_exact()
        .mutability(M::ReadOnly)
        .returned(R::Always)
        .unique(U::Server),
        string(
            "externalId",
            "An identifier for the resource as defined by the provisioning client.",
        )
        .case_exact(),
        complex(
            "meta",
            "Resource metadata.",
            vec![
                string("resourceType", "The name of the resource type.").case_exact(),
                attr("created", T::DateTime, "When the resource was added."),
                attr(
                    "lastModified",
                    T::DateTime,
                    "When the resource was last updated.",
                ),
                attr("location", T::Reference, "The URI of the resource.")
                    .case_exact()
                    .refs(&["uri"]),
                string("version", "The version (ETag) of the resource.").case_exact(),
            ],
        )
        .all_mutability(M::ReadOnly),
    ]
}

fn user_schema() -> Schema {
    let name = complex(
        "name",
        "The components of the user's real name.",
        vec![
            string("formatted", "The full name, formatted for display."),
            string("familyName", "The family name."),
            string("givenName", "The given name."),
            string("middleName", "The middle name(s)."),
            string("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'."),
            string("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
        ],
    );
    let address = complex(
        "addresses",
        "Physical mailing addresses.",
        vec![
            string(
                "formatted",
                "The full mailing address, formatted for display.",
            ),
            string("streetAddress", "The street address."),
            string("locality", "The city or locality."),
            string("region", "The state or region."),
            string("postalCode", "The zip code or postal code."),
            string("country", "The country name (ISO 3166-1 alpha-2)."),
            string("type", "A label indicating the address's function.")
                .canonical(&["work", "home", "other"]),
            attr(
                "primary",
                T::Boolean,
                "Whether this is the preferred address.",
            ),
        ],
    )
    .multi();
    let groups = complex(
        "groups",
        "The groups the user belongs to, directly or indirectly.",
        vec![
            string("value", "The id of the group."),
            attr("$ref", T::Reference, "The URI of the group.").refs(&["User", "Group"]),
            string("display", "The group's display name."),
            string("type", "Direct or indirect membership.").canonical(&["direct", "indirect"]),
        ],
    )
    .multi()
    .all_mutability(M::ReadOnly);
    Schema {
        id: USER_SCHEMA.into(),
        name: "User".into(),
        description: "User Account".into(),
        attributes: vec![
            string(
                "userName",
                "A unique identifier for the user, used to authenticate.",
            )
            .required()
            .unique(U::Server),
            name,
            string("displayName", "The name of the user, suitable for display."),
            string("nickName", "The casual way to address the user."),
            attr(
                "profileUrl",
                T::Reference,
                "A URI of the user's online profile.",
            )
            .refs(&["external"]),
            string("title", "The user's title, e.g. 'Vice President'."),
            string(
                "userType",
                "The relationship between the organization and the user, e.g. 'Employee'.",
            ),
            string(
                "preferredLanguage",
                "The user's preferred written or spoken language.",
            ),
            string("locale", "The user's default location for localizing."),
            string("timezone", "The user's time zone, in IANA format."),
            attr("active", T::Boolean, "The user's administrative status."),
            string("password", "The user's cleartext password.")
                .mutability(M::WriteOnly)
                .returned(R::Never),
            multi_valued(
                "emails",
                "E-mail addresses.",
                string("value", "An e-mail address."),
                &["work", "home", "other"],
            ),
            multi_valued(
                "phoneNumbers",
                "Phone numbers.",
                string("value", "A phone number."),
                &["work", "home", "mobile", "fax", "pager", "other"],
            ),
            multi_valued(
                "ims",
                "Instant messaging addresses.",
                string("value", "An instant messaging address."),
                &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
            ),
            multi_valued(
                "photos",
                "URLs of images of the user.",
                attr("value", T::Reference, "The URL of a photo.").refs(&["external"]),
                &["photo", "thumbnail"],
            ),
            address,
            groups,
            multi_valued(
                "entitlements",
                "Entitlements of the user.",
                string("value", "An entitlement."),
                &[],
            ),
            multi_valued(
                "roles",
                "Roles of the user.",
                string("value", "A role."),
                &[],
            ),
            multi_valued(
                "x509Certificates",
                "DER-encoded X.509 certificates.",
                attr("value", T::Binary, "A base64-encoded certificate."),
                &[],
            ),
        ],
    }
}

fn enterprise_user_schema() -> Schema {
    Schema {
        id: ENTERPRISE_USER_SCHEMA.into(),
        name: "EnterpriseUser".into(),
        description: "Enterprise User".into(),
        attributes: vec![
            string(
                "employeeNumber",
                "A string identifier, typically numeric, assigned by the organization.",
            ),
            string("costCenter", "The name of a cost center."),
            string("organization", "The name of an organization."),
            string("division", "The name of a division."),
            string("department", "The name of a department."),
            complex(
                "manager",
                "The user's manager.",
                vec![
                    string("value", "The id of the manager's User resource."),
                    attr(
                        "$ref",
                        T::Reference,
                        "The URI of the manager's User resource.",
                    )
                    .refs(&["User"]),
                    string("displayName", "The manager's display name.").mutability(M::ReadOnly),
                ],
            ),
        ],
    }
}

fn group_schema() -> Schema {
    Schema {
        id: GROUP_SCHEMA.into(),
        name: "Group".into(),
        description: "Group".into(),
        attributes: vec![
            string("displayName", "A human-readable name for the group.").required(),
            complex(
                "members",
                "The members of the group.",
                vec![
                    string("value", "The id of the member.").mutability(M::Immutable),
                    attr("$ref", T::Reference, "The URI of the member.")
                        .refs(&["User", "Group"])
                        .mutability(M::Immutable),
                    string("display", "The member's display name.").mutability(M::ReadOnly),
                    string("type", "The type of the member.")
                        .canonical(&["User", "Group"])
                        .mutability(M::Immutable),
                ],
            )
            .multi(),
        ],
    }
}

pub(super) fn user_resource_type() -> ResourceType {
    ResourceType {
        id: "User".into(),
        name: "User".into(),
        endpoint: "/Users".into(),
        description: "User Account".into(),
        schema: user_schema(),
        extensions: vec![SchemaExtension {
            schema: enterprise_user_schema(),
            required: false,
        }],
    }
}

pub(super) fn group_resource_type() -> ResourceType {
    ResourceType {
        id: "Group".into(),
        name: "Group".into(),
        endpoint: "/Groups".into(),
        description: "Group".into(),
        schema: group_schema(),
        extensions: Vec::new(),
    }
}
