//! Every emulator at once: what `gatehouse sandbox` runs and what
//! `serve --demo` wires the demo MSP's connectors to.
//!
//! [`Sandbox::start`] starts each vendor emulator on its own loopback port
//! with freshly generated credentials (nothing here is a shared default an
//! attacker could guess), registers the MSP's partner tenant and app in the
//! Graph emulator, and gives an API key to each documentation platform.
//! [`Sandbox::endpoints`] lists what is running, for people; the fields are
//! public, for code that seeds records or turns fault knobs.

use std::fmt;

use crate::dattormm::DattoRmmEmulator;
use crate::graph::GraphEmulator;
use crate::hudu::HuduEmulator;
use crate::itglue::ItGlueEmulator;
use crate::ninjaone::NinjaOneEmulator;
use crate::psa::autotask::{AutotaskCredentials, AutotaskEmulator};
use crate::psa::connectwise::{ConnectWiseCredentials, ConnectWiseEmulator};
use crate::psa::halopsa::{HaloCredentials, HaloPsaEmulator};
use crate::scim::ScimAppEmulator;
use crate::smtp::SmtpSink;

/// The credentials every emulator of one [`Sandbox`] accepts. `Debug`
/// shows none of the secrets.
#[derive(Clone)]
pub struct SandboxCredentials {
    /// ConnectWise PSA API member keys and integrator client id.
    pub connectwise: ConnectWiseCredentials,
    /// Autotask API user.
    pub autotask: AutotaskCredentials,
    /// HaloPSA client-credentials application.
    pub halopsa: HaloCredentials,
    /// NinjaOne client id and secret.
    pub ninjaone: (String, String),
    /// Datto RMM API key and secret.
    pub dattormm: (String, String),
    /// IT Glue API key (with password access).
    pub itglue_key: String,
    /// Hudu API key (with password access).
    pub hudu_key: String,
    /// The MSP's partner tenant in Microsoft Entra.
    pub partner_tenant_id: String,
    /// The MSP's multi-tenant app registration: id and secret.
    pub graph_app: (String, String),
    /// The SCIM 2.0 application's bearer token.
    pub scim_token: String,
}

impl fmt::Debug for SandboxCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxCredentials")
            .field("partner_tenant_id", &self.partner_tenant_id)
            .finish_non_exhaustive()
    }
}

impl SandboxCredentials {
    /// Fresh random credentials.
    pub fn generate() -> std::io::Result<Self> {
        Ok(Self {
            connectwise: ConnectWiseCredentials {
                company_id: "gatehouse_demo".to_owned(),
                public_key: token(8)?,
                private_key: token(16)?,
                client_id: uuid_like()?,
            },
            autotask: AutotaskCredentials {
                username: "gatehouse-api@sandbox.invalid".to_owned(),
                secret: token(16)?,
                integration_code: token(12)?.to_ascii_uppercase(),
            },
            halopsa: HaloCredentials {
                client_id: uuid_like()?,
                client_secret: token(24)?,
            },
            ninjaone: (token(12)?, token(24)?),
            dattormm: (token(12)?, token(24)?),
            itglue_key: format!("ITG.{}", token(16)?),
            hudu_key: token(16)?,
            partner_tenant_id: uuid_like()?,
            graph_app: (uuid_like()?, token(24)?),
            scim_token: token(24)?,
        })
    }
}

/// One running emulator, as [`Sandbox::endpoints`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The system it emulates.
    pub system: &'static str,
    /// Its base URL (or `smtp://…` for the mail sink).
    pub url: String,
    /// How to authenticate, without the secrets.
    pub auth: &'static str,
}

/// Every emulator, running.
#[derive(Debug)]
pub struct Sandbox {
    /// What they accept.
    pub credentials: SandboxCredentials,
    /// ConnectWise PSA.
    pub connectwise: ConnectWiseEmulator,
    /// Autotask PSA.
    pub autotask: AutotaskEmulator,
    /// HaloPSA.
    pub halopsa: HaloPsaEmulator,
    /// NinjaOne.
    pub ninjaone: NinjaOneEmulator,
    /// Datto RMM.
    pub dattormm: DattoRmmEmulator,
    /// IT Glue.
    pub itglue: ItGlueEmulator,
    /// Hudu.
    pub hudu: HuduEmulator,
    /// Microsoft Graph and the identity platform's token endpoint.
    pub graph: GraphEmulator,
    /// An SMTP server that keeps what it is sent.
    pub smtp: SmtpSink,
    /// A generic SCIM 2.0 application (a SaaS app that accepts provisioning).
    pub scim: ScimAppEmulator,
}

