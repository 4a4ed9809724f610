//! Files inside a container.
//!
//! Content moves through the Engine archive API (tar in, tar out), which
//! resolves every path, symlinks included, inside the container's own
//! filesystem: nothing here ever opens a host path. Operations the archive
//! API lacks (listing, moving, chmod, delete, glob) run as small scripts
//! inside the container with busybox-level tools, again never touching the
//! host. Paths are normalized first and `..` is refused outright.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use stacyvm_core::{ExecOutput, FileInfo, FileMode, SandboxId};

use super::archive::{FirstEntry, TarBuilder, TarReader};
use super::client::is_no_such_container;
use super::{Inner, container_name, exec};
use crate::{ByteStream, ExecSpec, ProviderError, SandboxFiles};

/// Symlinks followed when reading before giving up.
const MAX_LINK_HOPS: usize = 16;

/// Time allowed for a file helper script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

// Go's os.FileMode bits, as the archive API reports them.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_STICKY: u32 = 1 << 20;

/// Normalizes an absolute sandbox path: collapses `//` and `.`, refuses
/// relative paths, NUL bytes and any `..` component.
pub(crate) fn clean_path(p: &str) -> Result<String, ProviderError> {
    if p.is_empty() {
        return Err(ProviderError::InvalidInput("empty path".into()));
    }
    if !p.starts_with('/') {
        return Err(ProviderError::InvalidInput(format!(
            "path {p} is not absolute"
        )));
    }
    if p.contains('\0') {
        return Err(ProviderError::InvalidInput(format!(
            "path {p:?} contains a nul byte"
        )));
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(ProviderError::InvalidInput(format!(
                    "path {p} must not contain .."
                )));
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Resolves a symlink target found at `link` lexically, inside the
/// container root (`..` at the root stays at the root).
fn resolve_link(link: &str, target: &str) -> String {
    let base = if target.starts_with('/') {
        String::new()
    } else {
        parent(link).to_string()
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in base.split('/').chain(target.split('/')) {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn base_name(path: &str) -> &str {
    if path == "/" {
        return "/";
    }
    path.rsplit('/').next().unwrap_or(path)
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Permission bits (with setuid/setgid/sticky) from a Go file mode.
fn perm_from_go(mode: u32) -> u32 {
    let mut bits = mode & 0o777;
    if mode & GO_MODE_SETUID != 0 {
        bits |= 0o4000;
    }
    if mode & GO_MODE_SETGID != 0 {
        bits |= 0o2000;
    }
    if mode & GO_MODE_STICKY != 0 {
        bits |= 0o1000;
    }
    bits
}

fn now_secs() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

impl Inner {
    fn file_error(&self, e: bollard::errors::Error, id: &SandboxId, path: &str) -> ProviderError {
        if is_no_such_container(&e) {
            return ProviderError::NotFound(format!("sandbox {id}"));
        }
        self.client.map(e, path)
    }

    /// Runs a helper script (`sh -c SCRIPT stacyvm ARGS...`) in the sandbox.
    async fn script(
        self: &Arc<Self>,
        id: &SandboxId,
        script: &str,
        args: &[&str],
    ) -> Result<ExecOutput, ProviderError> {
        let mut argv: Vec<String> = vec!["/bin/sh".into(), "-c".into(), script.into()];
        argv.push("stacyvm".into());
        argv.extend(args.iter().map(|a| a.to_string()));
        let spec = ExecSpec {
            argv,
            timeout: SCRIPT_TIMEOUT,
            ..Default::default()
        };
        exec::run(self, id, &spec).await
    }

    /// Maps a helper script's exit status: 1-2 the tool refused, 3 not
    /// found, 4 not a directory, 5 directory not empty, 6 is a directory;
    /// anything else (126/127: no shell or tool) is the provider's failure.
    fn script_result(out: &ExecOutput, path: &str, op: &str) -> Result<(), ProviderError> {
        match out.exit_code {
            0 => Ok(()),
            3 => Err(ProviderError::NotFound(path.to_string())),
            4 => Err(ProviderError::InvalidInput(format!(
                "{path} is not a directory"
            ))),
            5 => Err(ProviderError::InvalidInput(format!(
                "directory {path} is not empty"
            ))),
            6 => Err(ProviderError::InvalidInput(format!(
                "{path} is a directory"
            ))),
            // mv, mkdir, chmod or rm refused what was asked.
            1 | 2 => Err(ProviderError::InvalidInput(format!(
                "{op} {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            c => Err(ProviderError::internal(
                format!("{op} {path} failed (exit {c})"),
                crate::Private(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            )),
        }
    }
}

#[async_trait]
impl SandboxFiles for Arc<Inner> {
    async fn write(
        &self,
        id: &SandboxId,
        path: &str,
        content: Bytes,
        mode: Option<u32>,
    ) -> Result<(), ProviderError> {
        let path = clean_path(path)?;
        if path == "/" {
            return Err(ProviderError::InvalidInput("cannot write to /".into()));
        }
        let mode = mode.unwrap_or(0o644) & 0o7777;
        let docker = self.client.get()?;
        let name = container_name(id);
        let mtime = now_secs();

        // Find the nearest existing ancestor, creating the rest in the
        // same archive. The common case (parent exists) costs one request.
        let mut anchor = parent(&path).to_string();
        let mut missing: Vec<String> = Vec::new();
        loop {
            let mut tar = TarBuilder::default();
            let mut rel = String::new();
            for d in missing.iter().rev() {
                rel = if rel.is_empty() {
                    d.clone()
                } else {
                    format!("{rel}/{d}")
                };
                tar.dir(&rel, 0o755, mtime);
            }
            let file_rel = if rel.is_empty() {
                base_name(&path).to_string()
            } else {
                format!("{rel}/{}", base_name(&path))
            };
            tar.file(&file_rel, mode, mtime, content.clone());
            let opts = UploadToContainerOptions {
                path: anchor.clone(),
                no_overwrite_dir_non_dir: Some("true".into()),
                ..Default::default()
            };
            let body = futures::stream::iter(tar.finish());
            match docker
                .upload_to_container(&name, Some(opts), bollard::body_stream(body))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if is_no_such_container(&e) => {
                    return Err(ProviderError::NotFound(format!("sandbox {id}")));
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) if anchor != "/" => {
                    missing.push(base_name(&anchor).to_string());
                    anchor = parent(&anchor).to_string();
                }
                // The daemon refused the archive: a parent is not a
                // directory (or a dangling link), a dir is in the way, ...
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                    if message.contains("Error processing tar file") =>
                {
                    return Err(ProviderError::InvalidInput(format!(
                        "cannot write {path}: {}",
                        message.trim()
                    )));
                }
                Err(e) => return Err(self.file_error(e, id, &path)),
            }
        }
    }

    async fn read(&self, id: &SandboxId, path: &str) -> Result<ByteStream, ProviderError> {
        let mut path = clean_path(path)?;
        let docker = self.client.get()?;
        let name = container_name(id);
        for _ in 0..MAX_LINK_HOPS {
            let opts = DownloadFromContainerOptions { path: path.clone() };
            let me = Arc::clone(self);
            let (id2, path2) = (id.clone(), path.clone());
            let stream = docker
                .download_from_container(&name, Some(opts))
                .map(move |r| r.map_err(|e| me.file_error(e, &id2, &path2)));
            let mut reader = TarReader::new(Box::pin(stream));
            match reader.first_entry().await? {
                FirstEntry::File { size } => return Ok(reader.into_body(size)),
                FirstEntry::Dir => {
                    return Err(ProviderError::InvalidInput(format!(
                        "{path} is a directory"
                    )));
                }
                FirstEntry::Symlink { target } => path = resolve_link(&path, &target),
                FirstEntry::Other => {
                    return Err(ProviderError::InvalidInput(format!(
                        "{path} is not a regular file"
                    )));
                }
                FirstEntry::Empty => return Err(ProviderError::NotFound(path)),
            }
        }
        Err(ProviderError::InvalidInput(format!(
            "{path}: too many levels of symbolic links"
        )))
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> Result<FileInfo, ProviderError> {
        let path = clean_path(path)?;
        let docker = self.client.get()?;
        let opts = ContainerArchiveInfoOptions { path: path.clone() };
        let stat = docker
            .get_container_archive_info(&container_name(id), Some(opts))
            .await
            .map_err(|e| self.file_error(e, id, &path))?;
        let mod_time = stat
            .modification_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.timestamp_opt(0, 0).single().unwrap_or_default());
        Ok(FileInfo {
            name: base_name(&path).to_string(),
            path: path.clone(),
            size: stat.size.max(0) as u64,
            is_dir: stat.file_mode & GO_MODE_DIR != 0,
            mod_time,
            mode: FileMode::render(perm_from_go(stat.file_mode)),
            is_symlink: stat.file_mode & GO_MODE_SYMLINK != 0,
        })
    }

    async fn list(&self, id: &SandboxId, path: &str) -> Result<Vec<FileInfo>, ProviderError> {
        let dir = clean_path(path)?;
        // Prints the names NUL-separated, an empty record, then one
        // `SIZE HEXMODE MTIME` line per name (lstat, links not followed).
        const LIST: &str = r#"[ -e "$1" ] || exit 3
[ -d "$1" ] || exit 4
cd -- "$1" || exit 4
set --
for f in * .[!.]* ..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then set -- "$@" "$f"; fi
done
[ "$#" -eq 0 ] && exit 0
printf '%s\0' "$@"
printf '\0'
exec stat -c '%s %f %Y' -- "$@""#;
        let out = self.script(id, LIST, &[&dir]).await?;
        Inner::script_result(&out, &dir, "list")?;
        parse_listing(&dir, &out.stdout)
    }

    async fn rename(&self, id: &SandboxId, from: &str, to: &str) -> Result<(), ProviderError> {
        let from = clean_path(from)?;
        let to = clean_path(to)?;
        if from == "/" || to == "/" {
            return Err(ProviderError::InvalidInput("cannot move /".into()));
        }
        const MOVE: &str = r#"[ -e "$1" ] || [ -L "$1" ] || exit 3
mkdir -p -- "$(dirname -- "$2")" && exec mv -f -- "$1" "$2""#;
        let out = self.script(id, MOVE, &[&from, &to]).await?;
        Inner::script_result(&out, &from, "move")
    }

    async fn chmod(&self, id: &SandboxId, path: &str, mode: u32) -> Result<(), ProviderError> {
        let path = clean_path(path)?;
        if mode > 0o7777 {
            return Err(ProviderError::InvalidInput(format!(
                "mode {mode:o} is not a permission mode"
            )));
        }
        const CHMOD: &str = r#"[ -e "$1" ] || exit 3
exec chmod "$2" -- "$1""#;
        let out = self
            .script(id, CHMOD, &[&path, &format!("{mode:04o}")])
            .await?;
        Inner::script_result(&out, &path, "chmod")
    }

    async fn delete(
        &self,
        id: &SandboxId,
        path: &str,
        recursive: bool,
    ) -> Result<(), ProviderError> {
        let path = clean_path(path)?;
        if path == "/" {
            return Err(ProviderError::InvalidInput("cannot delete /".into()));
        }
        const DELETE: &str = r#"[ -e "$1" ] || [ -L "$1" ] || exit 3
if [ -d "$1" ] && [ ! -L "$1" ]; then
  if [ "$2" = 1 ]; then exec rm -rf -- "$1"; fi
  rmdir -- "$1" 2>/dev/null || exit 5
else
  exec rm -f -- "$1"
fi"#;
        let out = self
            .script(id, DELETE, &[&path, if recursive { "1" } else { "0" }])
            .await?;
        Inner::script_result(&out, &path, "delete")
    }

    async fn glob(&self, id: &SandboxId, pattern: &str) -> Result<Vec<String>, ProviderError> {
        let pat = clean_path(pattern)?;
        let compiled = glob::Pattern::new(&pat)
            .map_err(|e| ProviderError::InvalidInput(format!("bad glob pattern {pattern}: {e}")))?;
        let comps: Vec<&str> = pat.split('/').filter(|c| !c.is_empty()).collect();
        let magic = |c: &str| c.contains(['*', '?', '[']);
        let Some(first) = comps.iter().position(|c| magic(c)) else {
            // No wildcard: the path itself, if it exists.
            return match self.stat(id, &pat).await {
                Ok(_) => Ok(vec![pat]),
                Err(ProviderError::NotFound(p)) if p == pat => Ok(vec![]),
                Err(e) => Err(e),
            };
        };
        let base = format!("/{}", comps[..first].join("/"));
        let depth = if comps[first..].iter().any(|c| c.contains("**")) {
            String::new()
        } else {
            (comps.len() - first).to_string()
        };
        const FIND: &str = r#"[ -d "$1" ] || exit 0
if [ -n "$2" ]; then find "$1/" -mindepth 1 -maxdepth "$2" -print0 2>/dev/null
else find "$1/" -mindepth 1 -print0 2>/dev/null; fi
exit 0"#;
        let out = self.script(id, FIND, &[&base, &depth]).await?;
        Inner::script_result(&out, &base, "glob")?;
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut found: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .filter_map(|r| std::str::from_utf8(r).ok())
            .filter_map(|p| clean_path(p).ok())
            .filter(|p| compiled.matches_with(p, opts))
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }
}

/// Parses the listing script's output (see `LIST` in `list_files`).
fn parse_listing(dir: &str, out: &[u8]) -> Result<Vec<FileInfo>, ProviderError> {
    if out.is_empty() {
        return Ok(Vec::new());
    }
    let bad = || ProviderError::failed(format!("unexpected listing output for {dir}"));
    let split = out.windows(2).position(|w| w == b"\0\0").ok_or_else(bad)?;
    let names: Vec<&[u8]> = out[..split].split(|b| *b == 0).collect();
    let stats: Vec<&str> = std::str::from_utf8(&out[split + 2..])
        .map_err(|_| bad())?
        .lines()
        .collect();
    if names.len() != stats.len() {
        return Err(bad());
    }
    let mut entries = Vec::with_capacity(names.len());
    for (name, stat) in names.iter().zip(stats) {
        let mut it = stat.split(' ');
        let (Some(size), Some(mode), Some(mtime)) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let size: u64 = size.parse().map_err(|_| bad())?;
        let mode = u32::from_str_radix(mode, 16).map_err(|_| bad())?;
        let mtime: i64 = mtime.parse().map_err(|_| bad())?;
        let name = String::from_utf8_lossy(name).into_owned();
        let kind = mode & 0o170000;
        entries.push(FileInfo {
            path: join(dir, &name),
            name,
            size,
            is_dir: kind == 0o040000,
            mod_time: Utc.timestamp_opt(mtime, 0).single().unwrap_or_default(),
            mode: FileMode::render(mode & 0o7777),
            is_symlink: kind == 0o120000,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths_and_refuses_escapes() {
        assert_eq!(clean_path("/a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(clean_path("/").unwrap(), "/");
        for bad in ["", "a/b", "/a/../b", "/..", "/a/..", "/a\0b"] {
            assert!(
                matches!(clean_path(bad), Err(ProviderError::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn resolves_links_inside_the_root() {
        assert_eq!(resolve_link("/a/b/link", "target"), "/a/b/target");
        assert_eq!(resolve_link("/a/b/link", "../../../../etc/x"), "/etc/x");
        assert_eq!(resolve_link("/a/link", "/etc/shadow"), "/etc/shadow");
    }

    #[test]
    fn maps_go_modes() {
        assert_eq!(perm_from_go(0o644), 0o644);
        assert_eq!(perm_from_go(GO_MODE_DIR | GO_MODE_STICKY | 0o777), 0o1777);
        assert_eq!(perm_from_go(GO_MODE_SETUID | 0o755), 0o4755);
    }

    #[test]
    fn parses_listings() {
        let out = [
            &b"a.txt\0sub\0link\0\0"[..],
            b"5 81a4 1700000000\n4096 41ed 1700000001\n3 a1ff 1700000002\n",
        ]
        .concat();
        let l = parse_listing("/w", &out).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].path, "/w/a.txt");
        assert_eq!(l[0].mode, "0644");
        assert_eq!(l[0].size, 5);
        assert!(l[2].is_dir && l[2].name == "sub");
        assert!(l[1].is_symlink && l[1].name == "link");
        assert!(parse_listing("/", b"").unwrap().is_empty());
    }

    #[test]
    fn glob_double_star_matches_zero_or_more_dirs() {
        let p = glob::Pattern::new("/app/**/*.py").unwrap();
        let o = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        assert!(p.matches_with("/app/main.py", o));
        assert!(p.matches_with("/app/a/b/c.py", o));
        assert!(!p.matches_with("/app/a/b/c.txt", o));
        let p = glob::Pattern::new("/app/*.py").unwrap();
        assert!(!p.matches_with("/app/a/c.py", o));
    }
}
