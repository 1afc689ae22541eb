//! HPACK decoding and encoding of header blocks, with `:authority` replaced where h2 would reject
//! it.

use std::borrow::Cow;

use http::uri::Authority;
use loona_hpack::Decoder;
use loona_hpack::encoder::encode_integer_into;
use tracing::debug;

use super::{MAX_HEADER_LIST_SIZE, RewriteError};

/// The HPACK state of one connection's client-to-server direction.
///
/// The decoder follows the client's dynamic table, so it must see every header block of the
/// connection in order. Until a block needs a replaced `:authority`, every block is forwarded as
/// the client encoded it, so h2's dynamic table stays in step with the client's. From that block
/// on, every block is encoded again with no dynamic table at all: every field is a literal
/// without indexing. h2's table then stops changing, and no later block refers to it.
pub(super) struct HeaderRewriter {
    decoder: Decoder<'static>,
    /// The block last encoded again, kept to reuse its allocation.
    encoded: Vec<u8>,
    /// Whether a block of this connection had its `:authority` replaced, so that every later
    /// block is encoded again.
    is_reencoding: bool,
}

// === impl HeaderRewriter ===

impl HeaderRewriter {
    pub(super) fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            decoder,
            encoded: Vec::new(),
            is_reencoding: false,
        }
    }

    /// Decodes `block` and returns the block to forward: `block` itself while no block of the
    /// connection had an invalid `:authority`, otherwise the block encoded again with the
    /// invalid `:authority` replaced by `localhost`.
    ///
    /// # Errors
    ///
    /// [`RewriteError::Hpack`] when `block` is not valid HPACK for the current dynamic table,
    /// [`RewriteError::HeaderListTooLarge`] when it decodes to more than
    /// [`MAX_HEADER_LIST_SIZE`] bytes.
    pub(super) fn rewrite<'a>(&'a mut self, block: &'a [u8]) -> Result<&'a [u8], RewriteError> {
        self.encoded.clear();
        self.encoded.shrink_to(RETAINED_CAPACITY);
        let encoded = &mut self.encoded;
        let mut list_size = 0_usize;
        let mut replaced = None;
        // Every field is encoded, because an invalid `:authority` may follow fields that were
        // decoded already, and decoding a block twice would change the dynamic table twice.
        self.decoder
            .decode_with_cb(block, |name, value| {
                // Keep decoding past the limit, because the dynamic table must stay in step with
                // the client's, but stop storing fields.
                list_size = list_size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
                if list_size > MAX_HEADER_LIST_SIZE {
                    return;
                }
                let value = if name.as_ref() == AUTHORITY && !is_valid_authority(&value) {
                    replaced = Some(String::from_utf8_lossy(&value).into_owned());
                    Cow::Borrowed(REPLACEMENT)
                } else {
                    value
                };
                encode_literal(&name, &value, encoded);
            })
            .map_err(RewriteError::Hpack)?;

        if list_size > MAX_HEADER_LIST_SIZE {
            return Err(RewriteError::HeaderListTooLarge);
        }
        if let Some(authority) = replaced {
            self.log_replacement(&authority);
        }
        if self.is_reencoding {
            Ok(&self.encoded)
        } else {
            Ok(block)
        }
    }

    /// Logs the first replacement of the connection and switches it to encoding every block
    /// again.
    fn log_replacement(&mut self, authority: &str) {
        if !self.is_reencoding {
            self.is_reencoding = true;
            debug!(
                authority,
                "Replacing an HTTP/2 :authority that is not a valid URI authority with localhost on this connection"
            );
        }
    }
}

/// Returns whether h2 accepts `value` as `:authority`. h2 0.4 parses it with the same
/// `http::uri::Authority` parser and rejects the request when that fails.
fn is_valid_authority(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

/// Appends a "literal header field without indexing" with a literal name (RFC 7541, section
/// 6.2.2), without Huffman coding.
fn encode_literal(name: &[u8], value: &[u8], output: &mut Vec<u8>) {
    output.push(LITERAL_WITHOUT_INDEXING);
    encode_string(name, output);
    encode_string(value, output);
}

fn encode_string(string: &[u8], output: &mut Vec<u8>) {
    // `Write` for `Vec<u8>` never returns an error.
    let _ = encode_integer_into(string.len(), STRING_LENGTH_PREFIX_BITS, 0, output);
    output.extend_from_slice(string);
}

const AUTHORITY: &[u8] = b":authority";
const REPLACEMENT: &[u8] = b"localhost";
/// SETTINGS_HEADER_TABLE_SIZE of the server, which bounds the client's dynamic table. tonic 0.14
/// has no option for it, so h2 keeps the HTTP/2 initial value.
const HEADER_TABLE_SIZE: usize = 4096;
/// Capacity of the encoding buffer kept between blocks. A larger buffer, left by a large block,
/// is released at the next block.
const RETAINED_CAPACITY: usize = 4096;
/// Bytes HPACK adds to each field's name and value lengths when sizing tables and lists.
const FIELD_OVERHEAD: usize = 32;
/// First byte of a literal without indexing whose name follows as a string (index 0).
const LITERAL_WITHOUT_INDEXING: u8 = 0x00;
/// String lengths use a 7-bit prefix, below the Huffman flag.
const STRING_LENGTH_PREFIX_BITS: u8 = 7;
