//! Frames: a 5-byte header (`u32` big-endian payload length, `u8` kind)
//! followed by the payload. Control payloads are JSON; output and stdin
//! payloads are raw bytes.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Size of a frame header.
pub const HEADER_LEN: usize = 5;
/// Largest accepted payload; output is sent in smaller chunks.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Client: a JSON [`crate::Request`].
    Request = 0x01,
    /// Client: bytes for the command's stdin.
    Stdin = 0x02,
    /// Client: close the command's stdin (EOF; `^D` under a TTY).
    CloseStdin = 0x03,
    /// Client: a JSON [`crate::WindowSize`].
    Resize = 0x04,
    /// Client: a JSON [`crate::SignalRequest`].
    Signal = 0x05,
    /// Agent: a JSON [`crate::Response`].
    Response = 0x81,
    /// Agent: stdout bytes (all output under a TTY).
    Stdout = 0x82,
    /// Agent: stderr bytes.
    Stderr = 0x83,
    /// Agent: a JSON [`crate::ExitStatus`]; always the last frame of an exec.
    Exit = 0x84,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => FrameKind::Request,
            0x02 => FrameKind::Stdin,
            0x03 => FrameKind::CloseStdin,
            0x04 => FrameKind::Resize,
            0x05 => FrameKind::Signal,
            0x81 => FrameKind::Response,
            0x82 => FrameKind::Stdout,
            0x83 => FrameKind::Stderr,
            0x84 => FrameKind::Exit,
            _ => return None,
        })
    }
}

/// Protocol-level failures.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("agent connection: {0}")]
    Io(#[from] io::Error),
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("bad {kind:?} frame: {source}")]
    BadJson {
        kind: FrameKind,
        source: serde_json::Error,
    },
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: FrameKind, payload: impl Into<Vec<u8>>) -> Self {
        Frame {
            kind,
            payload: payload.into(),
        }
    }

    /// A frame whose payload is `value` as JSON.
    pub fn json(kind: FrameKind, value: &impl Serialize) -> Self {
        // Serialising our own plain structs cannot fail.
        let payload = serde_json::to_vec(value).unwrap_or_default();
        Frame { kind, payload }
    }

    /// Decodes a JSON payload.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        serde_json::from_slice(&self.payload).map_err(|source| CodecError::BadJson {
            kind: self.kind,
            source,
        })
    }

    /// Header and payload, ready to write in one call.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Writes the frame with one `write_all`.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }
}

/// Parses a header into (kind, payload length).
pub fn decode_header(h: [u8; HEADER_LEN]) -> Result<(FrameKind, usize), CodecError> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let kind = FrameKind::from_u8(h[4]).ok_or(CodecError::UnknownKind(h[4]))?;
    if len > MAX_PAYLOAD {
        return Err(CodecError::TooLarge(len));
    }
    Ok((kind, len))
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a header.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, CodecError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, len) = decode_header(h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame { kind, payload }))
}

/// Async twin of [`read_frame`], for the host side.
#[cfg(feature = "tokio")]
pub async fn read_frame_async<R>(r: &mut R) -> Result<Option<Frame>, CodecError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            n => got += n,
        }
    }
    let (kind, len) = decode_header(h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(Frame { kind, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecRequest, Request};

    #[test]
    fn frames_round_trip() {
        let req = Request::Exec(ExecRequest {
            protocol: crate::PROTOCOL_VERSION,
            argv: vec!["echo".into(), "hi".into()],
            ..Default::default()
        });
        let mut buf = Frame::json(FrameKind::Request, &req).encode();
        buf.extend(Frame::new(FrameKind::Stdin, b"abc".to_vec()).encode());
        let mut r = io::Cursor::new(buf);
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::Request);
        assert_eq!(f.parse::<Request>().unwrap(), req);
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f, Frame::new(FrameKind::Stdin, b"abc".to_vec()));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_headers() {
        let mut r = io::Cursor::new(vec![0, 0, 0, 0, 0x7f]);
        assert!(matches!(
            read_frame(&mut r),
            Err(CodecError::UnknownKind(0x7f))
        ));
        let mut r = io::Cursor::new(vec![0xff, 0, 0, 0, 0x02]);
        assert!(matches!(read_frame(&mut r), Err(CodecError::TooLarge(_))));
        let mut r = io::Cursor::new(vec![0, 0, 0]);
        assert!(read_frame(&mut r).is_err());
    }
}
