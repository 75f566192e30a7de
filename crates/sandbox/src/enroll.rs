//! What the sandbox RMMs do after an agent installer exists: devices run
//! it and start reporting.
//!
//! A real client's technician downloads the installer and runs it on each
//! machine; minutes or days later the agents report. Tests enroll devices
//! directly (`NinjaOneEmulator::enroll_devices`,
//! `DattoRmmEmulator::enroll_devices`); the demo and the onboarding
//! benchmark turn on [`AutoEnroll`], so that an onboarding's "agents report"
//! check can pass without a person pretending to be the client.

use std::time::Duration;

/// Knob of the RMM emulators: when an organization's installer link is
/// made (NinjaOne) or a site is created (Datto RMM, whose sites carry
/// their agent link from the start), `devices` devices enroll there after
/// `delay` (`Duration::ZERO`: at once), once per location or site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoEnroll {
    /// How many devices check in.
    pub devices: usize,
    /// How long after the link they do.
    pub delay: Duration,
}

/// The name of the `n`th device of an organization called `organization`:
/// its letters and digits, lower case, then `-pc{n}` (`tailspintoys-pc1`).
pub(crate) fn device_name(organization: &str, n: usize) -> String {
    let mut stem: String = organization
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    stem.truncate(40);
    if stem.is_empty() {
        stem.push_str("device");
    }
    format!("{stem}-pc{n}")
}

/// Runs `enroll` after `delay` (at once when zero), on the runtime the
/// emulator serves on.
pub(crate) fn after(delay: Duration, enroll: impl FnOnce() + Send + 'static) {
    if delay.is_zero() {
        enroll();
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        enroll();
    });
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn devices_are_named_after_their_organization() {
        assert_eq!(device_name("Tailspin Toys", 1), "tailspintoys-pc1");
        assert_eq!(device_name("!!", 3), "device-pc3");
    }
}
