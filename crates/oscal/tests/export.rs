//! The mapping from audit facts to OSCAL, checked against the vendored NIST
//! OSCAL 1.2.3 assessment-results schema.

mod support;

use std::collections::HashSet;

use gatehouse_core::operator::Role;
use gatehouse_core::workflow::InstanceState;
use gatehouse_oscal::*;
use serde_json::{Value, json};
use support::*;
use time::Duration;
use time::macros::datetime;

fn lead() -> Result<OperatorRef, Box<dyn std::error::Error>> {
    operator(1, "lena.lead", "Léna Lead", Role::Lead)
}

fn admin() -> Result<OperatorRef, Box<dyn std::error::Error>> {
    operator(2, "ade.admin", "Adé Admin 管理", Role::Admin)
}

#[test]
fn a_full_run_maps_to_a_valid_document_with_every_element() -> TestResult {
    let run = full_run(1, 0, Actor::Operator(admin()?), lead()?)?;
    let doc = export_value(&input(vec![run], vec![checkpoint(4), checkpoint(100)])?)?;
    let v = validator()?;
    assert_eq!(violations(&v, &doc), Vec::<String>::new());

    let ar = &doc["assessment-results"];
    assert_eq!(ar["metadata"]["oscal-version"], "1.1.3");
    assert_eq!(ar["metadata"]["version"], "checkpoint-100");
    assert_eq!(ar["metadata"]["last-modified"], "2026-12-01T07:15:30.5Z");
    assert_eq!(
        count(&ar["metadata"], "parties"),
        2 + 3,
        "system, tenant, admin, lead, technician"
    );
    assert_eq!(count(ar, "results"), 1);
    let r = result(&doc, 0);
    // trigger, decision, notification, human task, rollback
    assert_eq!(count(&r["assessment-log"], "entries"), 5);
    // analysis, decision, 2 steps, human task
    assert_eq!(count(r, "observations"), 5);
    assert_eq!(count(r, "risks"), 1);
    // ac-2 execution (compensated: not satisfied), ac-5, au-9, au-10
    assert_eq!(count(r, "findings"), 4);
    let controls: Vec<&Value> = r["reviewed-controls"]["control-selections"][0]["include-controls"]
        .as_array()
        .ok_or("include-controls")?
        .iter()
        .map(|c| &c["control-id"])
        .collect();
    assert_eq!(controls, ["ac-2", "ac-5", "au-9", "au-10"]);

    let entries = r["assessment-log"]["entries"].as_array().ok_or("entries")?;
    assert_eq!(entries[0]["logged-by"][0]["role-id"], "system");
    let decision = &entries[1];
    assert_eq!(decision["logged-by"][0]["role-id"], "approver");
    let lead_party = ids::operator_party(lead()?.id).to_string();
    assert_eq!(decision["logged-by"][0]["party-uuid"], lead_party.as_str());
    assert!(
        decision["props"]
            .as_array()
            .ok_or("props")?
            .contains(&json!(
                {"name": "override", "ns": NS, "value": "true"}
            ))
    );

    let risk = &r["risks"][0];
    assert_eq!(risk["status"], "closed");
    assert_eq!(risk["remediations"][0]["lifecycle"], "completed");
    // The risk points at the execution of the step it undid.
    let step_obs = r["observations"]
        .as_array()
        .ok_or("observations")?
        .iter()
        .find(|o| {
            o["props"]
                .as_array()
                .is_some_and(|p| p.contains(&json!({"name": "leaf-index", "ns": NS, "value": "3"})))
        })
        .ok_or("step observation")?;
    assert_eq!(
        risk["related-observations"][0]["observation-uuid"],
        step_obs["uuid"]
    );
    assert_eq!(step_obs["methods"][0], "TEST-AUTOMATED");
    assert_eq!(step_obs["origins"][0]["actors"][0]["type"], "tool");

    let execution = &findings_for(r, "ac-2")[0];
    assert_eq!(execution["target"]["status"]["state"], "not-satisfied");
    assert_eq!(
        findings_for(r, "ac-5")[0]["target"]["status"]["state"],
        "satisfied"
    );
    assert_eq!(
        findings_for(r, "au-9")[0]["target"]["status"]["state"],
        "satisfied"
    );
    assert_eq!(
        findings_for(r, "au-10")[0]["target"]["status"]["state"],
        "satisfied"
    );
    Ok(())
}

