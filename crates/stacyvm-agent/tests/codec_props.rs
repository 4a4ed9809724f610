//! Property tests of the agent's frame codec: whatever is encoded is read
//! back unchanged however the bytes are split across reads, by the blocking
//! and the async reader alike; and arbitrary bytes (a confused or hostile
//! peer) give frames or an error, never a panic, a hang or a payload over
//! the limit.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use stacyvm_agent::codec::{HEADER_LEN, MAX_PAYLOAD, read_frame, read_frame_async};
use stacyvm_agent::{CodecError, Frame, FrameKind};

const KINDS: [FrameKind; 9] = [
    FrameKind::Request,
    FrameKind::Stdin,
    FrameKind::CloseStdin,
    FrameKind::Resize,
    FrameKind::Signal,
    FrameKind::Response,
    FrameKind::Stdout,
    FrameKind::Stderr,
    FrameKind::Exit,
];

fn frame() -> impl Strategy<Value = Frame> {
    (
        prop::sample::select(KINDS.to_vec()),
        prop::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(kind, payload)| Frame::new(kind, payload))
}

/// A reader that hands out the bytes in the given chunk sizes (cycled),
/// as a socket may.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Chunked {
    fn new(data: Vec<u8>, sizes: Vec<usize>) -> Self {
        Chunked {
            data,
            pos: 0,
            sizes,
            turn: 0,
        }
    }

    fn next_len(&mut self, room: usize) -> usize {
        let want = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        want.min(room).min(self.data.len() - self.pos)
    }
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.next_len(buf.len());
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl tokio::io::AsyncRead for Chunked {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.next_len(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn read_all_blocking(r: &mut impl Read) -> (Vec<Frame>, Option<CodecError>) {
    let mut frames = Vec::new();
    loop {
        match read_frame(r) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn read_all_async(r: &mut Chunked) -> (Vec<Frame>, Option<CodecError>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut frames = Vec::new();
        loop {
            match read_frame_async(r).await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn frames_survive_any_split(
        frames in prop::collection::vec(frame(), 0..8),
        sizes in prop::collection::vec(1usize..64, 1..6),
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let (got, err) = read_all_blocking(&mut Chunked::new(bytes.clone(), sizes.clone()));
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(&got, &frames);
        let (got, err) = read_all_async(&mut Chunked::new(bytes, sizes));
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(&got, &frames);
    }

    #[test]
    fn a_cut_stream_is_an_error_not_a_frame(
        frames in prop::collection::vec(frame(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let ends: Vec<usize> = frames
            .iter()
            .scan(0, |end, f| { *end += HEADER_LEN + f.payload.len(); Some(*end) })
            .collect();
        let at = cut.index(bytes.len());
        let (got, err) = read_all_blocking(&mut io::Cursor::new(bytes[..at].to_vec()));
        let whole = ends.iter().filter(|&&e| e <= at).count();
        // Exactly the frames that were entirely before the cut come out.
        prop_assert_eq!(&got[..], &frames[..whole]);
        let on_boundary = at == 0 || ends.contains(&at);
        prop_assert_eq!(err.is_none(), on_boundary, "cut at {} of {}: {:?}", at, bytes.len(), err);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in prop::collection::vec(1usize..32, 1..4),
    ) {
        let (frames, _) = read_all_blocking(&mut Chunked::new(bytes.clone(), sizes.clone()));
        let consumed: usize = frames.iter().map(|f| HEADER_LEN + f.payload.len()).sum();
        prop_assert!(consumed <= bytes.len());
        prop_assert!(frames.iter().all(|f| f.payload.len() <= MAX_PAYLOAD));
        let (async_frames, _) = read_all_async(&mut Chunked::new(bytes, sizes));
        prop_assert_eq!(frames, async_frames);
    }

    #[test]
    fn oversized_lengths_are_refused_before_any_allocation(
        len in (MAX_PAYLOAD as u32 + 1)..=u32::MAX,
        kind in prop::sample::select(KINDS.to_vec()),
    ) {
        let mut header = len.to_be_bytes().to_vec();
        header.push(kind as u8);
        // No payload follows: a reader that tried to fill it would fail
        // with UnexpectedEof instead.
        let err = read_frame(&mut io::Cursor::new(header)).unwrap_err();
        prop_assert!(matches!(err, CodecError::TooLarge(n) if n == len as usize), "{:?}", err);
    }

    #[test]
    fn json_payloads_round_trip(argv in prop::collection::vec(".*", 0..6)) {
        let req = stacyvm_agent::Request::Exec(stacyvm_agent::ExecRequest {
            protocol: stacyvm_agent::PROTOCOL_VERSION,
            argv,
            ..Default::default()
        });
        let bytes = Frame::json(FrameKind::Request, &req).encode();
        let f = read_frame(&mut io::Cursor::new(bytes)).unwrap().unwrap();
        prop_assert_eq!(f.parse::<stacyvm_agent::Request>().unwrap(), req);
    }
}
