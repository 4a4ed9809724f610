//! Glob matching over a sandbox tree: walk only beneath the pattern's
//! longest literal prefix, never through a symlink, with bounded work.

use std::io;

use cap_std::fs::Dir;
use glob::{MatchOptions, Pattern};

use super::{SandboxPath, map_io};
use crate::ProviderError;

/// Most paths one glob returns; the rest are dropped (and logged).
pub const MAX_GLOB_RESULTS: usize = 10_000;

/// Most directory entries one glob looks at, so a huge tree cannot pin a
/// blocking thread for long.
const MAX_VISITED: usize = 500_000;

const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn is_wild(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

pub(super) fn glob_sync(root: &Dir, pattern: &str) -> Result<Vec<String>, ProviderError> {
    let normalised = SandboxPath::parse(pattern)?;
    let matcher = Pattern::new(normalised.abs()).map_err(|e| {
        ProviderError::InvalidInput(format!("bad glob pattern {pattern}: {}", e.msg))
    })?;
    let components: Vec<&str> = normalised
        .abs()
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    let literal = components.iter().take_while(|c| !is_wild(c)).count();
    let mut prefix = SandboxPath::parse("/")?;
    for c in &components[..literal] {
        prefix = prefix.join(c);
    }

    if literal == components.len() {
        // No wildcard: the pattern names one path.
        return Ok(match root.symlink_metadata(prefix.rel()) {
            Ok(_) => vec![prefix.abs().to_string()],
            Err(_) if prefix.is_root() => vec!["/".into()],
            Err(_) => Vec::new(),
        });
    }

    let rest = &components[literal..];
    // Without `**` nothing deeper than the pattern can match.
    let max_depth = if rest.iter().any(|c| c.contains("**")) {
        usize::MAX
    } else {
        rest.len()
    };

    let start = if prefix.is_root() {
        root.try_clone()
    } else {
        root.open_dir(prefix.rel())
    };
    let start = match start {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => return Err(map_io(e, prefix.abs())),
    };

    let mut out = Vec::new();
    let mut visited = 0usize;
    let mut stack = vec![(start, prefix, 1usize)];
    'walk: while let Some((dir, path, depth)) = stack.pop() {
        let entries = match dir.entries() {
            Ok(e) => e,
            Err(_) => continue,
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            visited += 1;
            if visited > MAX_VISITED {
                tracing::warn!(pattern, "glob stopped after {MAX_VISITED} entries");
                break 'walk;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let child = path.join(name);
            if matcher.matches_with(child.abs(), OPTIONS) {
                out.push(child.abs().to_string());
            }
            // `file_type` does not follow symlinks: a link is never entered.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir
                && depth < max_depth
                && let Ok(sub) = entry.open_dir()
            {
                stack.push((sub, child, depth + 1));
            }
        }
    }
    out.sort();
    if out.len() > MAX_GLOB_RESULTS {
        tracing::warn!(
            pattern,
            matches = out.len(),
            "glob truncated to {MAX_GLOB_RESULTS} results"
        );
        out.truncate(MAX_GLOB_RESULTS);
    }
    Ok(out)
}
