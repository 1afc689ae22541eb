//! Operator CLI arguments and output parsing shared by the server and agent helpers.

use std::process::Output;

use anyhow::{Context, bail};

/// A registration entry as given to `signet-server entry create`.
#[derive(Clone, Debug)]
pub struct EntrySpec {
    /// SPIFFE ID the entry issues.
    pub spiffe_id: String,
    /// SPIFFE ID of the agent (or node alias) allowed to serve it.
    pub parent_id: String,
    /// Selectors as `type:value`.
    pub selectors: Vec<String>,
    /// X509-SVID TTL in seconds, when not the server's default.
    pub x509_svid_ttl: Option<u64>,
    /// Hint served with the SVID, when set.
    pub hint: Option<String>,
}

impl EntrySpec {
    /// Returns an entry with no selectors and default TTL.
    pub fn new(spiffe_id: impl Into<String>, parent_id: impl Into<String>) -> Self {
        Self {
            spiffe_id: spiffe_id.into(),
            parent_id: parent_id.into(),
            selectors: Vec::new(),
            x509_svid_ttl: None,
            hint: None,
        }
    }

    /// Adds a selector such as `unix:uid:1000`.
    #[must_use]
    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selectors.push(selector.into());
        self
    }

    /// Sets the X509-SVID TTL in seconds.
    #[must_use]
    pub fn x509_svid_ttl(mut self, seconds: u64) -> Self {
        self.x509_svid_ttl = Some(seconds);
        self
    }

    /// Sets the hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Returns the `entry create` arguments for this entry.
    pub fn create_args(&self) -> Vec<String> {
        let mut args = vec![
            "entry".to_owned(),
            "create".to_owned(),
            "--spiffe-id".to_owned(),
            self.spiffe_id.clone(),
            "--parent-id".to_owned(),
            self.parent_id.clone(),
        ];
        for selector in &self.selectors {
            args.extend(["--selector".to_owned(), selector.clone()]);
        }
        if let Some(ttl) = self.x509_svid_ttl {
            args.extend(["--x509-svid-ttl".to_owned(), ttl.to_string()]);
        }
        if let Some(hint) = &self.hint {
            args.extend(["--hint".to_owned(), hint.clone()]);
        }
        args
    }
}

/// Returns stdout of a command that must have succeeded.
///
/// # Errors
///
/// Fails with the command's stderr when it exited non-zero.
pub fn stdout_of_success(command: &str, output: &Output) -> anyhow::Result<String> {
    if !output.status.success() {
        bail!(
            "`{command}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    String::from_utf8(output.stdout.clone())
        .with_context(|| format!("`{command}` printed non-UTF-8"))
}

/// Returns stdout followed by stderr, for checks on everything a command printed.
pub fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Returns the value of the first human-output line `<label> : <value>` (SPIRE's layout, where
/// the label is padded with spaces before the colon).
///
/// # Errors
///
/// Fails when no such line exists.
pub fn field(output: &str, label: &str) -> anyhow::Result<String> {
    output
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim() == label)
        .map(|(_, value)| value.trim().to_owned())
        .with_context(|| format!("no `{label}` line in output:\n{output}"))
}

/// Returns the first whole number in `output`, such as the count in `3 registration entries`.
///
/// # Errors
///
/// Fails when the output contains no number.
pub fn first_number(output: &str) -> anyhow::Result<u64> {
    output
        .split(|c: char| !c.is_ascii_digit())
        .find(|word| !word.is_empty())
        .with_context(|| format!("no number in output:\n{output}"))?
        .parse()
        .with_context(|| format!("number out of range in output:\n{output}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_reads_padded_label() {
        let output = "Entry ID         : 4f1c\nSPIFFE ID        : spiffe://example.org/web\n";
        assert_eq!(field(output, "Entry ID").unwrap(), "4f1c");
        assert_eq!(
            field(output, "SPIFFE ID").unwrap(),
            "spiffe://example.org/web"
        );
    }

    #[test]
    fn field_missing_label_is_an_error() {
        assert!(field("Token: abc\n", "Entry ID").is_err());
    }

    #[test]
    fn first_number_reads_count() {
        assert_eq!(first_number("3 registration entries\n").unwrap(), 3);
        assert_eq!(first_number("{\"count\":12}").unwrap(), 12);
        assert!(first_number("none\n").is_err());
    }
}