#[test]
fn every_reference_resolves_inside_the_document() -> TestResult {
    let run = full_run(1, 0, Actor::Operator(admin()?), lead()?)?;
    let doc = export_value(&input(vec![run], vec![checkpoint(3), checkpoint(8)])?)?;
    let ar = &doc["assessment-results"];
    let resources: HashSet<String> = ar["back-matter"]["resources"]
        .as_array()
        .ok_or("resources")?
        .iter()
        .filter_map(|r| r["uuid"].as_str().map(|u| format!("#{u}")))
        .collect();
    let parties: HashSet<&str> = ar["metadata"]["parties"]
        .as_array()
        .ok_or("parties")?
        .iter()
        .filter_map(|p| p["uuid"].as_str())
        .collect();
    let roles: HashSet<&str> = ar["metadata"]["roles"]
        .as_array()
        .ok_or("roles")?
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(resources.contains(ar["import-ap"]["href"].as_str().ok_or("href")?));

    let r = result(&doc, 0);
    let component = r["local-definitions"]["components"][0]["uuid"]
        .as_str()
        .ok_or("component")?;
    let mut hrefs = 0;
    for obs in r["observations"].as_array().ok_or("observations")? {
        let evidence = &obs["relevant-evidence"][0];
        let href = evidence["href"]
            .as_str()
            .ok_or("every leaf here is covered")?;
        assert!(resources.contains(href), "{href}");
        hrefs += 1;
        for actor in obs["origins"][0]["actors"].as_array().ok_or("actors")? {
            let uuid = actor["actor-uuid"].as_str().ok_or("actor-uuid")?;
            match actor["type"].as_str() {
                Some("tool") => assert_eq!(uuid, component),
                Some("party") => {
                    assert!(parties.contains(uuid), "{uuid}");
                    assert!(roles.contains(actor["role-id"].as_str().ok_or("role-id")?));
                }
                other => panic!("unexpected actor type {other:?}"),
            }
        }
    }
    assert_eq!(hrefs, 5);
    for entry in r["assessment-log"]["entries"].as_array().ok_or("entries")? {
        let by = &entry["logged-by"][0];
        assert!(parties.contains(by["party-uuid"].as_str().ok_or("party")?));
        assert!(roles.contains(by["role-id"].as_str().ok_or("role")?));
    }
    // Leaves 0..3 are in the checkpoint of size 3; leaves 3..8 in that of size 8.
    let checkpoint_of =
        |size: u64| format!("#{}", ids::checkpoint("gatehouse.example/audit", size));
    let first = &r["observations"][0]["relevant-evidence"][0];
    assert_eq!(
        first["href"].as_str(),
        Some(checkpoint_of(3).as_str()),
        "leaf 1"
    );
    let last = r["observations"]
        .as_array()
        .ok_or("observations")?
        .last()
        .ok_or("last")?;
    assert_eq!(
        last["relevant-evidence"][0]["href"].as_str(),
        Some(checkpoint_of(8).as_str())
    );
    Ok(())
}

#[test]
fn checkpoints_carry_their_root_hash_and_the_hash_of_their_note() -> TestResult {
    let cp = checkpoint(42);
    let doc = export_value(&input(vec![], vec![cp.clone()])?)?;
    let resource = &doc["assessment-results"]["back-matter"]["resources"][1];
    let root = hex::encode(cp.root_hash);
    assert!(
        resource["props"]
            .as_array()
            .ok_or("props")?
            .contains(&json!(
                {"name": "root-hash", "ns": NS, "value": root}
            ))
    );
    let rlink = &resource["rlinks"][0];
    assert_eq!(rlink["href"], cp.href.as_str());
    assert_eq!(rlink["hashes"][0]["algorithm"], "SHA-256");
    use sha2::Digest;
    assert_eq!(
        rlink["hashes"][0]["value"],
        hex::encode(sha2::Sha256::digest(cp.note.as_bytes()))
    );
    use base64::Engine;
    let embedded = base64::engine::general_purpose::STANDARD
        .decode(resource["base64"]["value"].as_str().ok_or("base64")?)?;
    assert_eq!(embedded, cp.note.as_bytes());
    Ok(())
}

#[test]
fn an_export_without_runs_still_has_one_valid_result() -> TestResult {
    let doc = export_value(&input(vec![], vec![])?)?;
    assert_eq!(violations(&validator()?, &doc), Vec::<String>::new());
    assert_eq!(count(&doc["assessment-results"], "results"), 1);
    let r = result(&doc, 0);
    assert_eq!(r["start"], "2026-11-01T00:00:00Z");
    assert_eq!(r["end"], "2026-12-01T00:00:00Z");
    assert_eq!(
        count(r, "observations") + count(r, "findings") + count(r, "risks"),
        0
    );
    assert_eq!(
        doc["assessment-results"]["metadata"]["version"],
        "unchecked"
    );
    Ok(())
}

