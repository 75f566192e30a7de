//! Loading, validation and scheduling tests for workflow templates. Each
//! validation rule is checked for the exact line and field it reports.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use gatehouse_core::gate::{GateLevel, GatePolicy, ProcessArea};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::retry::RetryPolicy;

const HEAD: &str = r#"name = "test"
version = 1
title = "Test"
area = "client_onboarding"
"#;

fn load(text: &str) -> Result<Template, TemplateErrors> {
    Template::from_toml("t.toml", text, &builtin_actions())
}

fn problems(text: &str) -> Vec<TemplateError> {
    match load(text) {
        Ok(template) => panic!("expected errors, loaded {template:#?}"),
        Err(errors) => errors.into_vec(),
    }
}

/// A template with one stage holding `steps` (TOML for `[[stage.step]]`s).
fn one_stage(steps: &str) -> String {
    format!("{HEAD}\n[[stage]]\nid = \"main\"\ntitle = \"Main\"\n{steps}")
}

/// The 1-based line of the only line containing `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "`{needle}` must be on exactly one line");
    lines[0]
}

#[track_caller]
fn check(error: &TemplateError, line: usize, field: &str, fragment: &str) {
    assert_eq!(error.source, "t.toml", "{error}");
    assert_eq!((error.line, error.field.as_str()), (line, field), "{error}");
    assert!(
        error.message.contains(fragment),
        "`{fragment}` not in: {error}"
    );
}

/// Exactly one problem, at this line and field, mentioning `fragment`.
#[track_caller]
fn only(text: &str, line: usize, field: &str, fragment: &str) {
    let errors = problems(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    check(&errors[0], line, field, fragment);
}

// ----- the built-in templates -------------------------------------------------

#[test]
fn builtin_templates_load_and_use_exactly_the_builtin_actions() {
    let set = TemplateSet::builtin(&builtin_actions()).unwrap();
    assert_eq!(set.len(), 6);
    let used: BTreeSet<&str> = set.iter().flat_map(|t| t.actions()).collect();
    let mut specific = builtin_actions();
    for generic in GENERIC_ACTIONS {
        assert!(specific.remove(generic), "{generic} is in the catalog");
    }
    assert_eq!(
        used, specific,
        "builtin_actions() must list exactly what they use"
    );
    assert_eq!(
        set.origin("client-onboarding", 1),
        Some(&TemplateOrigin::BuiltIn("client-onboarding.toml"))
    );
}

#[test]
fn client_onboarding_follows_the_checklist_with_gates_per_area() {
    let set = TemplateSet::builtin(&builtin_actions()).unwrap();
    let onboarding = set.latest("client-onboarding").unwrap();
    assert_eq!(onboarding.id().to_string(), "client-onboarding@1");
    let stages: Vec<&str> = onboarding.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        stages,
        [
            "intake",
            "documentation",
            "access",
            "knowledge-transfer",
            "go-live"
        ]
    );
    assert!(onboarding.is_triggered_by("psa.opportunity.won", &json!({"payload": {}})));

    let policy = GatePolicy::new();
    let level = |id: &str| onboarding.step(id).unwrap().gate_level(&policy).unwrap();
    // Steps that change external systems wait for approval.
    for id in [
        "create-tenant",
        "link-psa-company",
        "rmm-organization",
        "rmm-location",
        "rmm-installer",
        "gdap-request",
        "admin-accounts",
        "docs-organization",
        "psa-company",
        "start-sla",
        "close-opportunity",
    ] {
        assert_eq!(level(id), GateLevel::L2, "{id}");
    }
    // Asking for documents, read-only checks and Gatehouse's own records run at once.
    for id in [
        "assign-owner",
        "doc-msa-sow",
        "doc-credentials",
        "runbooks",
        "verify-agents",
    ] {
        assert_eq!(level(id), GateLevel::L0, "{id}");
    }
    // Sign-offs are done by people.
    assert_eq!(level("documentation-complete"), GateLevel::L3);
    assert_eq!(level("handoff-meeting"), GateLevel::L3);
    assert_eq!(
        onboarding.step("gdap-request").unwrap().area,
        ProcessArea::ElevatedAccess
    );

    // The documentation items are requested in parallel, then signed off.
    let documentation = &onboarding.stages[1];
    let ready = documentation.ready_steps(&HashSet::new());
    assert_eq!(ready.len(), 8);
    assert!(
        ready
            .iter()
            .all(|s| s.action.as_str() == "checklist.request")
    );
}

#[test]
fn engine_bench_is_a_three_step_l0_chain() {
    let set = TemplateSet::builtin(&builtin_actions()).unwrap();
    let bench = set.get("engine-bench", 1).unwrap();
    let steps: Vec<&Step> = bench.steps().collect();
    assert_eq!(steps.len(), 3);
    for step in &steps {
        assert_eq!(step.action.as_str(), "sandbox.noop");
        assert_eq!(step.gate_level(&GatePolicy::new()).unwrap(), GateLevel::L0);
    }
    let stage = &bench.stages[0];
    let mut done = HashSet::new();
    for expected in ["one", "two", "three"] {
        let ready: Vec<&str> = stage
            .ready_steps(&done)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(ready, [expected]);
        done.insert(expected);
    }
    assert!(stage.is_complete(&done));
}

// ----- a valid template and its defaults --------------------------------------

#[test]
fn a_minimal_template_loads_with_every_default_resolved() {
    let template = load(&one_stage(
        "[[stage.step]]\nid = \"only\"\ntitle = \"Only\"\naction = \"sandbox.noop\"\n",
    ))
    .unwrap();
    assert_eq!(template.on_failure, OnFailure::Park);
    assert!(template.triggers.is_empty());
    assert_eq!(template.description, "");
    let step = template.step("only").unwrap();
    assert_eq!(step.area, ProcessArea::ClientOnboarding);
    assert_eq!(step.gate, None);
    assert_eq!(step.timeout, DEFAULT_TIMEOUT);
    assert_eq!(step.retry, RetryPolicy::default());
    assert_eq!(step.params, json!({}));
    assert_eq!(step.compensate, None);
    assert!(step.needs.is_empty());
}

