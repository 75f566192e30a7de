//! Every template Gatehouse knows: the built-in ones and the MSP's own.
//!
//! Built-in templates are compiled into the binary, so a fresh install can
//! onboard a client with nothing on disk. An MSP customises one by copying
//! its file into `<data_dir>/templates/`, giving it a higher `version` (or a
//! new `name`) and editing it; every version stays loaded, because instances
//! that started on an older one keep running it. A custom file may repeat a
//! built-in (name, version) only with the same content; anything else would
//! make `client-onboarding@1` mean different things on different servers.
//!
//! Loading is all or nothing: a server with a broken template file refuses to
//! start and lists every problem in every file, rather than quietly running
//! without the workflow someone expects.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::ActionCatalog;
use super::error::{TemplateError, TemplateErrors};
use super::load;
use super::model::Template;

/// The built-in templates: file name and text, from `crates/engine/templates/`.
const BUILTIN: [(&str, &str); 6] = [
    (
        "client-onboarding.toml",
        include_str!("../../templates/client-onboarding.toml"),
    ),
    (
        "engine-bench.toml",
        include_str!("../../templates/engine-bench.toml"),
    ),
    (
        "identity-elevation.toml",
        include_str!("../../templates/identity-elevation.toml"),
    ),
    (
        "identity-joiner.toml",
        include_str!("../../templates/identity-joiner.toml"),
    ),
    (
        "identity-revocation.toml",
        include_str!("../../templates/identity-revocation.toml"),
    ),
    (
        "identity-sensitive.toml",
        include_str!("../../templates/identity-sensitive.toml"),
    ),
];

/// Where a loaded template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// Shipped with Gatehouse; the file name under `crates/engine/templates/`.
    BuiltIn(&'static str),
    /// A file in the data directory.
    Custom(PathBuf),
}

impl fmt::Display for TemplateOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltIn(file) => write!(f, "builtin/{file}"),
            Self::Custom(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    template: Arc<Template>,
    origin: TemplateOrigin,
}

/// The loaded templates, every version of each, by name.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    by_name: BTreeMap<String, BTreeMap<u32, Entry>>,
}

