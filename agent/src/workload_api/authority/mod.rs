//! Replaces an invalid HTTP/2 `:authority` in requests before they reach the HTTP/2 server.
//!
//! gRPC C-core (grpcio 1.57 and later, used by py-spiffe) sends the percent-encoded socket path
//! as `:authority` for `unix:` targets, and grpc-java sends the raw path. Neither is a valid URI
//! authority, so h2 resets such streams with `PROTOCOL_ERROR`. [`AuthorityRewrite`] sits between
//! the socket and h2. It decodes every header block the client sends, to follow the client's
//! HPACK dynamic table. From the first block whose `:authority` `http::uri::Authority` rejects,
//! it replaces that `:authority` with `localhost` and encodes every block again. Before that
//! block, header blocks pass through unchanged. All other bytes, and everything the server
//! writes, pass through unchanged.

mod frame;
mod rewrite;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use loona_hpack::decoder::DecoderError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use self::frame::FrameFilter;

/// A client connection whose incoming header blocks get a valid `:authority`.
pub(super) struct AuthorityRewrite<S> {
    inner: S,
    filter: FrameFilter,
    /// Bytes read from `inner`, of which those from `input_start` to `input_end` are not
    /// filtered yet.
    input: Box<[u8]>,
    input_start: usize,
    input_end: usize,
    /// Filtered bytes not yet returned to the reader, from `output_start` on.
    output: Vec<u8>,
    output_start: usize,
    /// Set once the client sent something that cannot be rewritten. Every later read fails.
    error: Option<RewriteError>,
}

/// A client byte stream that cannot be rewritten, so the connection must close.
///
/// For a malformed header block h2 would close the connection too (COMPRESSION_ERROR or
/// PROTOCOL_ERROR). For the size limits h2 would refuse only the stream. Both limits are four
/// times h2's own header list limit, so they cut off only oversized or padded requests.
#[derive(Clone, Debug, thiserror::Error)]
pub(super) enum RewriteError {
    /// A header block is larger than [`MAX_HEADER_BLOCK_SIZE`].
    #[error(
        "an HTTP/2 header block on stream {stream_id} exceeds the limit of {} bytes",
        MAX_HEADER_BLOCK_SIZE
    )]
    HeaderBlockTooLarge {
        /// The stream of the header block.
        stream_id: u32,
    },
    /// A header block decodes to more than [`MAX_HEADER_LIST_SIZE`] bytes.
    #[error(
        "an HTTP/2 header list exceeds the limit of {} bytes",
        MAX_HEADER_LIST_SIZE
    )]
    HeaderListTooLarge,
    /// HPACK decoding failed.
    #[error("invalid HPACK header block: {0}")]
    Hpack(DecoderError),
    /// A HEADERS frame is shorter than its padding and priority fields.
    #[error(
        "the HTTP/2 HEADERS frame on stream {stream_id} is shorter than its padding and priority fields"
    )]
    InvalidPadding {
        /// The stream of the frame.
        stream_id: u32,
    },
    /// A frame other than the expected CONTINUATION arrived inside a header block.
    #[error(
        "an HTTP/2 frame of type {frame_type:#04x} on stream {stream_id} arrived inside the header block of stream {block_stream_id}"
    )]
    InterruptedHeaderBlock {
        /// The type of the frame.
        frame_type: u8,
        /// The stream of the frame.
        stream_id: u32,
        /// The stream whose header block is not complete yet.
        block_stream_id: u32,
    },
    /// A CONTINUATION frame arrived outside a header block.
    #[error("an HTTP/2 CONTINUATION frame on stream {stream_id} follows no HEADERS frame")]
    UnexpectedContinuation {
        /// The stream of the frame.
        stream_id: u32,
    },
    /// The client sent PUSH_PROMISE, which only servers may send.
    #[error("the client sent an HTTP/2 PUSH_PROMISE frame on stream {stream_id}")]
    PushPromise {
        /// The stream of the frame.
        stream_id: u32,
    },
}

// === impl AuthorityRewrite ===

impl<S> AuthorityRewrite<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            filter: FrameFilter::new(),
            input: vec![0; READ_SIZE].into_boxed_slice(),
            input_start: 0,
            input_end: 0,
            output: Vec::new(),
            output_start: 0,
            error: None,
        }
    }

    /// Moves filtered bytes into `buf`. Returns whether there were any.
    fn drain_output(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let pending = &self.output[self.output_start..];
        if pending.is_empty() {
            return false;
        }
        let count = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..count]);
        self.output_start += count;
        if self.output_start == self.output.len() {
            self.output.clear();
            self.output_start = 0;
        }
        true
    }

    fn filter_input(&mut self) {
        let input = &self.input[self.input_start..self.input_end];
        match self.filter.push(input, &mut self.output) {
            Ok(consumed) => self.input_start += consumed,
            Err(error) => {
                debug!(%error, "Closing a Workload API connection whose HTTP/2 request cannot be rewritten");
                self.error = Some(error);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Filtering a fragment of a header block produces no output, so filter and read again
        // until there is output, an error or the end of the stream.
        loop {
            if this.drain_output(buf) {
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = &this.error {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    error.clone(),
                )));
            }
            if this.input_start < this.input_end {
                this.filter_input();
                continue;
            }

            let mut input = ReadBuf::new(&mut this.input);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut input))?;
            let length = input.filled().len();
            if length == 0 {
                return Poll::Ready(Ok(()));
            }
            this.input_start = 0;
            this.input_end = length;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: fmt::Debug> fmt::Debug for AuthorityRewrite<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityRewrite")
            .field("inner", &self.inner)
            .field("pending_output", &(self.output.len() - self.output_start))
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Bytes read from the socket at a time. Frames other than header blocks are forwarded in pieces
/// of at most this size.
const READ_SIZE: usize = 16 * 1024;
/// Largest header block accepted, summed over HEADERS and CONTINUATION payloads with padding.
/// hyper 1 limits h2's decoded header list to 16 KiB unless tonic's `http2_max_header_list_size`
/// is set, and the agent does not set it. HPACK encoders use Huffman coding only where it is
/// shorter, so a block is rarely larger than its decoded list.
const MAX_HEADER_BLOCK_SIZE: usize = 64 * 1024;
/// Largest decoded header list accepted, counted as HPACK counts entry sizes (name and value
/// lengths plus 32 per field). It bounds the memory a small block of indexed fields can expand to.
const MAX_HEADER_LIST_SIZE: usize = 64 * 1024;

#[cfg(test)]
mod tests;
