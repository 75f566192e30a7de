//! Timer steps (`wait = "2d"`, `wait_until = "…"`): a step that waits
//! instead of acting.
//!
//! A timer needs no table and no step state of its own. The first wave that
//! reaches the step fixes the fire time and journals it as the step's
//! `next_attempt_at`, in state `retrying` with no attempts made, with a
//! `timer.set` entry in the history. The instance's `next_run_at` is the
//! earliest of its steps' due times, so the due index that drives retries
//! finds the timer after any restart, on any node. The wave that finds it
//! due marks the step succeeded (output `{fired_at, scheduled_for}`) and
//! writes `timer.fired` in the same commit as the rest of the wave, so a
//! timer fires once: a wave whose commit is lost fires it again, having
//! done nothing outside the journal.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Wave;
use crate::template::{Step, Wait};
use gatehouse_core::workflow::StepState;

fn text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

impl Wave {
    /// Moves a ready timer step on: sets it when first reached (firing at
    /// once if its time has passed), fires it when due. The caller has
    /// checked that the step is pending or retrying and due.
    pub(super) fn timer(&mut self, step: &Step, wait: &Wait) {
        let id = step.id.as_str().to_owned();
        let now = self.now;
        let scheduled = match self.state_of(&id) {
            StepState::Retrying => self.steps.get(&id).and_then(|run| run.next_attempt_at),
            _ => None,
        };
        let fires_at = match scheduled {
            Some(at) => at,
            None => match wait.fires_at(&self.instance.context, now) {
                Ok(at) => {
                    self.note("timer.set", Some(&id), json!({ "fires_at": text(at) }));
                    at
                }
                Err(reason) => {
                    self.fail_step(&id, &reason);
                    return;
                }
            },
        };
        if fires_at > now {
            if let Some(run) = self.step_mut(&id) {
                run.state = StepState::Retrying;
                run.attempts = 0;
                run.error = None;
                run.next_attempt_at = Some(fires_at);
            }
            return;
        }
        let output = json!({ "fired_at": text(now), "scheduled_for": text(fires_at) });
        if let Some(run) = self.step_mut(&id) {
            run.state = StepState::Succeeded;
            run.output = Some(output.clone());
            run.error = None;
            run.next_attempt_at = None;
        }
        if let Some(steps) = self
            .instance
            .context
            .get_mut("steps")
            .and_then(Value::as_object_mut)
        {
            steps.insert(id.clone(), json!({ "output": output }));
        }
        self.note("timer.fired", Some(&id), output);
    }
}