impl TemplateSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in templates, validated against `actions`.
    pub fn builtin(actions: &dyn ActionCatalog) -> Result<Self, TemplateErrors> {
        let mut set = Self::new();
        let mut errors = Vec::new();
        for (file, text) in BUILTIN {
            let origin = TemplateOrigin::BuiltIn(file);
            match Template::from_toml(&origin.to_string(), text, actions) {
                Ok(template) => {
                    if let Err(error) = set.insert_from(template, origin, Some(text)) {
                        errors.push(error);
                    }
                }
                Err(found) => errors.extend(found),
            }
        }
        TemplateErrors::from_vec(errors).map_or(Ok(set), Err)
    }

    /// The built-in templates plus the custom ones in
    /// `<data_dir>/templates/*.toml` (a missing directory means none).
    pub fn load(data_dir: &Path, actions: &dyn ActionCatalog) -> Result<Self, TemplateErrors> {
        let mut set = Self::builtin(actions)?;
        set.add_dir(&data_dir.join("templates"), actions)?;
        Ok(set)
    }

    /// Adds every `*.toml` file of `dir` (not its subdirectories), in file
    /// name order, and returns how many templates were added. All or
    /// nothing: on any error the set is unchanged and every problem of every
    /// file is returned. A missing directory adds nothing.
    pub fn add_dir(
        &mut self,
        dir: &Path,
        actions: &dyn ActionCatalog,
    ) -> Result<usize, TemplateErrors> {
        let source = dir.display().to_string();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => {
                return Err(TemplateError::whole_file(
                    source,
                    format!("cannot list the template directory: {error}"),
                )
                .into());
            }
        };
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                        paths.push(path);
                    }
                }
                Err(error) => errors.push(TemplateError::whole_file(
                    source.clone(),
                    format!("cannot list the template directory: {error}"),
                )),
            }
        }
        paths.sort();

        let mut staged = self.clone();
        let mut added = 0;
        for path in paths {
            let source = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    errors.push(TemplateError::whole_file(
                        source,
                        format!("cannot read: {error}"),
                    ));
                    continue;
                }
            };
            match Template::from_toml(&source, &text, actions) {
                Ok(template) => {
                    match staged.insert_from(template, TemplateOrigin::Custom(path), Some(&text)) {
                        Ok(true) => added += 1,
                        Ok(false) => {}
                        Err(error) => errors.push(error),
                    }
                }
                Err(found) => errors.extend(found),
            }
        }
        if let Some(errors) = TemplateErrors::from_vec(errors) {
            return Err(errors);
        }
        *self = staged;
        Ok(added)
    }

    /// Adds one template. Returns `Ok(false)` when the same (name, version)
    /// with the same content is already present (nothing changes), and an
    /// error when it is present with different content.
    pub fn insert(
        &mut self,
        template: Template,
        origin: TemplateOrigin,
    ) -> Result<bool, TemplateError> {
        self.insert_from(template, origin, None)
    }

    /// [`TemplateSet::insert`] for a template read from `text`, so that a
    /// clash can point at the file's `version` line.
    fn insert_from(
        &mut self,
        template: Template,
        origin: TemplateOrigin,
        text: Option<&str>,
    ) -> Result<bool, TemplateError> {
        let versions = self
            .by_name
            .entry(template.name.as_str().to_owned())
            .or_default();
        if let Some(existing) = versions.get(&template.version) {
            if *existing.template == template {
                return Ok(false);
            }
            let (line, column) = text.map_or((0, 0), |text| load::key_position(text, "version"));
            let advice = match existing.origin {
                TemplateOrigin::BuiltIn(_) => {
                    "it is built into Gatehouse and cannot be changed; give your copy a higher `version` or a new `name`"
                }
                TemplateOrigin::Custom(_) => {
                    "each (name, version) must be defined once; give one of them a higher `version`"
                }
            };
            return Err(TemplateError {
                source: origin.to_string(),
                line,
                column,
                field: "version".to_owned(),
                message: format!(
                    "`{}` is already defined, differently, by {}: {advice}",
                    template.id(),
                    existing.origin
                ),
            });
        }
        versions.insert(
            template.version,
            Entry {
                template: Arc::new(template),
                origin,
            },
        );
        Ok(true)
    }

    /// The highest version of the template called `name`: what new
    /// instances start.
    pub fn latest(&self, name: &str) -> Option<&Arc<Template>> {
        self.by_name
            .get(name)?
            .last_key_value()
            .map(|(_, entry)| &entry.template)
    }

    /// A specific version: what a running instance pinned.
    pub fn get(&self, name: &str, version: u32) -> Option<&Arc<Template>> {
        self.by_name
            .get(name)?
            .get(&version)
            .map(|entry| &entry.template)
    }

    /// Where a specific version came from.
    pub fn origin(&self, name: &str, version: u32) -> Option<&TemplateOrigin> {
        self.by_name
            .get(name)?
            .get(&version)
            .map(|entry| &entry.origin)
    }

    /// Every loaded template, by name and then version.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Template>> {
        self.by_name
            .values()
            .flat_map(|versions| versions.values().map(|entry| &entry.template))
    }

    /// The latest version of every template, by name.
    pub fn latest_versions(&self) -> impl Iterator<Item = &Arc<Template>> {
        self.by_name
            .values()
            .filter_map(|versions| versions.last_key_value().map(|(_, entry)| &entry.template))
    }

    /// The latest versions whose triggers fire for this event; older
    /// versions never start new instances.
    pub fn triggered_by(&self, event_type: &str, event: &Value) -> Vec<&Arc<Template>> {
        self.latest_versions()
            .filter(|template| template.is_triggered_by(event_type, event))
            .collect()
    }

    /// How many (name, version) pairs are loaded.
    pub fn len(&self) -> usize {
        self.by_name.values().map(BTreeMap::len).sum()
    }

    /// Whether no template is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
