//! End-to-end tests of the `gatehouse` binary: each test runs the real
//! executable as a subprocess with its own data directory, on SQLite and,
//! when `GATEHOUSE_TEST_DATABASE_URL` is set, on a fresh PostgreSQL schema.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use common::{
    Backend, Install, Response, files_starting_with, gatehouse, on_postgres, on_sqlite, token_in,
};

const DEMO_SLUGS: [&str; 3] = ["northwind-legal", "contoso-dental", "fabrikam-logistics"];

fn slugs(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tenant page: {page}"))
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_error(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.body["error"]["code"], code, "{:?}", response.body);
    assert!(
        response.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error message for people: {:?}",
        response.body
    );
}

// ----- 1. serve ------------------------------------------------------------

async fn serve_bootstraps_prints_a_working_token_and_stops_on_sigterm(backend: Backend) {
    let install = Install::new(&backend);

    let mut server = install.serve(&["--demo"]).await;
    let token = server.bootstrap_token();
    assert!(token.len() > 20, "a real token: {token}");

    let listed = server.get("/api/v1/tenants", Some(&token)).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let found = slugs(&listed.body);
    for slug in DEMO_SLUGS {
        assert!(found.iter().any(|s| s == slug), "{slug} in {found:?}");
    }

    // The sandbox ConnectWise won a deal and sent its signed callback: the
    // client's onboarding waits at its first approval (creating the tenant).
    server.wait_for_line(|l| l.starts_with("Demo: the sandbox ConnectWise just won a deal"));
    // The engine's next tick opens the approval.
    let mut approvals = server.get("/api/v1/approvals", Some(&token)).await;
    for _ in 0..300 {
        if approvals.body["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        approvals = server.get("/api/v1/approvals", Some(&token)).await;
    }
    assert_eq!(approvals.status, 200, "{:?}", approvals.body);
    let pending: Vec<&Value> = approvals.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{:?}", approvals.body);
    assert_eq!(pending[0]["step_id"], "create-tenant", "{:?}", pending[0]);
    assert_eq!(
        pending[0]["plan"]["params"]["display_name"], "Tailspin Toys",
        "{:?}",
        pending[0]
    );
    let connectors = server
        .get("/api/v1/tenants/msp/connectors", Some(&token))
        .await;
    assert_eq!(connectors.status, 200, "{:?}", connectors.body);
    assert_eq!(
        connectors.body["items"].as_array().map(Vec::len),
        Some(4),
        "{:?}",
        connectors.body
    );

    let anonymous = server.get("/api/v1/tenants", None).await;
    assert_error(&anonymous, 401, "unauthenticated");
    let wrong = server
        .get("/api/v1/tenants", Some("gth_not-a-real-token"))
        .await;
    assert_error(&wrong, 401, "unauthenticated");

    let key_file = install.path("kek.json");
    let mode = std::fs::metadata(&key_file)
        .unwrap_or_else(|e| panic!("{} should exist: {e}", key_file.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");

    let first = server.terminate();
    assert!(
        first.status.success(),
        "serve should exit cleanly on SIGTERM: {}\n{}",
        first.status,
        first.stderr
    );
    assert!(
        !first.stderr.contains(&token),
        "the token must not reach the log:\n{}",
        first.stderr
    );
    assert!(
        first.stdout.contains("Demo MSP seeded"),
        "first start seeds the demo:\n{}",
        first.stdout
    );
    assert!(
        first.stderr.contains("SIGTERM"),
        "the log says why it stopped:\n{}",
        first.stderr
    );

    // Second start on the same installation: nothing new to print, and the
    // first token still works.
    let mut server = install.serve(&["--demo"]).await;
    server.wait_for_line(|l| l.starts_with("Demo MSP"));
    let listed = server.get("/api/v1/tenants", Some(&token)).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(
        slugs(&listed.body).len(),
        DEMO_SLUGS.len() + 1,
        "the demo (three clients and the MSP's own tenant) is not seeded twice: {:?}",
        listed.body
    );
    let second = server.terminate();
    assert!(second.status.success(), "{}", second.stderr);
    assert_eq!(
        token_in(&second.stdout),
        None,
        "no token on the second start:\n{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("Demo MSP already present"),
        "{}",
        second.stdout
    );
    assert!(!second.stderr.contains(&token), "{}", second.stderr);
}

// ----- audit signing key ---------------------------------------------------

async fn the_audit_public_key_survives_kek_rotation(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    let first = install.run(&["audit", "public-key"]).ok();
    let verifier = first.stdout.trim().to_owned();
    let parsed = gatehouse_audit::VerifierKey::parse(&verifier)
        .unwrap_or_else(|e| panic!("{verifier:?} is a C2SP verifier key: {e}"));
    assert_eq!(parsed.name().as_str(), "gatehouse.local/audit");
    // Every later process unwraps the same key.
    assert_eq!(
        install.run(&["audit", "public-key"]).ok().stdout.trim(),
        verifier
    );

    let status = install.run(&["keys", "status"]).ok();
    assert!(
        status
            .stdout
            .contains("local:1: audit signing key gatehouse.local/audit (active)"),
        "{}",
        status.stdout
    );
    let rotated = install.run(&["keys", "rotate", "--retire"]).ok();
    assert!(
        rotated.stdout.contains("rewrapped 1 audit signing keys")
            && rotated.stdout.contains("retired: local:1"),
        "{}",
        rotated.stdout
    );
    let status = install.run(&["keys", "status"]).ok();
    assert!(
        status
            .stdout
            .contains("local:2: audit signing key gatehouse.local/audit (active)"),
        "{}",
        status.stdout
    );
    // Only local:2 is left in the key file, and the key still unwraps.
    let json = install.run(&["audit", "public-key", "--json"]).ok();
    let body: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(body["verifier_key"], verifier.as_str());
    assert_eq!(body["key_id"], parsed.key_id().to_string());
}

async fn audit_checkpoints_from_serve_and_the_cli(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    // Nothing sequenced yet (only `serve` runs the sequencer).
    let empty = install.run(&["audit", "checkpoint", "system"]).fails();
    assert!(
        empty.error_message().contains("has no entries yet"),
        "{}",
        empty.stderr
    );
    let unknown = install.run(&["audit", "checkpoint", "nobody"]).fails();
    assert!(
        unknown.error_message().contains("nobody"),
        "{}",
        unknown.stderr
    );
    install
        .run(&["events", "submit", "--type", "test.nobody", "--key", "n-1"])
        .ok();

    // `serve` appends the record and, on its first idle pass, signs the
    // system log, which has no checkpoint yet.
    let mut server = install.serve(&[]).await;
    let token = server.bootstrap_token();
    let path = "/api/v1/audit/logs/system/checkpoints";
    let mut listed = server.get(path, Some(&token)).await;
    for _ in 0..300 {
        if listed.body.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        listed = server.get(path, Some(&token)).await;
    }
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let signed = listed.body[0].clone();
    assert_eq!(signed["log"], "system", "{signed}");
    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);

    // Nothing appended since: the CLI prints that same note.
    let again = install.run(&["audit", "checkpoint", "system"]).ok();
    assert_eq!(again.stdout, signed["note"].as_str().unwrap());
    assert!(again.stderr.contains("reusing it"), "{}", again.stderr);
    let verifier = install.run(&["audit", "public-key"]).ok().stdout;
    let key = gatehouse_audit::VerifierKey::parse(verifier.trim()).unwrap();
    let (checkpoint, _) =
        gatehouse_audit::checkpoint::open(&again.stdout, &[key], "gatehouse.local/audit/system")
            .unwrap();
    assert_eq!(checkpoint.size(), signed["size"].as_u64().unwrap());
}

// ----- 2. migrate and tenants ----------------------------------------------

async fn migrate_then_tenant_lifecycle_through_the_cli(backend: Backend) {
    let install = Install::new(&backend);

    let migrated = install.run(&["migrate"]).ok();
    assert!(
        migrated
            .stdout
            .contains(&format!("{} schema is current", backend.name())),
        "{}",
        migrated.stdout
    );
    // Idempotent.
    install.run(&["migrate"]).ok();

    let created = install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();
    assert!(created.stdout.contains("acme"), "{}", created.stdout);

    let again = install
        .run(&[
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme Again",
            "--region",
            "eu",
        ])
        .fails();
    let message = again.error_message();
    assert!(
        message.contains("acme") && message.contains("already exists"),
        "{message}"
    );

    let bad = install
        .run(&[
            "tenant", "create", "Bad Slug", "--name", "Bad", "--region", "eu",
        ])
        .fails();
    let message = bad.error_message();
    assert!(message.contains("slug"), "names the field: {message}");
    assert!(
        message.contains("lowercase"),
        "says what is allowed: {message}"
    );

    let bad_region = install
        .run(&[
            "tenant",
            "create",
            "okay-slug",
            "--name",
            "Ok",
            "--region",
            "",
        ])
        .fails();
    assert!(
        bad_region.error_message().contains("region"),
        "{}",
        bad_region.stderr
    );

    let list = install.run(&["tenant", "list", "--json"]).ok().json();
    let tenants = list.as_array().expect("a JSON array");
    assert_eq!(tenants.len(), 1, "only acme: {list}");
    let acme = &tenants[0];
    assert_eq!(acme["slug"], "acme");
    assert_eq!(acme["display_name"], "Acme Ltd");
    assert_eq!(acme["region"], "eu");
    assert_eq!(acme["state"], "active");
    let id = acme["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("ten_"), "{id}");

    let suspended = install.run(&["tenant", "suspend", "acme"]).ok();
    assert!(
        suspended.stdout.contains("acme is now suspended"),
        "{}",
        suspended.stdout
    );

    let refused = install.run(&["tenant", "delete", "acme"]).fails();
    assert!(
        refused.error_message().contains("--yes"),
        "{}",
        refused.stderr
    );
    let still = install
        .run(&["tenant", "show", "acme", "--json"])
        .ok()
        .json();
    assert_eq!(still["state"], "suspended", "nothing deleted: {still}");

    install.run(&["tenant", "delete", "acme", "--yes"]).ok();
    let shown = install
        .run(&["tenant", "show", id.as_str(), "--json"])
        .ok()
        .json();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["state"], "deleted", "{shown}");

    // By slug, a deleted tenant is gone; only its tombstone is listed, and
    // only when asked for; the slug is free again.
    install.run(&["tenant", "show", "acme"]).fails();
    let remaining = install.run(&["tenant", "list", "--json"]).ok().json();
    assert_eq!(remaining, json!([]), "deleted tenants are not listed");
    let tombstones = install
        .run(&["tenant", "list", "--state", "deleted", "--json"])
        .ok()
        .json();
    assert_eq!(tombstones[0]["id"], id.as_str(), "{tombstones}");
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();
}

// ----- 3. secrets and key rotation -----------------------------------------

const SECRET_VALUE: &str = "psa-key-5b2f8c1e9d7a4036-do-not-log";

async fn secrets_via_stdin_survive_key_rotation(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();

    let stored = install
        .run_with_stdin(
            &["tenant", "secret", "set", "acme", "psa.api-key"],
            format!("{SECRET_VALUE}\n").as_bytes(),
        )
        .ok();
    assert!(
        stored.stdout.contains("stored psa.api-key (version 1)"),
        "{}",
        stored.stdout
    );
    assert!(!stored.stdout.contains(SECRET_VALUE));
    assert!(!stored.stderr.contains(SECRET_VALUE));

    let empty = install
        .run_with_stdin(&["tenant", "secret", "set", "acme", "empty.one"], b"\n")
        .fails();
    assert!(
        empty.error_message().contains("1 to"),
        "an empty secret is refused: {}",
        empty.stderr
    );

    let listed = install.run(&["tenant", "secret", "list", "acme"]).ok();
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("psa.api-key"))
        .unwrap_or_else(|| panic!("psa.api-key listed:\n{}", listed.stdout));
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "version 1: {row}");
    assert!(!listed.stdout.contains(SECRET_VALUE));

    if backend.is_sqlite() {
        let files = files_starting_with(install.data_dir(), "gatehouse.db");
        assert!(!files.is_empty(), "the SQLite database is in the data dir");
        for (path, bytes) in files {
            assert!(
                !bytes
                    .windows(SECRET_VALUE.len())
                    .any(|w| w == SECRET_VALUE.as_bytes()),
                "{} holds the secret in the clear",
                path.display()
            );
        }
    }

    let status = install.run(&["keys", "status"]).ok();
    assert!(
        status
            .stdout
            .contains("provider: local; active KEK: local:1"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("local:1: 1 data keys"),
        "{}",
        status.stdout
    );

    let rotated = install.run(&["keys", "rotate", "--retire"]).ok();
    assert!(
        rotated.stdout.contains("active KEK: local:2"),
        "{}",
        rotated.stdout
    );
    assert!(
        rotated.stdout.contains("rewrapped 1 data keys"),
        "{}",
        rotated.stdout
    );
    assert!(
        rotated.stdout.contains("retired: local:1"),
        "{}",
        rotated.stdout
    );

    let status = install.run(&["keys", "status"]).ok();
    assert!(
        status.stdout.contains("active KEK: local:2"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("local:2: 1 data keys"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("local:1"),
        "nothing left under the retired KEK: {}",
        status.stdout
    );

    // Overwriting needs the data key, now wrapped only by local:2.
    let overwritten = install
        .run_with_stdin(
            &["tenant", "secret", "set", "acme", "psa.api-key"],
            b"a-new-value",
        )
        .ok();
    assert!(
        overwritten
            .stdout
            .contains("stored psa.api-key (version 2)"),
        "{}",
        overwritten.stdout
    );

    // A second rotation with nothing to retire.
    let again = install.run(&["keys", "rotate"]).ok();
    assert!(
        again.stdout.contains("active KEK: local:3"),
        "{}",
        again.stdout
    );

    // The server sees the same tenant and can still use its key.
    let mut server = install.serve(&[]).await;
    let token = server.bootstrap_token();
    let tenant = server.get("/api/v1/tenants/acme", Some(&token)).await;
    assert_eq!(tenant.status, 200, "{:?}", tenant.body);
    assert_eq!(tenant.body["display_name"], "Acme Ltd");
    let secrets = server
        .get("/api/v1/tenants/acme/secrets", Some(&token))
        .await;
    assert_eq!(secrets.status, 200, "{:?}", secrets.body);
    assert_eq!(secrets.body["items"][0]["name"], "psa.api-key");
    assert_eq!(secrets.body["items"][0]["version"], 2);
    let put = server
        .put(
            "/api/v1/tenants/acme/secrets/psa.api-key",
            Some(&token),
            json!({ "value": "third-value" }),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(put.body["version"], 3);

    // A rotation by the CLI reaches the running server without a restart:
    // the keys it makes afterwards are wrapped by the new KEK.
    let rotated = install.run(&["keys", "rotate", "--retire"]).ok();
    assert!(
        rotated.stdout.contains("active KEK: local:4"),
        "{}",
        rotated.stdout
    );
    assert!(
        rotated.stdout.contains("retired: local:2, local:3"),
        "{}",
        rotated.stdout
    );
    let beta = server
        .post(
            "/api/v1/tenants",
            Some(&token),
            json!({ "slug": "beta", "display_name": "Beta GmbH", "region": "eu" }),
        )
        .await;
    assert_eq!(beta.status, 201, "{:?}", beta.body);
    for tenant in ["acme", "beta"] {
        let put = server
            .put(
                &format!("/api/v1/tenants/{tenant}/secrets/psa.api-key"),
                Some(&token),
                json!({ "value": "after-rotation" }),
            )
            .await;
        assert_eq!(put.status, 200, "{tenant}: {:?}", put.body);
    }
    let status = install.run(&["keys", "status"]).ok();
    assert!(
        status.stdout.contains("local:4: 2 data keys"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("local:3"), "{}", status.stdout);

    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(!stopped.stderr.contains(SECRET_VALUE));
}

// ----- 4. operators and roles ----------------------------------------------

async fn operators_and_roles(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();

    let created = install
        .run(&[
            "operator",
            "create",
            "tom.tech",
            "--display-name",
            "Tom",
            "--role",
            "technician",
        ])
        .ok();
    let tom = created.token();
    assert!(tom.starts_with("gth_"), "{tom}");

    let duplicate = install
        .run(&[
            "operator",
            "create",
            "tom.tech",
            "--display-name",
            "Tom Again",
            "--role",
            "technician",
        ])
        .fails();
    assert!(
        duplicate.error_message().contains("operator_name_taken"),
        "{}",
        duplicate.stderr
    );
    let bad_role = install
        .run(&[
            "operator",
            "create",
            "eve",
            "--display-name",
            "Eve",
            "--role",
            "overlord",
        ])
        .fails();
    assert!(
        bad_role.error_message().contains("role"),
        "{}",
        bad_role.stderr
    );

    let server = install.serve(&[]).await;

    let create = server
        .post(
            "/api/v1/tenants",
            Some(&tom),
            json!({ "slug": "acme", "display_name": "Acme Ltd", "region": "eu" }),
        )
        .await;
    assert_error(&create, 403, "forbidden");
    let listed = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(slugs(&listed.body), Vec::<String>::new());

    // The CLI and the server share the database: disabling takes effect at once.
    let disabled = install.run(&["operator", "disable", "tom.tech"]).ok();
    assert!(
        disabled.stdout.contains("disabled tom.tech"),
        "{}",
        disabled.stdout
    );
    let refused = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_error(&refused, 401, "unauthenticated");

    let operators = install.run(&["operator", "list", "--json"]).ok().json();
    let tom_row = operators
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|o| o["name"] == "tom.tech")
        .unwrap_or_else(|| panic!("tom.tech listed: {operators}"))
        .clone();
    assert_eq!(tom_row["disabled"], true, "{tom_row}");
    assert_eq!(tom_row["role"], "technician", "{tom_row}");

    install.run(&["operator", "enable", "tom.tech"]).ok();
    let back = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(back.status, 200, "{:?}", back.body);

    // A new token for Tom works too; the CLI prints it once.
    let issued = install.run(&["operator", "token", "tom.tech"]).ok();
    let second = issued.token();
    assert_ne!(second, tom);
    let with_second = server.get("/api/v1/tenants", Some(&second)).await;
    assert_eq!(with_second.status, 200, "{:?}", with_second.body);

    // Scoped to one tenant from the CLI: the server sees it at once.
    for slug in ["acme", "globex"] {
        install
            .run(&["tenant", "create", slug, "--name", slug, "--region", "eu"])
            .ok();
    }
    let scoped = install
        .run(&["operator", "scope", "tom.tech", "--tenant", "acme"])
        .ok();
    assert!(
        scoped.stdout.contains("tom.tech now acts on acme"),
        "{}",
        scoped.stdout
    );
    let listed = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(slugs(&listed.body), ["acme"]);
    let other = server.get("/api/v1/tenants/globex", Some(&tom)).await;
    assert_error(&other, 404, "tenant_not_found");
    let table = install.run(&["operator", "list"]).ok();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.contains("tom.tech") && l.contains(" acme ")),
        "{}",
        table.stdout
    );
    let missing = install
        .run(&["operator", "scope", "tom.tech", "--tenant", "initech"])
        .fails();
    assert!(
        missing.error_message().contains("tenant_not_found"),
        "{}",
        missing.stderr
    );

    // Scoped to a tenant group: its members as the group changes.
    let created = install
        .run(&[
            "tenant-group",
            "create",
            "eu-clients",
            "--name",
            "EU clients",
            "--tenant",
            "acme",
        ])
        .ok();
    assert!(
        created.stdout.contains("tenants: acme"),
        "{}",
        created.stdout
    );
    let scoped = install
        .run(&["operator", "scope", "tom.tech", "--group", "eu-clients"])
        .ok();
    assert!(
        scoped
            .stdout
            .contains("tom.tech now acts on group:eu-clients"),
        "{}",
        scoped.stdout
    );
    let listed = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(slugs(&listed.body), ["acme"]);
    let added = install
        .run(&["tenant-group", "add", "eu-clients", "globex"])
        .ok();
    assert!(
        added.stdout.contains("tenants: acme,globex"),
        "{}",
        added.stdout
    );
    let listed = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(slugs(&listed.body), ["acme", "globex"]);
    install
        .run(&["tenant-group", "remove", "eu-clients", "acme"])
        .ok();
    let listed = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(slugs(&listed.body), ["globex"]);
    let groups = install.run(&["tenant-group", "list"]).ok();
    assert!(
        groups
            .stdout
            .lines()
            .any(|l| l.contains("eu-clients") && l.contains("EU clients") && l.contains("globex")),
        "{}",
        groups.stdout
    );
    let in_use = install
        .run(&["tenant-group", "delete", "eu-clients"])
        .fails();
    assert!(
        in_use.error_message().contains("tenant_group_in_use"),
        "{}",
        in_use.stderr
    );

    install
        .run(&["operator", "scope", "tom.tech", "--all"])
        .ok();
    let everything = server.get("/api/v1/tenants", Some(&tom)).await;
    assert_eq!(slugs(&everything.body), ["acme", "globex"]);
    install.run(&["tenant-group", "delete", "eu-clients"]).ok();
    let none = install.run(&["tenant-group", "list"]).ok();
    assert!(
        none.stdout.contains("No tenant groups yet"),
        "{}",
        none.stdout
    );

    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(!stopped.stderr.contains(&tom));
}

// ----- 6. bench --------------------------------------------------------------

async fn events_start_workflows_seen_through_the_cli(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    let payload = json!({
        "psa": "connectwise",
        "company": {"id": "42", "name": "Acme Ltd", "slug": "acme", "region": "eu"},
        "owner": {"email": "owner@msp.example"},
    })
    .to_string();
    let submit = [
        "events",
        "submit",
        "--type",
        "psa.opportunity.won",
        "--key",
        "opp-42",
        "--payload",
        payload.as_str(),
        "--json",
    ];
    let first = install.run(&submit).ok().json();
    assert_eq!(first["duplicate"], false, "{first}");
    let instances = first["instances"].as_array().unwrap().clone();
    assert_eq!(
        instances.len(),
        1,
        "the built-in onboarding starts: {first}"
    );
    let again = install.run(&submit).ok().json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["instances"], first["instances"]);

    // No template wants this one: stored, and nothing starts.
    let nobody = install
        .run(&[
            "events",
            "submit",
            "--type",
            "test.nobody",
            "--key",
            "n-1",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(nobody["instances"], json!([]));
    assert!(nobody["event"]["id"].as_str().unwrap().starts_with("evt_"));

    let list = install.run(&["workflows", "list", "--json"]).ok().json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], instances[0]);
    assert_eq!(items[0]["template"], "client-onboarding");
    assert!(items[0].get("definition").is_none());
    let none = install
        .run(&["workflows", "list", "--state", "completed", "--json"])
        .ok()
        .json();
    assert_eq!(none["items"], json!([]));

    let id = instances[0].as_str().unwrap();
    let shown = install
        .run(&["workflows", "show", id, "--json"])
        .ok()
        .json();
    assert_eq!(shown["instance"]["id"], id);
    assert_eq!(shown["instance"]["definition"]["name"], "client-onboarding");
    let table = install.run(&["workflows", "show", id]).ok();
    assert!(table.stdout.contains("STEP"), "{}", table.stdout);

    // The same instance, as an onboarding.
    let onboardings = install.run(&["onboarding", "list", "--json"]).ok().json();
    assert_eq!(onboardings["items"][0]["id"], id, "{onboardings}");
    assert_eq!(onboardings["items"][0]["client"], "Acme Ltd");
    assert_eq!(onboardings["items"][0]["stage"], "intake");
    let shown = install.run(&["onboarding", "show", id]).ok();
    assert!(shown.stdout.contains("stage intake"), "{}", shown.stdout);
    let items = install
        .run(&["onboarding", "items", id, "--json"])
        .ok()
        .json();
    assert_eq!(items["items"], json!([]), "no tenant, no checklist yet");
    let missing = install
        .run(&[
            "onboarding",
            "waive",
            id,
            "chk_01jd8x3k2q9f6v0c4m7r5t8w1y",
            "--reason",
            "not needed",
        ])
        .fails();
    assert!(
        missing.error_message().contains("item_not_found"),
        "{}",
        missing.error_message()
    );

    let approvals = install
        .run(&["approvals", "list", "--state", "pending", "--json"])
        .ok()
        .json();
    assert_eq!(
        approvals["items"],
        json!([]),
        "no worker ran: nothing waits yet"
    );
    install
        .run(&[
            "operator",
            "create",
            "lea.lead",
            "--display-name",
            "Lea",
            "--role",
            "lead",
        ])
        .ok();
    let missing = install
        .run(&[
            "approvals",
            "approve",
            "apr_01jd8x3k2q9f6v0c4m7r5t8w1y",
            "--as",
            "lea.lead",
            "--reason",
            "checked",
        ])
        .fails();
    assert!(
        missing.error_message().contains("approval_not_found"),
        "{}",
        missing.error_message()
    );
    let nobody = install
        .run(&[
            "approvals",
            "reject",
            "apr_01jd8x3k2q9f6v0c4m7r5t8w1y",
            "--as",
            "no.body",
            "--reason",
            "checked",
        ])
        .fails();
    assert!(
        nobody.error_message().contains("operator_not_found"),
        "{}",
        nobody.error_message()
    );
}

async fn tenant_gates_through_the_cli(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme", "--region", "eu",
        ])
        .ok();
    install
        .run(&[
            "tenant", "create", "globex", "--name", "Globex", "--region", "eu",
        ])
        .ok();

    let table = install.run(&["tenant", "gates", "acme"]).ok();
    assert!(table.stdout.starts_with("AREA"), "{}", table.stdout);
    assert!(table.stdout.contains("joiner_access"), "{}", table.stdout);

    let set = install
        .run(&[
            "tenant",
            "gate",
            "acme",
            "joiner_access",
            "L2",
            "--reason",
            "client approves joiners",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(set["override"], "L2");
    assert_eq!(set["effective"], "L2");
    assert_eq!(set["last_change"]["set_by"], "system");

    // Below the floor: refused with the error code and the floor named.
    let below = install
        .run(&[
            "tenant",
            "gate",
            "acme",
            "client_onboarding",
            "L1",
            "--reason",
            "faster",
        ])
        .fails();
    let message = below.error_message();
    assert!(
        message.contains("floor is l2") && message.contains("(invalid_input)"),
        "{message}"
    );
    // A level or --clear, not both and not neither.
    install
        .run(&["tenant", "gate", "acme", "joiner_access", "--reason", "x"])
        .fails();
    install
        .run(&[
            "tenant",
            "gate",
            "acme",
            "joiner_access",
            "L2",
            "--clear",
            "--reason",
            "x",
        ])
        .fails();

    let gates = install
        .run(&["tenant", "gates", "acme", "--json"])
        .ok()
        .json();
    let gates = gates.as_array().expect("a JSON array");
    assert_eq!(gates.len(), 10);
    let joiner = gates.iter().find(|g| g["area"] == "joiner_access").unwrap();
    assert_eq!(joiner["effective"], "L2");
    let onboarding = gates
        .iter()
        .find(|g| g["area"] == "client_onboarding")
        .unwrap();
    assert_eq!(
        onboarding["override"],
        Value::Null,
        "the refused change left nothing"
    );
    let other = install
        .run(&["tenant", "gates", "globex", "--json"])
        .ok()
        .json();
    assert!(
        other
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["override"].is_null()),
        "{other}"
    );

    let cleared = install
        .run(&[
            "tenant",
            "gate",
            "acme",
            "joiner_access",
            "--clear",
            "--reason",
            "back to the standard",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(cleared["override"], Value::Null);
    assert_eq!(cleared["effective"], "L1");
    assert_eq!(cleared["last_change"]["reason"], "back to the standard");
}

async fn audit_export_writes_a_tenants_oscal_document(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();
    let submitted = install
        .run(&[
            "events",
            "submit",
            "--type",
            "psa.opportunity.won",
            "--key",
            "opp-42",
            "--tenant",
            "acme",
            "--payload",
            r#"{"psa": "connectwise", "company": {"id": "42", "name": "Acme Ltd", "slug": "acme", "region": "eu"}}"#,
            "--json",
        ])
        .ok()
        .json();
    let instance = submitted["instances"][0].as_str().unwrap().to_owned();

    // No `serve` ran: the export appends the queued records itself.
    let out = install.path("acme.json");
    let out_arg = out.to_str().unwrap();
    let run = install
        .run(&[
            "audit", "export", "--format", "oscal", "--tenant", "acme", "--out", out_arg,
        ])
        .ok();
    assert!(run.stderr.contains("queued audit record"), "{}", run.stderr);
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let results = doc["assessment-results"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{doc}");
    assert!(
        results[0]["title"]
            .as_str()
            .unwrap()
            .ends_with(&format!("run {instance}")),
        "{}",
        results[0]["title"]
    );
    assert!(!install.path("acme.json.partial").exists());

    // To standard output, for a period with no runs.
    let none = install
        .run(&[
            "audit",
            "export",
            "--tenant",
            "acme",
            "--since",
            "2999-01-01T00:00:00Z",
            "--out",
            "-",
        ])
        .ok();
    let doc: Value = serde_json::from_str(none.stdout.trim()).unwrap();
    assert_eq!(
        doc["assessment-results"]["results"][0]["title"],
        "No workflow runs in the period"
    );

    // Bad input names what is wrong and writes nothing.
    let bad = install.path("bad.json");
    let failed = install
        .run(&[
            "audit",
            "export",
            "--tenant",
            "acme",
            "--until",
            "yesterday",
            "--out",
            bad.to_str().unwrap(),
        ])
        .fails();
    assert!(
        failed.error_message().contains("--until"),
        "{}",
        failed.error_message()
    );
    assert!(!bad.exists());
    let failed = install
        .run(&["audit", "export", "--tenant", "nope", "--out", "-"])
        .fails();
    assert!(
        failed.error_message().contains("tenant_not_found"),
        "{}",
        failed.error_message()
    );
}

async fn bench_audit_prints_json_last(backend: Backend) {
    let install = Install::new(&backend);
    let run = install
        .run(&[
            "bench",
            "audit",
            "--json",
            "--entries",
            "3000",
            "--oscal-entries",
            "200",
        ])
        .ok();
    let last = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("bench printed nothing; stderr:\n{}", run.stderr));
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is JSON ({e}): {last}"));
    for field in [
        "appends_per_sec",
        "verify_secs",
        "proof_p99_ms",
        "oscal_export_secs",
        "peak_rss_mb",
    ] {
        let value = result[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is a number: {result}"));
        assert!(value > 0.0, "{field} = {value}");
    }
    assert_eq!(result["backend"], backend.name(), "{result}");
    assert_eq!(result["scenario"], "audit");
    assert_eq!(result["entries"], 3000);
    assert_eq!(result["oscal_runs"], 20, "one result per run of ten facts");
    assert!(!install.path("gatehouse.db").exists());
}

async fn bench_store_prints_json_last(backend: Backend) {
    let install = Install::new(&backend);
    let run = install
        .run(&[
            "bench",
            "store",
            "--json",
            "--tenants",
            "5",
            "--secrets",
            "50",
            "--concurrency",
            "2",
        ])
        .ok();
    let last = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("bench printed nothing; stderr:\n{}", run.stderr));
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is JSON ({e}): {last}"));
    for field in [
        "tenants_per_sec",
        "secret_writes_per_sec",
        "secret_reads_per_sec",
    ] {
        let value = result[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is a number: {result}"));
        assert!(value > 0.0, "{field} = {value}");
    }
    let rss = result["peak_rss_mb"]
        .as_f64()
        .unwrap_or_else(|| panic!("peak_rss_mb is a number: {result}"));
    assert!(rss > 0.0, "peak_rss_mb = {rss}");
    assert_eq!(result["backend"], backend.name(), "{result}");
    assert_eq!(result["scenario"], "store");
    assert_eq!(result["tenants"], 5);
    assert_eq!(result["secrets"], 50);

    // The benchmark leaves the installation alone.
    assert!(
        !install.path("kek.json").exists(),
        "bench must not create the configured key file"
    );
    assert!(!install.path("gatehouse.db").exists());
}

// ----- the variants ----------------------------------------------------------

mod sqlite {
    /// `--log-format json` writes one JSON object a line to standard error,
    /// with the level and message, and standard output stays for results.
    #[test]
    fn json_logs_are_one_object_a_line() {
        let install = Install::new(&Backend::sqlite());
        install.run(&["migrate"]).ok();
        // The first command that opens the keys creates the key file and warns.
        let run = install
            .run(&["--log-format", "json", "tenant", "list"])
            .ok();
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(!lines.is_empty(), "no log lines: {}", run.stderr);
        for line in &lines {
            let entry: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(
                entry["level"].is_string() && entry["timestamp"].is_string(),
                "{line}"
            );
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("\"WARN\"") && l.contains("back it up")),
            "{}",
            run.stderr
        );
        assert!(run.stdout.contains("No tenants yet"), "{}", run.stdout);
        // A bad filter is refused, not ignored.
        let bad = install
            .command(&["tenant", "list"])
            .env("GATEHOUSE_LOG", "gatehouse=shouty")
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("log filter"));
    }

    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn serve_bootstraps_prints_a_working_token_and_stops_on_sigterm() {
        on_sqlite(super::serve_bootstraps_prints_a_working_token_and_stops_on_sigterm).await;
    }

    #[tokio::test]
    async fn migrate_then_tenant_lifecycle_through_the_cli() {
        on_sqlite(super::migrate_then_tenant_lifecycle_through_the_cli).await;
    }

    #[tokio::test]
    async fn the_audit_public_key_survives_kek_rotation() {
        on_sqlite(super::the_audit_public_key_survives_kek_rotation).await;
    }

    #[tokio::test]
    async fn audit_checkpoints_from_serve_and_the_cli() {
        on_sqlite(super::audit_checkpoints_from_serve_and_the_cli).await;
    }

    #[tokio::test]
    async fn secrets_via_stdin_survive_key_rotation() {
        on_sqlite(super::secrets_via_stdin_survive_key_rotation).await;
    }

    #[tokio::test]
    async fn operators_and_roles() {
        on_sqlite(super::operators_and_roles).await;
    }

    #[tokio::test]
    async fn bench_store_prints_json_last() {
        on_sqlite(super::bench_store_prints_json_last).await;
    }

    #[tokio::test]
    async fn bench_audit_prints_json_last() {
        on_sqlite(super::bench_audit_prints_json_last).await;
    }

    #[tokio::test]
    async fn audit_export_writes_a_tenants_oscal_document() {
        on_sqlite(super::audit_export_writes_a_tenants_oscal_document).await;
    }

    #[tokio::test]
    async fn tenant_gates_through_the_cli() {
        on_sqlite(super::tenant_gates_through_the_cli).await;
    }

    #[tokio::test]
    async fn events_start_workflows_seen_through_the_cli() {
        on_sqlite(super::events_start_workflows_seen_through_the_cli).await;
    }

    /// `bench` must never write into an installation's database: its data
    /// keys would be wrapped by a throw-away KEK that shares the id
    /// `local:1` with the real one, and `keys rotate` would fail for good.
    /// Checked with a tenant and with only an operator (a fresh install).
    #[test]
    fn bench_leaves_the_configured_sqlite_database_alone() {
        for with_tenant in [true, false] {
            let install = Install::new(&Backend::sqlite());
            install.run(&["migrate"]).ok();
            if with_tenant {
                install
                    .run(&[
                        "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
                    ])
                    .ok();
            } else {
                install
                    .run(&[
                        "operator",
                        "create",
                        "ann",
                        "--display-name",
                        "Ann",
                        "--role",
                        "admin",
                    ])
                    .ok();
            }
            let mut cmd = gatehouse(install.data_dir());
            cmd.env(
                "GATEHOUSE_DATABASE_URL",
                sqlite_url(&install.path("gatehouse.db")),
            )
            .args([
                "bench",
                "store",
                "--json",
                "--tenants",
                "2",
                "--secrets",
                "4",
            ]);
            // Refusing is fine; writing into the installation is not.
            let _ = cmd.output().expect("running gatehouse bench");

            let list = install.run(&["tenant", "list", "--json"]).ok().json();
            assert_eq!(
                list.as_array().map(Vec::len),
                Some(usize::from(with_tenant)),
                "bench added tenants to the installation: {list}"
            );
            install.run(&["keys", "rotate"]).ok();
        }
    }

    fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}", path.display())
    }

    /// Configuration is SQLite-only: it is about which file is used.
    #[test]
    fn configuration_file_and_environment_are_honoured() {
        let install = Install::new(&Backend::sqlite());
        let dir = install.data_dir();
        let other = install.path("other.db");
        let third = install.path("third.db");
        let fourth = install.path("fourth.db");
        std::fs::write(
            install.path("gatehouse.toml"),
            format!("database_url = \"{}\"\n", sqlite_url(&other)),
        )
        .unwrap();

        // The file beats the default.
        let migrated = install.run(&["migrate"]).ok();
        assert!(other.exists(), "{}", migrated.stdout);
        assert!(
            !install.path("gatehouse.db").exists(),
            "the default database is not used"
        );
        assert!(
            migrated.stdout.contains("other.db"),
            "migrate names the database: {}",
            migrated.stdout
        );

        // The environment beats the file.
        let run = |mut cmd: std::process::Command| {
            let output = cmd.output().expect("running gatehouse");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let mut cmd = gatehouse(dir);
        cmd.env("GATEHOUSE_DATABASE_URL", sqlite_url(&third))
            .arg("migrate");
        run(cmd);
        assert!(third.exists(), "GATEHOUSE_DATABASE_URL is honoured");

        // A flag beats the environment.
        let mut cmd = gatehouse(dir);
        cmd.env("GATEHOUSE_DATABASE_URL", sqlite_url(&third)).args([
            "--database-url",
            &sqlite_url(&fourth),
            "migrate",
        ]);
        run(cmd);
        assert!(fourth.exists(), "--database-url beats the environment");

        // An explicit --config elsewhere is read instead of the default file.
        let elsewhere = tempfile::tempdir().unwrap();
        let fifth = install.path("fifth.db");
        let config = elsewhere.path().join("custom.toml");
        std::fs::write(
            &config,
            format!("database_url = \"{}\"\n", sqlite_url(&fifth)),
        )
        .unwrap();
        let mut cmd = gatehouse(dir);
        cmd.arg("--config").arg(&config).arg("migrate");
        run(cmd);
        assert!(fifth.exists(), "--config is honoured");

        // A typo in the file is an error that names the key.
        std::fs::write(
            install.path("gatehouse.toml"),
            "databse_url = \"sqlite://nowhere.db\"\n",
        )
        .unwrap();
        let failed = install.run(&["migrate"]).fails();
        let message = failed.error_message();
        assert!(message.contains("databse_url"), "{message}");
        assert!(
            message.contains("gatehouse.toml"),
            "names the file: {message}"
        );
    }
}

