//! Errors of loading a spec: unreadable, not JSON, or invalid (every problem at once).

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a spec, located by its JSON path (`$[0].properties.targetPort`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: a JSON path from the document root (`$`).
    pub path: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into(), hint: None }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON; `line` and `column` are 1-based, as editors count.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// The JSON was read but breaks one or more rules; all of them are listed.
    #[error("{} problem{} in the spec", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid { problems: Vec<Problem> },
}

impl LoadError {
    /// The problems of an invalid spec; a syntax error is reported as one problem at `$`.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Unreadable { .. } => Vec::new(),
            LoadError::Syntax { line, column, message } => {
                vec![Problem::new("$", format!("invalid JSON at line {line}, column {column}: {message}"))]
            }
            LoadError::Invalid { problems } => problems.clone(),
        }
    }
}