#[test]
fn separation_of_duties_is_not_satisfied_when_the_approver_started_the_run() -> TestResult {
    let v = validator()?;
    // The approver started the run.
    let run = full_run(1, 0, Actor::Operator(lead()?), lead()?)?;
    let doc = export_value(&input(vec![run], vec![checkpoint(100)])?)?;
    assert_eq!(violations(&v, &doc), Vec::<String>::new());
    let sod = findings_for(result(&doc, 0), "ac-5");
    assert_eq!(sod.len(), 1);
    assert_eq!(sod[0]["target"]["status"]["state"], "not-satisfied");
    assert_eq!(sod[0]["target"]["status"]["reason"], "fail");
    assert!(
        sod[0]["description"]
            .as_str()
            .ok_or("description")?
            .contains("started the workflow")
    );

    // The approver prepared the plan.
    let mut run = full_run(2, 0, Actor::System, lead()?)?;
    for entry in &mut run.entries {
        if let RunEntry::GateDecision(d) = entry {
            d.prepared_by = Actor::Operator(lead()?);
        }
    }
    let doc = export_value(&input(vec![run], vec![])?)?;
    let sod = findings_for(result(&doc, 0), "ac-5");
    assert_eq!(sod[0]["target"]["status"]["state"], "not-satisfied");
    assert!(
        sod[0]["description"]
            .as_str()
            .ok_or("description")?
            .contains("prepared the plan")
    );

    // Someone else started it and Gatehouse prepared the plan.
    let run = full_run(3, 0, Actor::Operator(admin()?), lead()?)?;
    let doc = export_value(&input(vec![run], vec![])?)?;
    let sod = findings_for(result(&doc, 0), "ac-5");
    assert_eq!(sod[0]["target"]["status"]["state"], "satisfied");

    // No decision, no AC-5 finding.
    let mut run = full_run(4, 0, Actor::Operator(lead()?), lead()?)?;
    run.entries
        .retain(|e| !matches!(e, RunEntry::GateDecision(_)));
    let doc = export_value(&input(vec![run], vec![])?)?;
    assert!(findings_for(result(&doc, 0), "ac-5").is_empty());
    Ok(())
}

#[test]
fn revocation_is_judged_against_its_sla() -> TestResult {
    let v = validator()?;
    let required_from = datetime!(2026-11-02 17:00 UTC);
    let cases = [
        (Some(required_from + Duration::minutes(14)), "satisfied"),
        (Some(required_from + Duration::minutes(15)), "satisfied"),
        (Some(required_from + Duration::minutes(16)), "not-satisfied"),
        (None, "not-satisfied"),
    ];
    for (i, (completed_at, state)) in cases.into_iter().enumerate() {
        let mut run = full_run(1, 0, Actor::System, lead()?)?;
        run.state = InstanceState::Completed;
        run.revocation = Some(Revocation {
            required_from,
            sla: Duration::minutes(15),
            completed_at,
        });
        let doc = export_value(&input(vec![run], vec![])?)?;
        assert_eq!(violations(&v, &doc), Vec::<String>::new());
        let ac2 = findings_for(result(&doc, 0), "ac-2");
        assert_eq!(ac2.len(), 2, "execution and revocation");
        assert_eq!(
            ac2[0]["target"]["status"]["state"], "satisfied",
            "completed run"
        );
        assert_eq!(ac2[1]["target"]["status"]["state"], state, "case {i}");
    }
    Ok(())
}

#[test]
fn a_failed_rollback_is_an_open_risk_and_a_running_run_has_no_execution_finding() -> TestResult {
    let mut run = full_run(1, 0, Actor::System, lead()?)?;
    run.state = InstanceState::Running;
    run.ended_at = None;
    for entry in &mut run.entries {
        if let RunEntry::Compensation(c) = entry {
            c.outcome = Outcome::Failed;
            c.by = Actor::Operator(admin()?);
        }
    }
    let doc = export_value(&input(vec![run], vec![checkpoint(5)])?)?;
    assert_eq!(violations(&validator()?, &doc), Vec::<String>::new());
    let r = result(&doc, 0);
    assert!(r.get("end").is_none());
    assert_eq!(r["risks"][0]["status"], "open");
    assert!(r["risks"][0].get("remediations").is_none());
    assert_eq!(r["risks"][0]["origins"][0]["actors"][0]["type"], "party");
    assert!(findings_for(r, "ac-2").is_empty());
    // Leaves 5..8 are past the only checkpoint (size 5).
    assert_eq!(
        findings_for(r, "au-9")[0]["target"]["status"]["state"],
        "not-satisfied"
    );
    let au10 = findings_for(r, "au-10");
    assert_eq!(au10[0]["target"]["status"]["state"], "not-satisfied");
    assert!(
        au10[0]["description"]
            .as_str()
            .ok_or("description")?
            .contains("5, 7")
    );
    Ok(())
}

