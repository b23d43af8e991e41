use std::path::PathBuf;

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type or format.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending text (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong, as the parser says it.
        message: String,
    },
    /// The file parsed but a field breaks a rule (range, uniqueness, reference).
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the field (0 when the field is absent from the file).
        line: usize,
        /// Dotted path of the field, e.g. `jobs[1].name`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// The field path for validation errors, if any (used by tests and `status`).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
