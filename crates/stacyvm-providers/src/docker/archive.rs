//! Tar streams for the Engine archive API: building the archive of one file
//! without copying its content, and reading the first entry of a downloaded
//! archive as it arrives, so a large file is never buffered whole.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tar::{EntryType, Header};

use crate::{ByteStream, ProviderError};

const BLOCK: usize = 512;

fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// The pieces of a tar archive, to be sent as a body stream.
#[derive(Debug, Default)]
pub(crate) struct TarBuilder {
    parts: Vec<Bytes>,
}

impl TarBuilder {
    fn push_header(&mut self, name: &str, kind: EntryType, mode: u32, size: u64, mtime: u64) {
        let mut name = name.to_string();
        if kind == EntryType::Directory && !name.ends_with('/') {
            name.push('/');
        }
        let mut h = Header::new_gnu();
        if name.len() > 100 {
            // GNU long name: a `././@LongLink` entry carries the real name.
            let mut long = Header::new_gnu();
            let raw = format!("{name}\0");
            long.as_mut_bytes()[..13].copy_from_slice(b"././@LongLink");
            long.set_entry_type(EntryType::GNULongName);
            long.set_mode(0o644);
            long.set_size(raw.len() as u64);
            long.set_cksum();
            self.parts.push(Bytes::copy_from_slice(long.as_bytes()));
            let pad = padding(raw.len() as u64);
            self.parts.push(Bytes::from(raw));
            self.parts.push(Bytes::from(vec![0u8; pad]));
            let short: String = name.chars().take(99).collect();
            h.as_mut_bytes()[..short.len()].copy_from_slice(short.as_bytes());
        } else {
            h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(mtime);
        h.set_cksum();
        self.parts.push(Bytes::copy_from_slice(h.as_bytes()));
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32, mtime: u64) {
        self.push_header(name, EntryType::Directory, mode, 0, mtime);
    }

    pub(crate) fn file(&mut self, name: &str, mode: u32, mtime: u64, content: Bytes) {
        let size = content.len() as u64;
        self.push_header(name, EntryType::Regular, mode, size, mtime);
        self.parts.push(content);
        let pad = padding(size);
        if pad > 0 {
            self.parts.push(Bytes::from(vec![0u8; pad]));
        }
    }

    /// The archive, ended by two zero blocks.
    pub(crate) fn finish(mut self) -> Vec<Bytes> {
        self.parts.push(Bytes::from(vec![0u8; 2 * BLOCK]));
        self.parts
    }
}

/// What the first entry of a downloaded archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FirstEntry {
    File {
        size: u64,
    },
    Dir,
    Symlink {
        target: String,
    },
    Other,
    /// The archive holds no entry.
    Empty,
}

/// Reads a tar stream's first entry as it arrives.
pub(crate) struct TarReader<S> {
    stream: S,
    buf: BytesMut,
}

