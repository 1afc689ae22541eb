//! The canonical form a request must have before any rule is checked, so that a path or method
//! that the service behind the policy would read differently cannot slip past a rule.
//!
//! A request path is canonical when:
//!
//! - it starts with `/`;
//! - no segment is empty (`//`), except that one trailing `/` is allowed: `/admin/` is matched
//!   as `/admin`, so a rule on `/admin` also covers it;
//! - no segment is `.` or `..`, also when percent-encoded (`%2e%2e`) or followed by `;`
//!   parameters (`..;x`);
//! - no segment contains `\`, and percent-encoding never stands for `/`, `\`, `%` or a
//!   character that needs no encoding (letters, digits, `-`, `.`, `_`, `~`), which servers
//!   decode to another path;
//! - every `%` starts a valid `%XX` escape.
//!
//! The method is canonical when it is all upper case, as every standard method is: methods are
//! case-sensitive tokens, so `delete` is not `DELETE` and is rejected rather than matched.

/// Returns why `path` is not canonical, or `None` when it is.
pub(super) fn path_defect(path: &str) -> Option<&'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Some("the path does not start with '/'");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return (path.len() > 1).then_some("the path has an empty segment");
    }
    rest.split('/').find_map(segment_defect)
}

/// Returns `path` without the one trailing `/` that [`path_defect`] allows.
pub(super) fn matched_path(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    }
}

/// Returns why `method` is not canonical, or `None` when it is.
pub(super) fn method_defect(method: &str) -> Option<&'static str> {
    method
        .bytes()
        .any(|byte| byte.is_ascii_lowercase())
        .then_some("the method is not in upper case")
}

fn segment_defect(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        return Some("the path has an empty segment");
    }
    if segment.contains('\\') {
        return Some("the path contains '\\'");
    }
    if let Some(defect) = escape_defect(segment) {
        return Some(defect);
    }
    let name = segment.split(';').next().unwrap_or(segment);
    matches!(name, "." | "..").then_some("the path has a '.' or '..' segment")
}

/// Returns the defect of the first `%XX` escape of `segment` that is invalid or encodes a
/// character the path must not hide, or `None` when every escape is fine.
fn escape_defect(segment: &str) -> Option<&'static str> {
    let bytes = segment.as_bytes();
    let mut index = 0;
    while let Some(offset) = bytes[index..].iter().position(|&byte| byte == b'%') {
        let at = index + offset;
        let escaped = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        let Some(byte) = escaped else {
            return Some("the path has a '%' that starts no valid escape");
        };
        if byte.is_ascii_alphanumeric() || b"-._~/\\%".contains(&byte) {
            return Some(
                "the path percent-encodes '/', '\\', '%' or a character that needs no encoding",
            );
        }
        index = at + 3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for path in [
            "/",
            "/orders",
            "/orders/42/items",
            "/orders/",
            "/a%20b",
            "/x;v=1",
        ] {
            assert_eq!(path_defect(path), None, "{path}");
        }
    }

    #[test]
    fn ambiguous_paths_are_rejected() {
        for path in [
            "",
            "*",
            "//",
            "//admin",
            "//admin/x",
            "/orders//x",
            "/orders/../admin",
            "/./admin",
            "/admin/.",
            "/admin/./",
            "/%2e%2e/admin",
            "/%2E/admin",
            "/..%2fadmin",
            "/..%2Fadmin",
            "/a%5cb",
            "/a\\b",
            "/%252e%252e/admin",
            "/..;/admin",
            "/.;x/admin",
            "/%2e%2e;x/admin",
            "/%61dmin",
            "/a%zz",
            "/a%2",
        ] {
            assert!(path_defect(path).is_some(), "{path:?} passed");
        }
    }

    #[test]
    fn trailing_slash_is_matched_without_it() {
        assert_eq!(matched_path("/admin/"), "/admin");
        assert_eq!(matched_path("/admin"), "/admin");
        assert_eq!(matched_path("/"), "/");
    }

    #[test]
    fn lower_case_methods_are_rejected() {
        assert_eq!(method_defect("DELETE"), None);
        assert!(method_defect("delete").is_some());
        assert!(method_defect("Get").is_some());
    }
}
