//! HTTP/2 framing of the client-to-server byte stream (RFC 9113, section 4).
//!
//! [`FrameFilter`] forwards the connection preface and every frame byte for byte, except header
//! blocks. It collects a HEADERS frame and its CONTINUATION frames, hands the block to the
//! [`HeaderRewriter`] and writes the result as a new HEADERS frame, split into CONTINUATION frames
//! when it exceeds the default maximum frame size.

use super::rewrite::HeaderRewriter;
use super::{MAX_HEADER_BLOCK_SIZE, RewriteError};

/// The state of one connection's client-to-server byte stream.
pub(super) struct FrameFilter {
    state: State,
    /// The frame header being read, complete at [`FRAME_HEADER_LEN`] bytes.
    frame_header: Vec<u8>,
    /// The payload of the HEADERS or CONTINUATION frame being read.
    payload: Vec<u8>,
    /// The header block whose END_HEADERS flag has not arrived yet.
    block: Option<HeaderBlock>,
    rewriter: HeaderRewriter,
}

enum State {
    /// Reading the client connection preface, of which `matched` bytes arrived.
    Preface { matched: usize },
    /// The client sent no HTTP/2 preface, so every byte passes through for h2 to reject.
    Transparent,
    /// Reading a frame header.
    FrameHeader,
    /// Forwarding the payload of a frame that carries no header block.
    Forward { remaining: usize },
    /// Reading the payload of a HEADERS or CONTINUATION frame.
    HeaderPayload { header: FrameHeader },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHeader {
    pub(super) length: usize,
    pub(super) frame_type: u8,
    pub(super) flags: u8,
    pub(super) stream_id: u32,
}

/// A header block being collected from a HEADERS frame and its CONTINUATION frames.
struct HeaderBlock {
    stream_id: u32,
    end_stream: bool,
    fragments: Vec<u8>,
}

// === impl FrameFilter ===

impl FrameFilter {
    pub(super) fn new() -> Self {
        Self {
            state: State::Preface { matched: 0 },
            frame_header: Vec::with_capacity(FRAME_HEADER_LEN),
            payload: Vec::new(),
            block: None,
            rewriter: HeaderRewriter::new(),
        }
    }