#[test]
fn every_field_is_read() {
    let text = r#"
name = "full"
version = 7
title = "  Full  "
description = "All of it."
area = "joiner_access"
on_failure = "compensate"

[[trigger]]
event = "hris.person.joined"
when = { "payload.type" = "employee", payload.site = ["hq", "remote"], payload.count = 3 }

[[stage]]
id = "one"
title = "One"
description = "First."

  [[stage.step]]
  id = "a"
  title = "A"
  description = "Does a."
  action = "tenant.create"
  params = { slug = "{{ event.payload.slug }}", n = 0x10, f = 1.5, on = true, when = 1979-05-27T07:32:00Z, list = [1, "two"], nested = { k = "v" } }
  area = "tenant_provisioning"
  gate = "l3"
  timeout = "90s"
  retry = { max_attempts = 3, initial = "1s", max = "30s", multiplier = 3, jitter = 0.5 }
  compensate = { action = "tenant.delete", params = { id = "{{ steps.a.output.id }}" } }

  [[stage.step]]
  id = "b"
  title = "B"
  action = "sandbox.noop"
  needs = ["a"]
"#;
    let template = load(text).unwrap();
    assert_eq!(template.id().to_string(), "full@7");
    assert_eq!(template.title, "Full");
    assert_eq!(template.on_failure, OnFailure::Compensate);
    assert_eq!(template.stages[0].description, "First.");
    let a = template.step("a").unwrap();
    assert_eq!(a.description, "Does a.");
    assert_eq!(a.area, ProcessArea::TenantProvisioning);
    assert_eq!(a.gate, Some(GateLevel::L3));
    assert_eq!(a.timeout, Duration::from_secs(90));
    assert_eq!(a.retry.max_attempts, 3);
    assert_eq!(a.retry.initial, Duration::from_secs(1));
    assert_eq!(a.retry.max, Duration::from_secs(30));
    assert_eq!(a.retry.multiplier, 3.0);
    assert_eq!(a.retry.jitter, 0.5);
    assert_eq!(
        a.params,
        json!({"slug": "{{ event.payload.slug }}", "n": 16, "f": 1.5, "on": true,
               "when": "1979-05-27T07:32:00Z", "list": [1, "two"], "nested": {"k": "v"}})
    );
    let compensate = a.compensate.as_ref().unwrap();
    assert_eq!(compensate.action.as_str(), "tenant.delete");
    assert_eq!(compensate.params, json!({"id": "{{ steps.a.output.id }}"}));
    let b = template.step("b").unwrap();
    assert_eq!(b.area, ProcessArea::JoinerAccess);
    assert_eq!(b.needs, [StepId::parse("a").unwrap()]);
}

// ----- syntax and structure ---------------------------------------------------

#[test]
fn syntax_errors_carry_line_numbers() {
    let text = "name = \"x\"\nversion = 1\ntitle = \"unterminated\n";
    let errors = problems(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    check(&errors[0], 3, "", "invalid TOML");

    // One report per line, even when recovery finds echoes of it.
    let text = "a = 1\nb = \nc = [1,\n";
    let errors = problems(text);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines.first(), Some(&2), "{errors:#?}");
    let unique: BTreeSet<usize> = lines.iter().copied().collect();
    assert_eq!(unique.len(), lines.len());
    assert!(
        errors[0].to_string().starts_with("t.toml:2:"),
        "{}",
        errors[0]
    );
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let text = format!("{HEAD}title = \"again\"\n");
    only(&text, 5, "", "duplicate key");
}

#[test]
fn unknown_fields_are_errors_with_a_suggestion() {
    let text = one_stage(
        "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\ntiemout = \"5s\"\n",
    );
    only(
        &text,
        line_of(&text, "tiemout"),
        "stage[0].step[0].tiemout",
        "did you mean `timeout`?",
    );

    let text = format!(
        "{HEAD}colour = \"blue\"\n[[stage]]\nid = \"s\"\ntitle = \"S\"\n[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\nretry = {{ attempts = 3 }}\n"
    );
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    check(&errors[0], 5, "colour", "unknown field `colour`");
    check(
        &errors[1],
        line_of(&text, "attempts"),
        "stage[0].step[0].retry.attempts",
        "allowed here: max_attempts",
    );
}

#[test]
fn required_fields_are_reported_at_their_table() {
    let errors = problems("description = \"nothing else\"\n");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields.len(), 5, "{errors:#?}");
    for field in ["name", "version", "title", "area", "stage"] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    assert!(errors.iter().all(|e| e.line == 1));

    let text = one_stage("[[stage.step]]\nid = \"a\"\n");
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let header = line_of(&text, "[[stage.step]]");
    check(
        &errors[0],
        header,
        "stage[0].step[0].title",
        "required field `title` is missing",
    );
    check(
        &errors[1],
        header,
        "stage[0].step[0].action",
        "required field `action` is missing",
    );
}