mod postgres {
    use super::*;

    #[tokio::test]
    async fn serve_bootstraps_prints_a_working_token_and_stops_on_sigterm() {
        on_postgres(
            "cli_serve",
            super::serve_bootstraps_prints_a_working_token_and_stops_on_sigterm,
        )
        .await;
    }

    #[tokio::test]
    async fn migrate_then_tenant_lifecycle_through_the_cli() {
        on_postgres(
            "cli_tenants",
            super::migrate_then_tenant_lifecycle_through_the_cli,
        )
        .await;
    }

    #[tokio::test]
    async fn secrets_via_stdin_survive_key_rotation() {
        on_postgres("cli_secrets", super::secrets_via_stdin_survive_key_rotation).await;
    }

    #[tokio::test]
    async fn the_audit_public_key_survives_kek_rotation() {
        on_postgres(
            "cli_audit_key",
            super::the_audit_public_key_survives_kek_rotation,
        )
        .await;
    }

    #[tokio::test]
    async fn audit_checkpoints_from_serve_and_the_cli() {
        on_postgres(
            "cli_audit_checkpoints",
            super::audit_checkpoints_from_serve_and_the_cli,
        )
        .await;
    }

    #[tokio::test]
    async fn operators_and_roles() {
        on_postgres("cli_operators", super::operators_and_roles).await;
    }