/// Every `uuid` and `…-uuid` value in the document.
fn uuids<'a>(value: &'a Value, key: Option<&str>, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                uuids(v, Some(k), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                uuids(item, key, out);
            }
        }
        Value::String(s)
            if key
                .is_some_and(|k| k == "uuid" || k.ends_with("-uuid") || k.ends_with("-uuids")) =>
        {
            out.push((key.unwrap_or_default().to_owned(), s));
        }
        _ => {}
    }
}

#[test]
fn uuids_are_version_5_and_identify_one_element_each() -> TestResult {
    let runs = vec![
        full_run(1, 0, Actor::Operator(admin()?), lead()?)?,
        full_run(2, 100, Actor::System, admin()?)?,
    ];
    let doc = export_value(&input(runs, vec![checkpoint(50), checkpoint(200)])?)?;
    // Each result defines the Gatehouse engine as its own local component:
    // the same component, so the same UUID. Every other UUID defines one
    // element.
    let mut doc = doc;
    let engine = ids::engine_component().to_string();
    for r in doc["assessment-results"]["results"]
        .as_array_mut()
        .ok_or("results")?
    {
        let defs = r
            .as_object_mut()
            .and_then(|r| r.remove("local-definitions"))
            .ok_or("defs")?;
        assert_eq!(defs["components"][0]["uuid"], engine.as_str());
    }
    let mut found = Vec::new();
    uuids(&doc, None, &mut found);
    assert!(found.len() > 40, "{}", found.len());
    let mut defined = HashSet::new();
    for (key, text) in &found {
        let uuid = uuid::Uuid::parse_str(text)?;
        assert_eq!(uuid.get_version_num(), 5, "{key}: {text}");
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{key}: {text}");
        if key == "uuid" {
            assert!(defined.insert(*text), "{text} defined twice");
        }
    }
    Ok(())
}

#[test]
fn the_same_input_exports_the_same_document() -> TestResult {
    let runs = vec![
        full_run(1, 0, Actor::Operator(admin()?), lead()?)?,
        full_run(2, 100, Actor::System, admin()?)?,
    ];
    let a = input(runs.clone(), vec![checkpoint(50), checkpoint(200)])?;
    let b = input(runs, vec![checkpoint(200), checkpoint(50)])?;
    let mut first = Vec::new();
    export_json(&a, &ExportOptions::default(), &mut first)?;
    let mut second = Vec::new();
    export_json(&b, &ExportOptions::default(), &mut second)?;
    assert_eq!(
        String::from_utf8(first.clone())?,
        String::from_utf8(second)?
    );

    // Another tenant's export of the same facts has other UUIDs.
    let mut c = a.clone();
    c.tenant.id = id("ten", 8)?;
    let mut third = Vec::new();
    export_json(&c, &ExportOptions::default(), &mut third)?;
    let first: Value = serde_json::from_slice(&first)?;
    let third: Value = serde_json::from_slice(&third)?;
    assert_ne!(
        first["assessment-results"]["uuid"],
        third["assessment-results"]["uuid"]
    );
    assert_ne!(
        result(&first, 0)["observations"][0]["uuid"],
        result(&third, 0)["observations"][0]["uuid"]
    );
    // The result of a run is the same run's in both.
    assert_eq!(result(&first, 0)["uuid"], result(&third, 0)["uuid"]);
    Ok(())
}

#[test]
fn options_choose_the_versions() -> TestResult {
    let input = input(vec![], vec![])?;
    let options = ExportOptions {
        oscal_version: "1.2.3".to_owned(),
        document_version: Some("2026-11".to_owned()),
    };
    let doc = serde_json::to_value(export(&input, &options)?)?;
    assert_eq!(
        doc["assessment-results"]["metadata"]["oscal-version"],
        "1.2.3"
    );
    assert_eq!(doc["assessment-results"]["metadata"]["version"], "2026-11");
    for bad in ["", " 1.1.3", "1.1\n3"] {
        let options = ExportOptions {
            oscal_version: bad.to_owned(),
            document_version: None,
        };
        assert!(matches!(
            export(&input, &options),
            Err(ExportError::InvalidOption {
                option: "oscal_version"
            })
        ));
    }
    Ok(())
}

