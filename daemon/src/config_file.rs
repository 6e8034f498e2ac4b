//! A TOML config file: read, parsed into the caller's typed struct, and checked, with one error
//! type whose every message starts with the file and names the key (or the parser's line and
//! column) at fault.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Why a config cannot be used. Displays as `file: key: problem`, or `file: <parser message>`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The config file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type; the parser's message carries
    /// line, column and key.
    #[error("{file}: {message}")]
    Syntax {
        /// The config file.
        file: String,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// A well-formed value that is not acceptable.
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The config file.
        file: String,
        /// Dotted path of the key.
        key: String,
        /// What is wrong, naming the value.
        problem: String,
    },
}

impl ConfigError {
    /// A well-formed value of `file` that is not acceptable.
    pub fn invalid(file: &str, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Parses config text into `T`; `file` names it in errors.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Reads the file at `path`: its name for errors and its text.
pub fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(source) => Err(ConfigError::Io { file, source }),
    }
}

/// Reads and parses the file at `path` into `T`; the caller checks the values.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<(String, T), ConfigError> {
    let (file, text) = read(path)?;
    let value = parse(&file, &text)?;
    Ok((file, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        port: u16,
    }

    #[test]
    fn errors_name_the_file_and_where() {
        assert_eq!(parse::<Cfg>("a.toml", "port = 53\n").unwrap().port, 53);
        let e = parse::<Cfg>("a.toml", "port = 70000\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.toml: TOML parse error at line 1"), "{e}");
        let e = parse::<Cfg>("a.toml", "port = 1\nprot = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `prot`"), "{e}");
        let e = load::<Cfg>(Path::new("/nonexistent/a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/a.toml: "), "{e}");
        assert_eq!(
            ConfigError::invalid("a.toml", "port", "0 is not a port").to_string(),
            "a.toml: port: 0 is not a port"
        );
    }
}