    #[tokio::test]
    async fn bench_store_prints_json_last() {
        on_postgres("cli_bench", super::bench_store_prints_json_last).await;
    }

    #[tokio::test]
    async fn bench_audit_prints_json_last() {
        on_postgres("cli_bench_audit", super::bench_audit_prints_json_last).await;
    }

    #[tokio::test]
    async fn audit_export_writes_a_tenants_oscal_document() {
        on_postgres(
            "cli_oscal",
            super::audit_export_writes_a_tenants_oscal_document,
        )
        .await;
    }

    #[tokio::test]
    async fn tenant_gates_through_the_cli() {
        on_postgres("cli_gates", super::tenant_gates_through_the_cli).await;
    }

    #[tokio::test]
    async fn events_start_workflows_seen_through_the_cli() {
        on_postgres(
            "cli_workflows",
            super::events_start_workflows_seen_through_the_cli,
        )
        .await;
    }
}

/// `gatehouse sandbox --json` prints where every emulator runs and the
/// credentials of this run; they work, and wrong ones are refused.
#[tokio::test]
async fn the_sandbox_command_runs_every_emulator_with_its_printed_credentials() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let mut child = gatehouse(dir.path())
        .args(["sandbox", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), line)
        .await
        .expect("the sandbox printed nothing")
        .unwrap()
        .unwrap();
    let printed: Value = serde_json::from_str(&line).unwrap();
    let endpoints = printed["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 10, "{printed}");
    let url_of = |system: &str| {
        endpoints
            .iter()
            .find(|e| e["system"] == system)
            .and_then(|e| e["url"].as_str())
            .unwrap_or_else(|| panic!("no {system} in {printed}"))
            .to_owned()
    };
    let ninja = url_of("NinjaOne");
    assert!(ninja.starts_with("http://127.0.0.1:"), "{ninja}");
    let creds = &printed["credentials"]["ninjaone"];
    let client = reqwest::Client::new();
    let token = |secret: String| {
        client
            .post(format!("{ninja}/ws/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds["client_id"].as_str().unwrap()),
                ("client_secret", &secret),
                ("scope", "monitoring management"),
            ])
            .send()
    };
    let good = token(creds["client_secret"].as_str().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let bad = token("not-the-secret".to_owned()).await.unwrap();
    assert_eq!(bad.status(), 401);
    // The SCIM application takes the printed bearer token.
    let scim_users = format!("{}/Users", url_of("SCIM 2.0 app"));
    let bearer = printed["credentials"]["scim"]["bearer_token"]
        .as_str()
        .unwrap();
    let listed = client
        .get(&scim_users)
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let refused = client
        .get(&scim_users)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    child.kill().unwrap();
    child.wait().unwrap();
}