impl Sandbox {
    /// Starts every emulator on loopback with fresh credentials.
    pub async fn start() -> std::io::Result<Self> {
        let credentials = SandboxCredentials::generate()?;
        let c = &credentials;
        let graph = GraphEmulator::start().await?;
        graph.add_partner_tenant(&c.partner_tenant_id, "Gatehouse Demo MSP");
        graph.consent_app(&c.partner_tenant_id, &c.graph_app.0, &c.graph_app.1);
        let itglue = ItGlueEmulator::start().await?;
        itglue.add_key(&c.itglue_key, true);
        let hudu = HuduEmulator::start().await?;
        hudu.add_key(&c.hudu_key, true);
        Ok(Self {
            connectwise: ConnectWiseEmulator::start(c.connectwise.clone()).await?,
            autotask: AutotaskEmulator::start(c.autotask.clone()).await?,
            halopsa: HaloPsaEmulator::start(c.halopsa.clone()).await?,
            ninjaone: NinjaOneEmulator::start(&c.ninjaone.0, &c.ninjaone.1).await?,
            dattormm: DattoRmmEmulator::start(&c.dattormm.0, &c.dattormm.1).await?,
            itglue,
            hudu,
            graph,
            smtp: SmtpSink::start().await?,
            scim: ScimAppEmulator::start(&c.scim_token).await?,
            credentials,
        })
    }

    /// What is running where.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        vec![
            Endpoint {
                system: "ConnectWise PSA",
                url: self.connectwise.url(),
                auth: "Basic {companyId}+{publicKey}:{privateKey} and clientId",
            },
            Endpoint {
                system: "Autotask PSA",
                url: self.autotask.url(),
                auth: "ApiIntegrationCode, UserName, Secret headers (zone discovery first)",
            },
            Endpoint {
                system: "HaloPSA",
                url: self.halopsa.url(),
                auth: "OAuth client credentials at /auth/token",
            },
            Endpoint {
                system: "NinjaOne",
                url: self.ninjaone.url(),
                auth: "OAuth client credentials at /ws/oauth/token",
            },
            Endpoint {
                system: "Datto RMM",
                url: self.dattormm.url(),
                auth: "password grant at /auth/oauth/token (public-client:public)",
            },
            Endpoint {
                system: "IT Glue",
                url: self.itglue.url(),
                auth: "x-api-key",
            },
            Endpoint {
                system: "Hudu",
                url: self.hudu.url(),
                auth: "x-api-key",
            },
            Endpoint {
                system: "Microsoft Graph",
                url: self.graph.url(),
                auth: "client credentials at /{tenant}/oauth2/v2.0/token",
            },
            Endpoint {
                system: "SMTP sink",
                url: format!("smtp://{}", self.smtp.addr()),
                auth: "none",
            },
            Endpoint {
                system: "SCIM 2.0 app",
                url: self.scim.scim_url(),
                auth: "Authorization: Bearer {token}",
            },
        ]
    }

    /// Stops every emulator.
    pub async fn shutdown(self) {
        self.connectwise.shutdown().await;
        self.autotask.shutdown().await;
        self.halopsa.shutdown().await;
        self.ninjaone.shutdown().await;
        self.dattormm.shutdown().await;
        self.itglue.shutdown().await;
        self.hudu.shutdown().await;
        self.graph.shutdown().await;
        self.smtp.shutdown().await;
        self.scim.shutdown().await;
    }
}

/// `bytes` random bytes as lowercase hex.
fn token(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random id in the 8-4-4-4-12 shape of a GUID.
fn uuid_like() -> std::io::Result<String> {
    let hex = token(16)?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_emulator_answers_on_its_own_loopback_port_with_the_generated_credentials() {
        let sandbox = Sandbox::start().await.unwrap();
        let endpoints = sandbox.endpoints();
        assert_eq!(endpoints.len(), 10);
        let mut ports: Vec<_> = endpoints.iter().map(|e| e.url.clone()).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 10, "{endpoints:?}");
        assert!(endpoints.iter().all(|e| e.url.contains("127.0.0.1")));

        // The Graph app is consented in the partner tenant: a token is granted.
        let c = &sandbox.credentials;
        let token = reqwest::Client::new()
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                sandbox.graph.url(),
                c.partner_tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.graph_app.0.as_str()),
                ("client_secret", c.graph_app.1.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(token.status(), 200);

        // The SCIM application takes this run's bearer token, and only it.
        let users = format!("{}/Users", sandbox.scim.scim_url());
        let http = reqwest::Client::new();
        let ok = http
            .get(&users)
            .bearer_auth(&c.scim_token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let refused = http.get(&users).bearer_auth("guess").send().await.unwrap();
        assert_eq!(refused.status(), 401);

        // Two sandboxes never share credentials.
        let other = SandboxCredentials::generate().unwrap();
        assert_ne!(other.graph_app.1, c.graph_app.1);
        assert_ne!(other.scim_token, c.scim_token);
        assert!(!format!("{c:?}").contains(&c.graph_app.1));
        assert!(!format!("{c:?}").contains(&c.scim_token));
        sandbox.shutdown().await;
    }
}