#[test]
fn wrong_types_are_reported_at_the_value() {
    let text = r#"name = "t"
version = "1"
title = "T"
area = "client_onboarding"
[[stage]]
id = "s"
title = "S"
[[stage.step]]
id = "a"
title = "A"
action = "sandbox.noop"
params = "none"
timeout = 30
needs = "b"
"#;
    let errors = problems(text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    check(&errors[0], 2, "version", "must be an integer, not a string");
    check(&errors[1], 12, "stage[0].step[0].params", "must be a table");
    check(
        &errors[2],
        13,
        "stage[0].step[0].timeout",
        "duration in quotes",
    );
    check(
        &errors[3],
        14,
        "stage[0].step[0].needs",
        "must be a list of step ids",
    );
}

#[test]
fn a_template_needs_stages_and_each_stage_steps() {
    only(HEAD, 1, "stage", "at least one stage");

    let text = format!("{HEAD}[[stage]]\nid = \"empty\"\ntitle = \"Empty\"\n");
    only(&text, 5, "stage[0].step", "stage `empty` has no steps");

    only(
        &format!("{HEAD}stage = []\n"),
        1,
        "stage",
        "at least one stage",
    );
    let text = format!("{HEAD}[[stage]]\nid = \"s\"\ntitle = \"S\"\nstep = []\n");
    only(&text, 5, "stage[0].step", "stage `s` has no steps");

    let text = format!("{HEAD}[stage]\nid = \"single\"\ntitle = \"Single\"\n");
    only(&text, 5, "stage", "write `[[stage]]`");

    let text = format!("{HEAD}[[stage]]\nid = \"s\"\ntitle = \"S\"\n[stage.step]\nid = \"a\"\n");
    only(&text, 8, "stage[0].step", "write `[[stage.step]]`");
}

// ----- values -----------------------------------------------------------------

#[test]
fn names_versions_ids_and_titles_are_checked() {
    let text = r#"name = "Client_Onboarding"
version = 0
title = ""
area = "onboarding"
on_failure = "retry"
[[stage]]
id = "Intake"
title = "Intake"
[[stage.step]]
id = "2nd"
title = "Two"
action = "Tenant.Create"
"#;
    let errors = problems(text);
    assert_eq!(errors.len(), 8, "{errors:#?}");
    check(&errors[0], 1, "name", "may contain only lowercase letters");
    check(&errors[1], 2, "version", "whole number from 1");
    check(&errors[2], 3, "title", "must not be empty");
    check(
        &errors[3],
        4,
        "area",
        "`onboarding` is not one of client_onboarding",
    );
    check(&errors[4], 5, "on_failure", "not one of park, compensate");
    check(&errors[5], 7, "stage[0].id", "only lowercase letters");
    check(
        &errors[6],
        10,
        "stage[0].step[0].id",
        "must start with a letter",
    );
    check(
        &errors[7],
        12,
        "stage[0].step[0].action",
        "lowercase words joined by dots",
    );
}

#[test]
fn unknown_actions_and_compensations_are_reported() {
    let text = one_stage(
        r#"[[stage.step]]
id = "a"
title = "A"
action = "tenant.creat"
compensate = { action = "tenant.remove" }
"#,
    );
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    check(
        &errors[0],
        line_of(&text, "tenant.creat\""),
        "stage[0].step[0].action",
        "unknown action `tenant.creat`",
    );
    check(
        &errors[1],
        line_of(&text, "tenant.remove"),
        "stage[0].step[0].compensate.action",
        "unknown action `tenant.remove`",
    );

    let text = one_stage(
        "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\ncompensate = { params = {} }\n",
    );
    only(
        &text,
        line_of(&text, "compensate"),
        "stage[0].step[0].compensate.action",
        "required field `action`",
    );
}

#[test]
fn gates_below_the_area_floor_are_refused() {
    let step = |extra: &str| {
        one_stage(&format!(
            "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\n{extra}\n"
        ))
    };
    // The template's area (client onboarding) has floor L2.
    let text = step("gate = \"L1\"");
    only(
        &text,
        line_of(&text, "gate"),
        "stage[0].step[0].gate",
        "the area's floor is L2",
    );
    // A step's own area decides: tenant provisioning is human-only.
    let text = step("area = \"tenant_provisioning\"\ngate = \"L2\"");
    only(
        &text,
        line_of(&text, "gate"),
        "stage[0].step[0].gate",
        "raise the gate to L3",
    );
    // Joiner access may be lowered to its floor, L0; gates may be raised; case does not matter.
    for ok in [
        "area = \"joiner_access\"\ngate = \"L0\"",
        "gate = \"L3\"",
        "gate = \"l2\"",
    ] {
        load(&step(ok)).unwrap();
    }
    let text = step("gate = \"L5\"");
    only(
        &text,
        line_of(&text, "gate"),
        "stage[0].step[0].gate",
        "not one of L0, L1, L2, L3",
    );
    let text = step("area = \"onboarding\"");
    only(
        &text,
        line_of(&text, "area = \"onboarding"),
        "stage[0].step[0].area",
        "is not one of",
    );
}

#[test]
fn timeouts_are_checked() {
    let step = |timeout: &str| {
        one_stage(&format!(
            "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\ntimeout = \"{timeout}\"\n"
        ))
    };
    for (bad, fragment) in [
        ("30", "has no unit"),
        ("1.5s", "fractions"),
        ("5 minutes", "unknown unit"),
        ("0s", "more than 0s"),
        ("2d", "at most 1d"),
    ] {
        let text = step(bad);
        only(
            &text,
            line_of(&text, "timeout"),
            "stage[0].step[0].timeout",
            fragment,
        );
    }
    assert_eq!(
        load(&step("1d")).unwrap().stages[0].steps[0].timeout,
        MAX_TIMEOUT
    );
}

#[test]
fn timer_steps_wait_for_a_duration_or_a_timestamp() {
    let text = one_stage(
        r#"[[stage.step]]
id = "remind"
title = "Remind in two days"
wait = "2d"

[[stage.step]]
id = "end"
title = "Contract end"
wait_until = "{{ event.payload.contract_end }}"

[[stage.step]]
id = "fixed"
title = "New year"
wait_until = 2031-01-01T00:00:00Z

[[stage.step]]
id = "revoke"
title = "Revoke"
action = "graph.terminate_gdap"
needs = ["end", "remind"]
params = { at = "{{ steps.end.output.fired_at }}" }
"#,
    );
    let template = load(&text).unwrap();
    let steps = &template.stages[0].steps;
    assert_eq!(
        steps[0].wait,
        Some(Wait::For(Duration::from_secs(2 * 86_400)))
    );
    assert_eq!(
        steps[1].wait,
        Some(Wait::Until("{{ event.payload.contract_end }}".into()))
    );
    assert_eq!(
        steps[2].wait,
        Some(Wait::Until("2031-01-01T00:00:00Z".into()))
    );
    assert_eq!(steps[0].action.as_str(), TIMER_ACTION);
    assert_eq!(steps[3].wait, None);
    assert!(
        !template.actions().contains(TIMER_ACTION),
        "a timer runs no action"
    );
    // The pinned JSON reads back, and an acting step's JSON has no `wait`.
    let json = serde_json::to_value(&template).unwrap();
    assert_eq!(
        json["stages"][0]["steps"][0]["wait"],
        json!({ "for": "2d" })
    );
    assert!(json["stages"][0]["steps"][3].get("wait").is_none());
    assert_eq!(serde_json::from_value::<Template>(json).unwrap(), template);

    // The fire time: a duration from when the step is reached; a timestamp
    // rendered from the context; a clear reason otherwise.
    let reached = time::macros::datetime!(2030-01-01 12:00 UTC);
    let ctx = json!({ "event": { "payload": { "contract_end": "2030-03-31T17:00:00+02:00", "bad": "soon" } } });
    assert_eq!(
        steps[0].wait.as_ref().unwrap().fires_at(&ctx, reached),
        Ok(time::macros::datetime!(2030-01-03 12:00 UTC))
    );
    assert_eq!(
        steps[1].wait.as_ref().unwrap().fires_at(&ctx, reached),
        Ok(time::macros::datetime!(2030-03-31 15:00 UTC))
    );
    let bad = Wait::Until("{{ event.payload.bad }}".into()).fires_at(&ctx, reached);
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.contains("`soon` is not an RFC 3339 timestamp")),
        "{bad:?}"
    );
    let far = Wait::Until("9999-12-31T23:59:59-05:00".into()).fires_at(&ctx, reached);
    assert!(
        far.as_ref().is_err_and(|e| e.contains("out of range")),
        "{far:?}"
    );
}

