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
/// connection in order. The output uses no dynamic table at all: every field is a literal
/// without indexing. h2's decoder table therefore stays empty, and no output block depends on
/// an earlier one.
pub(super) struct HeaderRewriter {
    decoder: Decoder<'static>,
    /// Whether this connection already logged a replaced `:authority`.
    logged_replacement: bool,
}

// === impl HeaderRewriter ===

impl HeaderRewriter {
    pub(super) fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            decoder,
            logged_replacement: false,
        }
    }

    /// Decodes `block`, replaces an invalid `:authority` with `localhost` and returns the block
    /// encoded again.
    ///
    /// # Errors
    ///
    /// [`RewriteError::Hpack`] when `block` is not valid HPACK for the current dynamic table,
    /// [`RewriteError::HeaderListTooLarge`] when it decodes to more than
    /// [`MAX_HEADER_LIST_SIZE`] bytes.
    pub(super) fn rewrite(&mut self, block: &[u8]) -> Result<Vec<u8>, RewriteError> {
        let mut encoded = Vec::with_capacity(block.len() + REPLACEMENT.len());
        let mut list_size = 0_usize;
        let mut replaced = None;
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
                encode_literal(&name, &value, &mut encoded);
            })
            .map_err(RewriteError::Hpack)?;

        if list_size > MAX_HEADER_LIST_SIZE {
            return Err(RewriteError::HeaderListTooLarge);
        }
        if let Some(authority) = replaced {
            self.log_replacement(&authority);
        }
        Ok(encoded)
    }

    fn log_replacement(&mut self, authority: &str) {
        if !self.logged_replacement {
            self.logged_replacement = true;
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
/// Bytes HPACK adds to each field's name and value lengths when sizing tables and lists.
const FIELD_OVERHEAD: usize = 32;
/// First byte of a literal without indexing whose name follows as a string (index 0).
const LITERAL_WITHOUT_INDEXING: u8 = 0x00;
/// String lengths use a 7-bit prefix, below the Huffman flag.
const STRING_LENGTH_PREFIX_BITS: u8 = 7;