impl<S> TarReader<S>
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Unpin + Send + 'static,
{
    pub(crate) fn new(stream: S) -> Self {
        TarReader {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Fills the buffer to `n` bytes; false at the end of the stream.
    async fn fill(&mut self, n: usize) -> Result<bool, ProviderError> {
        while self.buf.len() < n {
            match self.stream.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    async fn take(&mut self, size: u64) -> Result<Bytes, ProviderError> {
        let total = size as usize + padding(size);
        if !self.fill(total).await? {
            return Err(truncated());
        }
        let data = self.buf.split_to(size as usize).freeze();
        self.buf.advance(padding(size));
        Ok(data)
    }

    /// Reads headers up to the first real entry (skipping PAX and GNU
    /// long-name records, whose values it applies).
    pub(crate) async fn first_entry(&mut self) -> Result<FirstEntry, ProviderError> {
        let mut long_link: Option<String> = None;
        loop {
            if !self.fill(BLOCK).await? {
                return Ok(FirstEntry::Empty);
            }
            if self.buf[..BLOCK].iter().all(|b| *b == 0) {
                return Ok(FirstEntry::Empty);
            }
            let header = Header::from_byte_slice(&self.buf[..BLOCK]);
            let size = header
                .entry_size()
                .map_err(|e| ProviderError::internal("bad tar header from docker", e))?;
            let kind = header.entry_type();
            let link = header
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            self.buf.advance(BLOCK);
            match kind {
                EntryType::XHeader => {
                    let data = self.take(size).await?;
                    if let Some(v) = pax_value(&data, "linkpath") {
                        long_link = Some(v);
                    }
                }
                EntryType::GNULongLink => {
                    let data = self.take(size).await?;
                    let v = String::from_utf8_lossy(&data);
                    long_link = Some(v.trim_end_matches('\0').to_string());
                }
                EntryType::GNULongName | EntryType::XGlobalHeader => {
                    self.take(size).await?;
                }
                EntryType::Regular | EntryType::Continuous => {
                    return Ok(FirstEntry::File { size });
                }
                EntryType::Directory => return Ok(FirstEntry::Dir),
                EntryType::Symlink => {
                    let target = long_link.or(link).unwrap_or_default();
                    return Ok(FirstEntry::Symlink { target });
                }
                _ => return Ok(FirstEntry::Other),
            }
        }
    }

    /// The content of the entry whose header was just read, streamed.
    pub(crate) fn into_body(self, size: u64) -> ByteStream {
        let state = (self, size);
        Box::pin(futures::stream::unfold(
            state,
            |(mut r, remaining)| async move {
                if remaining == 0 {
                    return None;
                }
                if r.buf.is_empty() {
                    match r.stream.next().await {
                        Some(Ok(chunk)) => r.buf.extend_from_slice(&chunk),
                        Some(Err(e)) => return Some((Err(e), (r, 0))),
                        None => return Some((Err(truncated()), (r, 0))),
                    }
                }
                let n = r.buf.len().min(remaining as usize);
                let out = r.buf.split_to(n).freeze();
                Some((Ok(out), (r, remaining - n as u64)))
            },
        ))
    }
}

fn truncated() -> ProviderError {
    ProviderError::failed("archive from docker ended early")
}

/// A value from PAX extended header records (`LEN key=value\n`).
fn pax_value(data: &[u8], key: &str) -> Option<String> {
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return None;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=')
            && &record[..eq] == key.as_bytes()
        {
            return Some(String::from_utf8_lossy(&record[eq + 1..]).into_owned());
        }
        rest = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_stream(parts: Vec<Bytes>) -> impl Stream<Item = Result<Bytes, ProviderError>> + Unpin {
        // Re-chunk at odd sizes so headers straddle chunk boundaries.
        let all: Vec<u8> = parts.iter().flat_map(|b| b.to_vec()).collect();
        let chunks: Vec<Result<Bytes, ProviderError>> = all
            .chunks(77)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    async fn collect(s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.expect("chunk"));
        }
        out
    }

    #[tokio::test]
    async fn round_trips_a_file_through_the_builder_and_reader() {
        let content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut b = TarBuilder::default();
        b.file("data.bin", 0o600, 0, Bytes::from(content.clone()));
        let mut r = TarReader::new(as_stream(b.finish()));
        assert_eq!(
            r.first_entry().await.unwrap(),
            FirstEntry::File { size: 5000 }
        );
        assert_eq!(collect(r.into_body(5000)).await, content);
    }

    #[tokio::test]
    async fn long_names_and_dirs_are_valid_tar() {
        let long = format!("{}/f.txt", "d".repeat(150));
        let mut b = TarBuilder::default();
        b.dir(&"d".repeat(150), 0o755, 0);
        b.file(&long, 0o644, 0, Bytes::from_static(b"hi"));
        let all: Vec<u8> = b.finish().iter().flat_map(|p| p.to_vec()).collect();
        let mut archive = tar::Archive::new(&all[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec![format!("{}/", "d".repeat(150)), long]);
    }

    #[tokio::test]
    async fn reads_symlinks_and_empty_archives() {
        let mut h = Header::new_gnu();
        h.set_path("link").unwrap();
        h.set_entry_type(EntryType::Symlink);
        h.set_link_name("/etc/target").unwrap();
        h.set_size(0);
        h.set_cksum();
        let parts = vec![
            Bytes::copy_from_slice(h.as_bytes()),
            Bytes::from(vec![0u8; 1024]),
        ];
        let mut r = TarReader::new(as_stream(parts));
        assert_eq!(
            r.first_entry().await.unwrap(),
            FirstEntry::Symlink {
                target: "/etc/target".into()
            }
        );
        let mut r = TarReader::new(as_stream(vec![Bytes::from(vec![0u8; 1024])]));
        assert_eq!(r.first_entry().await.unwrap(), FirstEntry::Empty);
    }

    #[test]
    fn parses_pax_records() {
        let data = b"30 mtime=1350244992.023960108\n19 linkpath=/a/b/c\n";
        assert_eq!(pax_value(data, "linkpath").as_deref(), Some("/a/b/c"));
        assert_eq!(pax_value(data, "path"), None);
    }
}