#[test]
fn timer_steps_are_checked() {
    let step = |body: &str| {
        one_stage(&format!(
            "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\n{body}\n"
        ))
    };
    for (body, key, fragment) in [
        ("wait = \"0s\"", "wait", "more than 0s"),
        ("wait = \"2 days\"", "wait", "unknown unit"),
        ("wait = 3", "wait", "duration in quotes"),
        (
            "wait_until = \"tomorrow\"",
            "wait_until",
            "not an RFC 3339 timestamp",
        ),
        (
            "wait_until = 2031-01-01T00:00:00",
            "wait_until",
            "not an RFC 3339 timestamp",
        ),
        (
            "wait_until = \"{{ nope.x }}\"",
            "wait_until",
            "starts with one of",
        ),
        (
            "wait_until = 5",
            "wait_until",
            "must be an RFC 3339 timestamp",
        ),
    ] {
        let text = step(body);
        only(
            &text,
            line_of(&text, key),
            &format!("stage[0].step[0].{key}"),
            fragment,
        );
    }
    // Both, or a timer that also acts.
    let text = step("wait = \"1h\"\nwait_until = \"2031-01-01T00:00:00Z\"");
    only(
        &text,
        line_of(&text, "wait_until"),
        "stage[0].step[0].wait_until",
        "not both",
    );
    let text = step("wait = \"1h\"\naction = \"sandbox.noop\"\nretry = { max_attempts = 2 }");
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    check(
        &errors[0],
        line_of(&text, "action = "),
        "stage[0].step[0].action",
        "only waits, so it has no `action`",
    );
    check(
        &errors[1],
        line_of(&text, "retry"),
        "stage[0].step[0].retry",
        "has no `retry`",
    );
    // A step that neither acts nor waits.
    let text = step("");
    only(
        &text,
        line_of(&text, "[[stage.step]]"),
        "stage[0].step[0].action",
        "required field `action`",
    );
}

#[test]
fn retry_policies_are_checked() {
    let step = |retry: &str| {
        one_stage(&format!(
            "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\nretry = {retry}\n"
        ))
    };
    let field = "stage[0].step[0].retry";
    let text = step("{ max_attempts = 0 }");
    only(
        &text,
        line_of(&text, "retry"),
        &format!("{field}.max_attempts"),
        "at least 1",
    );
    let text = step("{ max_attempts = -1 }");
    only(
        &text,
        line_of(&text, "retry"),
        &format!("{field}.max_attempts"),
        "whole number",
    );
    let text = step("{ initial = \"10m\", max = \"1m\" }");
    only(
        &text,
        line_of(&text, "retry"),
        &format!("{field}.initial"),
        "must not be longer than `max`",
    );
    let text = step("{ multiplier = 0.5 }");
    only(
        &text,
        line_of(&text, "retry"),
        &format!("{field}.multiplier"),
        "at least 1.0",
    );
    let text = step("{ jitter = 2 }");
    only(
        &text,
        line_of(&text, "retry"),
        &format!("{field}.jitter"),
        "between 0.0 and 1.0",
    );
    let text = step("{ initial = \"soon\" }");
    only(
        &text,
        line_of(&text, "retry"),
        &format!("{field}.initial"),
        "not a duration",
    );
    let text = step("\"fast\"");
    only(&text, line_of(&text, "retry"), field, "must be a table");
    // Unset fields take the engine's defaults.
    let policy = load(&step("{ max_attempts = 9 }")).unwrap().stages[0].steps[0].retry;
    assert_eq!(
        policy,
        RetryPolicy {
            max_attempts: 9,
            ..RetryPolicy::default()
        }
    );
}

// ----- ids and the dependency graph ------------------------------------------

#[test]
fn stage_and_step_ids_are_unique() {
    let text = format!(
        r#"{HEAD}[[stage]]
id = "s"
title = "S"
[[stage.step]]
id = "a"
title = "A"
action = "sandbox.noop"
[[stage]]
id = "s"
title = "S again"
[[stage.step]]
id = "a"
title = "A again"
action = "sandbox.noop"
"#
    );
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    check(
        &errors[0],
        13,
        "stage[1].id",
        "stage id `s` is already used by stage[0]",
    );
    check(
        &errors[1],
        16,
        "stage[1].step[0].id",
        "already used by stage[0].step[0]; step ids must be unique in the whole template",
    );
}