    /// Consumes a prefix of `input`, appends the bytes to forward to `output` and returns the
    /// length of the prefix.
    ///
    /// It consumes all of `input` unless `output` reaches [`OUTPUT_SOFT_LIMIT`] bytes first, so
    /// it consumes at least one byte when `input` is not empty and `output` is below the limit.
    /// Bytes of an incomplete frame header or header block stay buffered until a later call
    /// completes them.
    ///
    /// # Errors
    ///
    /// A [`RewriteError`] when a header block is malformed, too large or interrupted. The
    /// connection must then be closed, because the decoder's dynamic table may no longer match
    /// the client's.
    pub(super) fn push(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<usize, RewriteError> {
        let mut rest = input;
        while !rest.is_empty() && output.len() < OUTPUT_SOFT_LIMIT {
            let consumed = match self.state {
                State::Preface { matched } => self.read_preface(matched, rest, output),
                State::Transparent => {
                    output.extend_from_slice(rest);
                    rest.len()
                }
                State::FrameHeader => self.read_frame_header(rest, output)?,
                State::Forward { remaining } => self.forward_payload(remaining, rest, output),
                State::HeaderPayload { header } => {
                    self.read_header_payload(header, rest, output)?
                }
            };
            rest = &rest[consumed..];
        }
        Ok(input.len() - rest.len())
    }

    fn read_preface(&mut self, matched: usize, input: &[u8], output: &mut Vec<u8>) -> usize {
        let count = (PREFACE.len() - matched).min(input.len());
        output.extend_from_slice(&input[..count]);
        self.state = if input[..count] != PREFACE[matched..matched + count] {
            State::Transparent
        } else if matched + count == PREFACE.len() {
            State::FrameHeader
        } else {
            State::Preface {
                matched: matched + count,
            }
        };
        count
    }

    fn forward_payload(&mut self, remaining: usize, input: &[u8], output: &mut Vec<u8>) -> usize {
        let count = remaining.min(input.len());
        output.extend_from_slice(&input[..count]);
        self.state = if count == remaining {
            State::FrameHeader
        } else {
            State::Forward {
                remaining: remaining - count,
            }
        };
        count
    }

    fn read_frame_header(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<usize, RewriteError> {
        let count = (FRAME_HEADER_LEN - self.frame_header.len()).min(input.len());
        self.frame_header.extend_from_slice(&input[..count]);
        if let Ok(bytes) = <[u8; FRAME_HEADER_LEN]>::try_from(self.frame_header.as_slice()) {
            self.frame_header.clear();
            self.start_frame(bytes, output)?;
        }
        Ok(count)
    }

    /// Decides what to do with the frame whose header is `bytes`.
    fn start_frame(
        &mut self,
        bytes: [u8; FRAME_HEADER_LEN],
        output: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let header = FrameHeader::parse(bytes);
        let stream_id = header.stream_id;
        match (&self.block, header.frame_type) {
            (Some(block), CONTINUATION) if block.stream_id == stream_id => {}
            (Some(block), frame_type) => {
                return Err(RewriteError::InterruptedHeaderBlock {
                    frame_type,
                    stream_id,
                    block_stream_id: block.stream_id,
                });
            }
            (None, HEADERS) => {}
            (None, CONTINUATION) => return Err(RewriteError::UnexpectedContinuation { stream_id }),
            (None, PUSH_PROMISE) => return Err(RewriteError::PushPromise { stream_id }),
            (None, _) => {
                output.extend_from_slice(&bytes);
                self.state = match header.length {
                    0 => State::FrameHeader,
                    remaining => State::Forward { remaining },
                };
                return Ok(());
            }
        }

        let collected = self.block.as_ref().map_or(0, |block| block.fragments.len());
        if collected + header.length > MAX_HEADER_BLOCK_SIZE {
            return Err(RewriteError::HeaderBlockTooLarge { stream_id });
        }
        self.state = State::HeaderPayload { header };
        if header.length == 0 {
            self.finish_header_frame(header, output)?;
        }
        Ok(())
    }

    fn read_header_payload(
        &mut self,
        header: FrameHeader,
        input: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<usize, RewriteError> {
        let count = (header.length - self.payload.len()).min(input.len());
        self.payload.extend_from_slice(&input[..count]);
        if self.payload.len() == header.length {
            self.finish_header_frame(header, output)?;
        }
        Ok(count)
    }

    /// Adds the payload of a complete HEADERS or CONTINUATION frame to the header block, and
    /// rewrites the block once the frame carries END_HEADERS.
    fn finish_header_frame(
        &mut self,
        header: FrameHeader,
        output: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        self.state = State::FrameHeader;
        let payload = std::mem::take(&mut self.payload);
        let block = match self.block.take() {
            Some(mut block) => {
                block.fragments.extend_from_slice(&payload);
                block
            }
            None => HeaderBlock {
                stream_id: header.stream_id,
                end_stream: header.flags & END_STREAM != 0,
                fragments: header_block_fragment(header, &payload)?.to_vec(),
            },
        };
        // Keep the allocation for the next frame.
        self.payload = payload;
        self.payload.clear();

        if header.flags & END_HEADERS == 0 {
            self.block = Some(block);
            return Ok(());
        }
        let forwarded = self.rewriter.rewrite(&block.fragments)?;
        write_header_block(block.stream_id, block.end_stream, forwarded, output);
        Ok(())
    }
}

// === impl FrameHeader ===

impl FrameHeader {
    pub(super) fn parse(bytes: [u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, frame_type, flags, s0, s1, s2, s3] = bytes;
        Self {
            length: u32::from_be_bytes([0, l0, l1, l2]) as usize,
            frame_type,
            flags,
            // The high bit is reserved and ignored on receipt.
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & STREAM_ID_MASK,
        }
    }

    /// Appends the header. `length` must fit in 24 bits, as it does for every frame this module
    /// builds because none exceeds [`MAX_FRAME_SIZE`].
    pub(super) fn write(&self, output: &mut Vec<u8>) {
        let [_, l0, l1, l2] = u32::try_from(self.length).unwrap_or(u32::MAX).to_be_bytes();
        output.extend_from_slice(&[l0, l1, l2, self.frame_type, self.flags]);
        output.extend_from_slice(&self.stream_id.to_be_bytes());
    }
}

/// Returns the header block fragment of a HEADERS frame: its payload without the pad length,
/// priority fields and padding.
fn header_block_fragment(header: FrameHeader, payload: &[u8]) -> Result<&[u8], RewriteError> {
    let invalid = || RewriteError::InvalidPadding {
        stream_id: header.stream_id,
    };
    let mut start = 0;
    let mut end = payload.len();
    if header.flags & PADDED != 0 {
        let pad_length = *payload.first().ok_or_else(invalid)?;
        start = 1;
        end = end
            .checked_sub(usize::from(pad_length))
            .ok_or_else(invalid)?;
    }
    if header.flags & PRIORITY != 0 {
        start += PRIORITY_FIELDS_LEN;
    }
    payload.get(start..end).ok_or_else(invalid)
}

/// Appends `block` as a HEADERS frame on `stream_id`, followed by CONTINUATION frames for what
/// does not fit in [`MAX_FRAME_SIZE`]. The HEADERS frame carries END_STREAM when `end_stream` is
/// set, and the last frame carries END_HEADERS.
pub(super) fn write_header_block(
    stream_id: u32,
    end_stream: bool,
    block: &[u8],
    output: &mut Vec<u8>,
) {
    let first_length = block.len().min(MAX_FRAME_SIZE);
    let (first, mut rest) = block.split_at(first_length);
    let mut header = FrameHeader {
        length: first.len(),
        frame_type: HEADERS,
        flags: if end_stream { END_STREAM } else { 0 },
        stream_id,
    };
    let mut fragment = first;
    loop {
        if rest.is_empty() {
            header.flags |= END_HEADERS;
        }
        header.write(output);
        output.extend_from_slice(fragment);
        if rest.is_empty() {
            return;
        }

        let length = rest.len().min(MAX_FRAME_SIZE);
        (fragment, rest) = rest.split_at(length);
        header = FrameHeader {
            length,
            frame_type: CONTINUATION,
            flags: 0,
            stream_id,
        };
    }
}

/// Output size after which [`FrameFilter::push`] stops consuming input. Tiny header blocks can
/// expand to kilobytes each, and this bounds the output of one call to about this size plus one
/// header block.
const OUTPUT_SOFT_LIMIT: usize = 64 * 1024;
/// The client connection preface (RFC 9113, section 3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(super) const FRAME_HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE of the server: the HTTP/2 initial value, which hyper 1 keeps unless
/// tonic's `max_frame_size` is set. The agent does not set it.
pub(super) const MAX_FRAME_SIZE: usize = 16_384;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;
/// Stream dependency (4 bytes) and weight (1 byte).
const PRIORITY_FIELDS_LEN: usize = 5;

pub(super) const HEADERS: u8 = 0x1;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY: u8 = 0x20;