#[test]
fn input_oscal_cannot_express_is_refused_with_the_fact_named() -> TestResult {
    let lead = lead()?;

    let mut run = full_run(1, 0, Actor::System, lead.clone())?;
    run.entries.push(RunEntry::Analysis(Analysis {
        step_id: None,
        text: "again".to_owned(),
        confidence: None,
        at: T0,
        leaf_index: 3,
    }));
    let err = export(&input(vec![run], vec![])?, &ExportOptions::default());
    assert!(
        matches!(err, Err(ExportError::DuplicateLeaf { leaf: 3 })),
        "{err:?}"
    );

    let (a, b) = (
        full_run(1, 0, Actor::System, lead.clone())?,
        full_run(2, 7, Actor::System, lead.clone())?,
    );
    let err = export(&input(vec![a, b], vec![])?, &ExportOptions::default());
    assert!(
        matches!(err, Err(ExportError::DuplicateLeaf { leaf: 7 })),
        "{err:?}"
    );

    let mut run = full_run(1, 0, Actor::System, lead.clone())?;
    run.started_at = datetime!(1899-12-31 23:00 UTC);
    let err = export(&input(vec![run], vec![])?, &ExportOptions::default());
    assert!(
        matches!(
            err,
            Err(ExportError::TimeOutOfRange {
                what: "run start",
                ..
            })
        ),
        "{err:?}"
    );

    let mut run = full_run(1, 0, Actor::System, lead.clone())?;
    if let Some(RunEntry::Analysis(a)) = run.entries.first_mut() {
        a.confidence = Some(f64::NAN);
    }
    let err = export(&input(vec![run], vec![])?, &ExportOptions::default());
    assert!(
        matches!(err, Err(ExportError::Confidence { leaf: 1, .. })),
        "{err:?}"
    );

    for (cp, reason) in [
        (
            CheckpointRef {
                href: "not a uri".to_owned(),
                ..checkpoint(9)
            },
            "href",
        ),
        (
            CheckpointRef {
                note: " \n".to_owned(),
                ..checkpoint(9)
            },
            "note",
        ),
        (
            CheckpointRef {
                origin: "\n".to_owned(),
                ..checkpoint(9)
            },
            "origin",
        ),
    ] {
        let err = export(&input(vec![], vec![cp])?, &ExportOptions::default());
        match err {
            Err(e @ ExportError::Checkpoint { .. }) => {
                assert!(e.to_string().contains(reason), "{e}")
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
    let err = export(
        &input(vec![], vec![checkpoint(9), checkpoint(9)])?,
        &ExportOptions::default(),
    );
    assert!(
        matches!(err, Err(ExportError::Checkpoint { tree_size: 9, .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn the_validator_rejects_broken_documents() -> TestResult {
    let v = validator()?;
    let run = full_run(1, 0, Actor::Operator(admin()?), lead()?)?;
    let good = export_value(&input(vec![run], vec![checkpoint(100)])?)?;
    assert!(v.is_valid(&good));

    type Break = fn(&mut Value);
    let breaks: [(&str, Break); 9] = [
        ("no metadata title", |d| {
            if let Some(m) = d["assessment-results"]["metadata"].as_object_mut() {
                m.remove("title");
            }
        }),
        ("multi-line result title", |d| {
            d["assessment-results"]["results"][0]["title"] = json!("two\nlines")
        }),
        ("version 7 uuid", |d| {
            d["assessment-results"]["uuid"] = json!("01890a5d-ac96-774b-bcce-b302099a8057");
        }),
        ("version 1 uuid", |d| {
            d["assessment-results"]["results"][0]["observations"][0]["uuid"] =
                json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        }),
        ("last-modified without zone", |d| {
            d["assessment-results"]["metadata"]["last-modified"] = json!("2026-12-01T07:15:30");
        }),
        ("unknown field", |d| {
            d["assessment-results"]["results"][0]["gatehouse"] = json!(1)
        }),
        ("empty results", |d| {
            d["assessment-results"]["results"] = json!([])
        }),
        ("unknown finding state", |d| {
            d["assessment-results"]["results"][0]["findings"][0]["target"]["status"]["state"] =
                json!("maybe");
        }),
        ("prop value with trailing space", |d| {
            d["assessment-results"]["metadata"]["props"][0]["value"] = json!("ten ");
        }),
    ];
    for (what, break_it) in breaks {
        let mut doc = good.clone();
        break_it(&mut doc);
        assert!(!violations(&v, &doc).is_empty(), "{what} was accepted");
    }
    Ok(())
}