#[test]
fn needs_must_name_an_earlier_step_of_the_same_stage() {
    let text = format!(
        r#"{HEAD}[[stage]]
id = "first"
title = "First"
[[stage.step]]
id = "early"
title = "Early"
action = "sandbox.noop"
[[stage]]
id = "second"
title = "Second"
[[stage.step]]
id = "build"
title = "Build"
action = "sandbox.noop"
[[stage.step]]
id = "check"
title = "Check"
action = "sandbox.noop"
needs = ["biuld", "early", "late", "check", "build", "build"]
[[stage]]
id = "third"
title = "Third"
[[stage.step]]
id = "late"
title = "Late"
action = "sandbox.noop"
"#
    );
    let line = 23;
    assert_eq!(line, line_of(&text, "needs"));
    let errors = problems(&text);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "stage[1].step[1].needs[0]",
            "stage[1].step[1].needs[1]",
            "stage[1].step[1].needs[2]",
            "stage[1].step[1].needs[3]",
            "stage[1].step[1].needs[5]",
        ]
    );
    check(
        &errors[0],
        line,
        fields[0],
        "no step `biuld` in this template; did you mean `build`?",
    );
    check(
        &errors[1],
        line,
        fields[1],
        "in stage `first` (stage[0]); `needs` can only name steps of the same stage: steps of earlier stages have always completed",
    );
    check(
        &errors[2],
        line,
        fields[2],
        "a later stage only starts after this one",
    );
    check(&errors[3], line, fields[3], "cannot need itself");
    check(&errors[4], line, fields[4], "`build` is listed twice");
    // Columns point at each entry.
    assert!(errors[0].column < errors[1].column && errors[1].column < errors[2].column);
}

#[test]
fn dependency_cycles_are_named() {
    let text = one_stage(
        r#"[[stage.step]]
id = "a"
title = "A"
action = "sandbox.noop"
needs = ["c"]
[[stage.step]]
id = "b"
title = "B"
action = "sandbox.noop"
needs = ["a"]
[[stage.step]]
id = "c"
title = "C"
action = "sandbox.noop"
needs = ["b"]
[[stage.step]]
id = "d"
title = "D"
action = "sandbox.noop"
needs = ["d2"]
[[stage.step]]
id = "d2"
title = "D2"
action = "sandbox.noop"
needs = ["d"]
"#,
    );
    let errors = problems(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    // The search starts at `a` and follows `needs`: a -> c -> b, and b's
    // entry closes the loop.
    check(
        &errors[0],
        line_of(&text, "needs = [\"a\"]"),
        "stage[0].step[1].needs[0]",
        "dependency cycle: a -> c -> b -> a",
    );
    check(
        &errors[1],
        line_of(&text, "needs = [\"d\"]"),
        "stage[0].step[4].needs[0]",
        "dependency cycle: d -> d2 -> d",
    );
}

// ----- expressions ----------------------------------------------------------------

#[test]
fn expressions_must_parse_and_start_with_a_known_root() {
    let step = |params: &str| {
        one_stage(&format!(
            "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\nparams = {params}\n"
        ))
    };
    let text = step("{ name = \"{{ event.payload.name\" }");
    only(
        &text,
        line_of(&text, "params"),
        "stage[0].step[0].params.name",
        "not closed",
    );
    let text = step("{ list = [\"ok\", \"{{ }}\"] }");
    only(
        &text,
        line_of(&text, "params"),
        "stage[0].step[0].params.list[1]",
        "empty expression",
    );
    let text = step("{ deep = { x = \"{{ payload.name }}\" } }");
    only(
        &text,
        line_of(&text, "params"),
        "stage[0].step[0].params.deep.x",
        "starts with one of event, instance, tenant, steps, not `payload`",
    );
    let text = step("{ bad = \"{{ event..x }}\" }");
    only(
        &text,
        line_of(&text, "params"),
        "stage[0].step[0].params.bad",
        "is not a path",
    );
    let text = step("{ n = nan }");
    only(
        &text,
        line_of(&text, "params"),
        "stage[0].step[0].params.n",
        "nan and inf",
    );
    load(&step(
        "{ a = \"{{ event.x }}\", b = \"{{ instance.id }}\", c = \"{{ tenant.slug }}\" }",
    ))
    .unwrap();
}

#[test]
fn step_outputs_must_be_guaranteed_to_exist() {
    let text = format!(
        r#"{HEAD}[[stage]]
id = "first"
title = "First"
[[stage.step]]
id = "create-tenant"
title = "Create"
action = "tenant.create"
params = {{ own = "{{{{ steps.create-tenant.output.id }}}}" }}
compensate = {{ action = "tenant.delete", params = {{ id = "{{{{ steps.create-tenant.output.id }}}}" }} }}
[[stage.step]]
id = "root"
title = "Root"
action = "sandbox.noop"
[[stage.step]]
id = "middle"
title = "Middle"
action = "sandbox.noop"
needs = ["root"]
[[stage.step]]
id = "leaf"
title = "Leaf"
action = "sandbox.noop"
needs = ["middle"]
params = {{ transitive = "{{{{ steps.root.output }}}}", sibling = "{{{{ steps.create-tenant.output.id }}}}", whole = "{{{{ steps }}}}", field = "{{{{ steps.root.result }}}}", typo = "{{{{ steps.mdidle.output }}}}", later = "x {{{{ steps.final.output.id }}}}" }}
[[stage]]
id = "second"
title = "Second"
[[stage.step]]
id = "final"
title = "Final"
action = "sandbox.noop"
params = {{ earlier = "{{{{ steps.create-tenant.output.id }}}}", leaf = "{{{{ steps.leaf.output }}}}" }}
"#
    );
    let errors = problems(&text);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "stage[0].step[0].params.own",
            "stage[0].step[3].params.sibling",
            "stage[0].step[3].params.whole",
            "stage[0].step[3].params.field",
            "stage[0].step[3].params.typo",
            "stage[0].step[3].params.later",
        ],
        "{errors:#?}"
    );
    let own = line_of(&text, "own =");
    let leaf = line_of(&text, "transitive =");
    check(
        &errors[0],
        own,
        fields[0],
        "cannot use its own output (its `compensate` parameters can)",
    );
    check(
        &errors[1],
        leaf,
        fields[1],
        "step `create-tenant` is not guaranteed to have completed before this step; add it to `needs`",
    );
    check(&errors[2], leaf, fields[2], "name a step");
    check(
        &errors[3],
        leaf,
        fields[3],
        "holds only `output`; write `steps.root.output…`",
    );
    check(
        &errors[4],
        leaf,
        fields[4],
        "no step `mdidle` in this template; did you mean `middle`?",
    );
    check(
        &errors[5],
        leaf,
        fields[5],
        "step `final` is in a later stage",
    );
    // Columns point into the line, in file order.
    assert!(errors[1..].windows(2).all(|w| w[0].column < w[1].column));
}

