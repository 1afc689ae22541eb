//! The scenario's report: one row per attempted call, printed as a table or as JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::client::Outcome;

/// Maximum length of a reason in the table. The JSON output keeps it whole.
const REASON_WIDTH: usize = 96;

/// The outcome a call must have.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// An HTTP response with this status.
    Status(u16),
    /// No response: the TLS connection fails.
    TlsFailure,
}

/// One attempted call and what happened.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Row {
    /// Position in the scenario, from 1.
    pub number: usize,
    /// The workload that calls.
    pub caller: String,
    /// The hop the call takes.
    pub hop: String,
    /// Method and path.
    pub request: String,
    /// The credentials the call carries.
    pub credentials: String,
    /// The outcome it must have.
    pub expected: Expected,
    /// The outcome it had.
    pub outcome: Outcome,
}

// === impl Expected ===

impl Expected {
    /// Returns true when `outcome` is this one.
    #[must_use]
    pub fn is_met_by(self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Self::Status(expected), Outcome::Response { status, .. }) => expected == *status,
            (Self::TlsFailure, Outcome::TlsFailure { .. }) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{status}"),
            Self::TlsFailure => f.write_str("TLS fails"),
        }
    }
}

// === impl Row ===

impl Row {
    /// Returns a row.
    #[must_use]
    pub fn new(
        number: usize,
        caller: &str,
        hop: &str,
        request: String,
        credentials: String,
        expected: Expected,
        outcome: Outcome,
    ) -> Self {
        Self {
            number,
            caller: caller.to_owned(),
            hop: hop.to_owned(),
            request,
            credentials,
            expected,
            outcome,
        }
    }

    /// Returns true when the call had the outcome it must have.
    #[must_use]
    pub fn is_as_expected(&self) -> bool {
        self.expected.is_met_by(&self.outcome)
    }

    /// Returns the outcome in the table's words: the status, or "TLS fails".
    #[must_use]
    pub fn got(&self) -> String {
        match &self.outcome {
            Outcome::Response { status, .. } => status.to_string(),
            Outcome::TlsFailure { .. } => "TLS fails".to_owned(),
        }
    }

    /// Returns why the call ended so: the response body or the TLS error.
    #[must_use]
    pub fn reason(&self) -> &str {
        match &self.outcome {
            Outcome::Response { body, .. } => body,
            Outcome::TlsFailure { error } => error,
        }
    }
}

/// Renders `rows` as a plain-text table with aligned columns.
#[must_use]
pub fn render(rows: &[Row]) -> String {
    let header = [
        "#",
        "caller",
        "hop",
        "request",
        "credentials",
        "expected",
        "got",
        "check",
        "why",
    ];
    let mut lines: Vec<[String; 9]> = vec![header.map(str::to_owned)];
    for row in rows {
        lines.push([
            row.number.to_string(),
            row.caller.clone(),
            row.hop.clone(),
            row.request.clone(),
            row.credentials.clone(),
            row.expected.to_string(),
            row.got(),
            if row.is_as_expected() {
                "ok"
            } else {
                "UNEXPECTED"
            }
            .to_owned(),
            shorten(row.reason()),
        ]);
    }
    let mut widths = [0; 9];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn shorten(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or_default();
    if line.chars().count() <= REASON_WIDTH {
        return line.to_owned();
    }
    let mut short: String = line.chars().take(REASON_WIDTH - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> Outcome {
        Outcome::Response {
            status,
            body: "reason".to_owned(),
        }
    }

    #[test]
    fn expectations_compare_status_and_tls_failure() {
        let tls = Outcome::TlsFailure {
            error: "alert".to_owned(),
        };
        assert!(Expected::Status(403).is_met_by(&response(403)));
        assert!(!Expected::Status(403).is_met_by(&response(200)));
        assert!(!Expected::Status(403).is_met_by(&tls));
        assert!(Expected::TlsFailure.is_met_by(&tls));
        assert!(!Expected::TlsFailure.is_met_by(&response(200)));
    }

    #[test]
    fn table_aligns_columns_and_flags_unexpected_rows() {
        let rows = [
            Row::new(
                1,
                "a",
                "h",
                "GET /".to_owned(),
                "c".to_owned(),
                Expected::Status(200),
                response(200),
            ),
            Row::new(
                2,
                "bbb",
                "h",
                "GET /".to_owned(),
                "c".to_owned(),
                Expected::Status(403),
                response(200),
            ),
        ];
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains(" ok "), "{table}");
        assert!(lines[2].contains("UNEXPECTED"), "{table}");
        let column = |line: &str| line.find("GET").unwrap();
        assert_eq!(column(lines[1]), column(lines[2]), "{table}");
    }

    #[test]
    fn long_reasons_are_cut_in_the_table() {
        let long = "x".repeat(200);
        assert_eq!(shorten(&long).chars().count(), REASON_WIDTH);
        assert_eq!(shorten("two\nlines"), "two");
    }
}