// ----- triggers -------------------------------------------------------------------

#[test]
fn triggers_match_event_type_and_conditions() {
    let text = format!(
        r#"{HEAD}[[trigger]]
event = "psa.opportunity.won"
when = {{ "payload.stage" = "Won", payload.board = ["Sales", "Projects"], payload.amount = 100 }}
[[trigger]]
event = "client.created"
[[stage]]
id = "s"
title = "S"
[[stage.step]]
id = "a"
title = "A"
action = "sandbox.noop"
"#
    );
    let template = load(&text).unwrap();
    let won = json!({"payload": {"stage": "Won", "board": "Projects", "amount": 100}});
    assert!(template.is_triggered_by("psa.opportunity.won", &won));
    assert!(template.is_triggered_by("client.created", &json!({})));
    assert!(!template.is_triggered_by("psa.opportunity.lost", &won));
    let other_board = json!({"payload": {"stage": "Won", "board": "Service", "amount": 100}});
    assert!(!template.is_triggered_by("psa.opportunity.won", &other_board));
    let missing = json!({"payload": {"stage": "Won", "board": "Sales"}});
    assert!(!template.is_triggered_by("psa.opportunity.won", &missing));
}

#[test]
fn trigger_problems_are_located() {
    let text = format!(
        r#"{HEAD}[[trigger]]
event = "Opportunity Won"
[[trigger]]
event = "psa.opportunity.won"
when = {{ "payload stage" = "Won", payload.tags = [], payload.x = [{{ a = 1 }}] }}
[[trigger]]
when = "always"
[[stage]]
id = "s"
title = "S"
[[stage.step]]
id = "a"
title = "A"
action = "sandbox.noop"
"#
    );
    let errors = problems(&text);
    assert_eq!(errors.len(), 6, "{errors:#?}");
    check(
        &errors[0],
        6,
        "trigger[0].event",
        "lowercase words joined by dots",
    );
    let when = 9;
    let mut rest: Vec<&TemplateError> = errors[1..4].iter().collect();
    rest.sort_by_key(|e| e.column);
    check(rest[0], when, "trigger[1].when", "is not a path");
    check(
        rest[1],
        when,
        "trigger[1].when",
        "an empty list matches nothing",
    );
    check(rest[2], when, "trigger[1].when", "not a table");
    check(&errors[4], 10, "trigger[2].event", "required field `event`");
    check(
        &errors[5],
        11,
        "trigger[2].when",
        "must be a table of conditions",
    );
}

// ----- many problems at once ------------------------------------------------------

#[test]
fn every_problem_is_reported_in_line_order() {
    let text = r#"name = "t"
version = 1
title = "T"
area = "client_onboarding"
[[stage]]
id = "s"
title = "S"
[[stage.step]]
id = "a"
title = "A"
action = "nope.nothing"
timeout = "forever"
[[stage.step]]
id = "b"
title = "B"
action = "sandbox.noop"
needs = ["zzz"]
gate = "L0"
"#;
    let errors = load(text).unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [11, 12, 17, 18], "{errors}");
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), 4);
    assert!(
        shown.starts_with("t.toml:11:10: stage[0].step[0].action: unknown action `nope.nothing`"),
        "{shown}"
    );
}

// ----- scheduling and pinning -------------------------------------------------

#[test]
fn ready_steps_walks_a_diamond() {
    let template = load(&one_stage(
        r#"[[stage.step]]
id = "top"
title = "Top"
action = "sandbox.noop"
[[stage.step]]
id = "left"
title = "Left"
action = "sandbox.noop"
needs = ["top"]
[[stage.step]]
id = "right"
title = "Right"
action = "sandbox.noop"
needs = ["top"]
[[stage.step]]
id = "bottom"
title = "Bottom"
action = "sandbox.noop"
needs = ["left", "right"]
"#,
    ))
    .unwrap();
    let stage = &template.stages[0];
    let ids = |done: &HashSet<&str>| -> Vec<String> {
        stage
            .ready_steps(done)
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    };
    let mut done = HashSet::new();
    assert_eq!(ids(&done), ["top"]);
    done.insert("top");
    assert_eq!(ids(&done), ["left", "right"]);
    done.insert("right");
    assert_eq!(ids(&done), ["left"]);
    assert!(!stage.is_complete(&done));
    done.insert("left");
    assert_eq!(ids(&done), ["bottom"]);
    done.insert("bottom");
    assert!(ids(&done).is_empty());
    assert!(stage.is_complete(&done));
}

#[test]
fn templates_pin_as_json_and_round_trip() {
    let set = TemplateSet::builtin(&builtin_actions()).unwrap();
    let onboarding = set.latest("client-onboarding").unwrap();
    let pinned = serde_json::to_value(onboarding.as_ref()).unwrap();
    assert_eq!(pinned["name"], "client-onboarding");
    assert_eq!(pinned["version"], 1);
    let step = &pinned["stages"][0]["steps"][0];
    assert_eq!(step["id"], "create-tenant");
    assert_eq!(step["area"], "client_onboarding");
    assert_eq!(step["gate"], serde_json::Value::Null);
    assert_eq!(step["timeout"], "30s");
    assert_eq!(step["retry"]["initial"], "500ms");
    let back: Template = serde_json::from_value(pinned).unwrap();
    assert_eq!(&back, onboarding.as_ref());
}

#[test]
fn rendering_uses_the_instance_context() {
    let set = TemplateSet::builtin(&builtin_actions()).unwrap();
    let onboarding = set.latest("client-onboarding").unwrap();
    let ctx = json!({
        "event": {"payload": {"psa": "connectwise", "company": {"id": 250, "name": "Northwind", "slug": "northwind", "region": "eu"}}},
        "instance": {}, "tenant": {},
        "steps": {"create-tenant": {"output": {"id": "ten_1"}}}
    });
    let create = onboarding.step("create-tenant").unwrap();
    assert_eq!(
        create.render_params(&ctx).unwrap(),
        json!({"slug": "northwind", "display_name": "Northwind", "region": "eu"})
    );
    let undo = create
        .compensate
        .as_ref()
        .unwrap()
        .render_params(&ctx)
        .unwrap();
    assert_eq!(undo, json!({"tenant": "ten_1"}));
    let link = onboarding
        .step("link-psa-company")
        .unwrap()
        .render_params(&ctx)
        .unwrap();
    assert_eq!(
        link["company_id"], 250,
        "a whole expression keeps the number"
    );
    let err = onboarding
        .step("assign-owner")
        .unwrap()
        .render_params(&ctx)
        .unwrap_err();
    assert!(
        err.to_string().contains("event.payload.owner.email"),
        "{err}"
    );
}

// ----- the template set ------------------------------------------------------------

fn builtin_text(name: &str) -> &'static str {
    match name {
        "client-onboarding" => include_str!("../../templates/client-onboarding.toml"),
        _ => include_str!("../../templates/engine-bench.toml"),
    }
}

fn data_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    for (name, text) in files {
        std::fs::write(templates.join(name), text).unwrap();
    }
    dir
}

#[test]
fn custom_templates_load_from_the_data_dir_next_to_the_builtins() {
    let v2 = builtin_text("client-onboarding").replace("version = 1\n", "version = 2\n");
    let mine = one_stage("[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\n")
        .replace("name = \"test\"", "name = \"quarterly-review\"");
    let dir = data_dir(&[
        ("client-onboarding-v2.toml", &v2),
        ("quarterly-review.toml", &mine),
        ("notes.txt", "not a template"),
        // An unchanged copy of a built-in is accepted and changes nothing.
        ("engine-bench.toml", builtin_text("engine-bench")),
    ]);
    let set = TemplateSet::load(dir.path(), &builtin_actions()).unwrap();
    assert_eq!(set.len(), 8);
    assert_eq!(set.latest("client-onboarding").unwrap().version, 2);
    assert_eq!(set.get("client-onboarding", 1).unwrap().version, 1);
    assert_eq!(
        set.origin("client-onboarding", 2),
        Some(&TemplateOrigin::Custom(
            dir.path().join("templates/client-onboarding-v2.toml")
        ))
    );
    assert_eq!(
        set.origin("engine-bench", 1),
        Some(&TemplateOrigin::BuiltIn("engine-bench.toml"))
    );
    assert!(set.latest("quarterly-review").is_some());
    assert!(set.get("quarterly-review", 2).is_none());
    assert!(set.latest("nothing").is_none());
    // Only the latest version starts new instances.
    let started = set.triggered_by("psa.opportunity.won", &json!({"payload": {}}));
    assert_eq!(
        started
            .iter()
            .map(|t| t.id().to_string())
            .collect::<Vec<_>>(),
        ["client-onboarding@2"]
    );

    // No templates directory: only the built-ins.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        TemplateSet::load(empty.path(), &builtin_actions())
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn a_custom_file_cannot_change_a_builtin_version() {
    let changed = builtin_text("engine-bench").replace(
        "timeout = \"5s\"\n  needs = [\"one\"]",
        "timeout = \"6s\"\n  needs = [\"one\"]",
    );
    assert_ne!(changed, builtin_text("engine-bench"));
    let dir = data_dir(&[("bench.toml", &changed)]);
    let errors = TemplateSet::load(dir.path(), &builtin_actions())
        .unwrap_err()
        .into_vec();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let path = dir
        .path()
        .join("templates/bench.toml")
        .display()
        .to_string();
    assert_eq!(errors[0].source, path);
    assert_eq!(
        (errors[0].line, errors[0].field.as_str()),
        (line_of(&changed, "version ="), "version")
    );
    assert!(
        errors[0].message.contains(
            "`engine-bench@1` is already defined, differently, by builtin/engine-bench.toml"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn two_custom_files_cannot_define_one_version_differently() {
    let a = one_stage("[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\n");
    let b = a.replace("title = \"A\"", "title = \"B\"");
    let dir = data_dir(&[("a.toml", &a), ("b.toml", &b)]);
    let mut set = TemplateSet::builtin(&builtin_actions()).unwrap();
    let errors = set
        .add_dir(&dir.path().join("templates"), &builtin_actions())
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    let error = &errors.as_slice()[0];
    assert!(error.source.ends_with("b.toml"), "{error}");
    assert!(error.message.contains("a.toml"), "{error}");
    // All or nothing: a.toml was not added either.
    assert!(set.latest("test").is_none());
    assert_eq!(set.len(), 6);
}

#[test]
fn inserting_the_same_version_twice_needs_the_same_content() {
    let text = one_stage("[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"sandbox.noop\"\n");
    let template = load(&text).unwrap();
    let origin = TemplateOrigin::Custom("api".into());
    let mut set = TemplateSet::new();
    assert!(set.is_empty());
    assert_eq!(set.insert(template.clone(), origin.clone()), Ok(true));
    assert_eq!(set.insert(template.clone(), origin.clone()), Ok(false));
    let mut changed = template;
    changed.title = "Changed".into();
    let error = set.insert(changed, origin).unwrap_err();
    assert_eq!((error.line, error.field.as_str()), (0, "version"));
    assert!(
        error
            .message
            .contains("`test@1` is already defined, differently, by api"),
        "{error}"
    );
    assert_eq!(set.latest("test").unwrap().title, "Test");
}

#[test]
fn every_broken_custom_file_is_reported_with_its_path() {
    let dir = data_dir(&[
        ("one.toml", "name = \"one\"\nversion = 1\n"),
        ("two.toml", "this is not toml\n"),
    ]);
    let errors = TemplateSet::load(dir.path(), &builtin_actions()).unwrap_err();
    let sources: BTreeSet<String> = errors.iter().map(|e| e.source.clone()).collect();
    let expected: BTreeSet<String> = ["one.toml", "two.toml"]
        .iter()
        .map(|f| dir.path().join("templates").join(f).display().to_string())
        .collect();
    assert_eq!(sources, expected);
    let two = errors
        .iter()
        .find(|e| e.source.ends_with("two.toml"))
        .unwrap();
    assert_eq!(two.line, 1);
}

// ----- the reference page -------------------------------------------------------

const REFERENCE: &str = include_str!("../../../../docs/workflow-templates.md");

/// The fenced block that follows `<!-- example: NAME -->` in the reference page.
fn doc_example(name: &str) -> String {
    let marker = format!("<!-- example: {name} -->");
    let after = REFERENCE.split_once(&marker).unwrap().1;
    let fence = after.split_once("```").unwrap().1;
    let body = fence.split_once('\n').unwrap().1;
    body.split_once("```").unwrap().0.to_owned()
}

#[test]
fn the_reference_pages_complete_example_loads() {
    let template =
        Template::from_toml("example.toml", &doc_example("complete"), &builtin_actions())
            .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(template.id().to_string(), "small-client-onboarding@1");
    let provisioning = &template.stages[1];
    let ready: Vec<&str> = provisioning
        .ready_steps(&HashSet::new())
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(ready, ["rmm-organization", "docs-organization"]);
    let handoff = template.step("handoff").unwrap();
    assert_eq!(
        handoff.gate_level(&GatePolicy::new()).unwrap(),
        GateLevel::L3
    );
    let won = json!({"payload": {"board": "Small business", "seats": 10}});
    assert!(template.is_triggered_by("psa.opportunity.won", &won));
}

#[test]
fn the_reference_pages_http_post_example_loads() {
    let template = Template::from_toml(
        "example.toml",
        &doc_example("http-post"),
        &builtin_actions(),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let step = template.step("open-ticket").unwrap();
    assert_eq!(step.action.as_str(), crate::http_action::NAME);
    assert_eq!(step.gate_level(&GatePolicy::new()).unwrap(), GateLevel::L0);
}

#[test]
fn the_reference_pages_error_example_is_what_loading_reports() {
    let errors = Template::from_toml(
        "my-onboarding.toml",
        &doc_example("broken"),
        &builtin_actions(),
    )
    .unwrap_err();
    assert_eq!(format!("{errors}\n"), doc_example("broken-output"));
}

// ----- robustness -------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_never_panics_the_loader(text in "\\PC*") {
        let _ = load(&text);
    }

    #[test]
    fn mangled_templates_never_panic_the_loader(
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..40, "[\\[\\]{}=\",.a-z0-9\n #-]{0,6}"), 1..4)
    ) {
        let mut text = builtin_text("client-onboarding").to_owned();
        for (at, len, insert) in cuts {
            let mut start = at.index(text.len().max(1));
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, &insert);
        }
        if let Err(errors) = load(&text) {
            for error in errors {
                prop_assert!(error.line >= 1 && error.column >= 1, "{error}");
            }
        }
    }
}

// ----- reviewers of L1 steps ---------------------------------------------------

#[test]
fn a_reviewer_is_an_address_or_expressions_that_render_to_one() {
    let step = |reviewer: &str| {
        one_stage(&format!(
            "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"kb.publish\"\nreviewer = {reviewer}\n"
        ))
    };
    let fixed = load(&step("\"lead@msp.example\"")).unwrap();
    let a = fixed.step("a").unwrap();
    assert_eq!(a.reviewer.as_deref(), Some("lead@msp.example"));
    assert_eq!(
        a.render_reviewer(&json!({})),
        Some(Ok(json!("lead@msp.example")))
    );
    // Its own output may be used: the reviewer is rendered after the step ran.
    let own = load(&step("\"{{ steps.a.output.owner }}\"")).unwrap();
    let ctx = json!({"steps": {"a": {"output": {"owner": "o@x.example"}}}});
    assert_eq!(
        own.step("a").unwrap().render_reviewer(&ctx),
        Some(Ok(json!("o@x.example")))
    );
    let text = step("\"not an address\"");
    only(
        &text,
        line_of(&text, "reviewer ="),
        "stage[0].step[0].reviewer",
        "not an e-mail address",
    );
    let text = step("\"{{ nowhere.x }}\"");
    only(
        &text,
        line_of(&text, "reviewer ="),
        "stage[0].step[0].reviewer",
        "an expression starts with one of",
    );
    let text = step("\"{{ steps.ghost.output.x }}\"");
    only(
        &text,
        line_of(&text, "reviewer ="),
        "stage[0].step[0].reviewer",
        "no step `ghost`",
    );
    let text = step("42");
    only(
        &text,
        line_of(&text, "reviewer ="),
        "stage[0].step[0].reviewer",
        "must be a string",
    );

    // Pinned JSON without the field (instances started before it existed) still reads.
    let mut pinned = serde_json::to_value(&fixed).unwrap();
    assert_eq!(
        pinned["stages"][0]["steps"][0]["reviewer"],
        "lead@msp.example"
    );
    pinned["stages"][0]["steps"][0]
        .as_object_mut()
        .unwrap()
        .remove("reviewer");
    let old: Template = serde_json::from_value(pinned).unwrap();
    assert_eq!(old.step("a").unwrap().reviewer, None);
    let plain = load(&one_stage(
        "[[stage.step]]\nid = \"a\"\ntitle = \"A\"\naction = \"kb.publish\"\n",
    ))
    .unwrap();
    assert!(
        serde_json::to_value(&plain).unwrap()["stages"][0]["steps"][0]
            .get("reviewer")
            .is_none()
    );
}
