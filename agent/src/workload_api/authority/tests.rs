use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use loona_hpack::encoder::encode_integer_into;
use loona_hpack::{Decoder, Encoder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use super::frame::{
    CONTINUATION, END_HEADERS, END_STREAM, FRAME_HEADER_LEN, FrameFilter, FrameHeader, HEADERS,
    MAX_FRAME_SIZE, PADDED, PREFACE, PRIORITY, PUSH_PROMISE,
};
use super::*;
use crate::workload_api::test_support::TestServer;

type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

const SOCKET_AUTHORITY: &str = "tmp%2Fsignet%2Fapi.sock";
const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;
const WINDOW_UPDATE: u8 = 0x8;
const RST_STREAM: u8 = 0x3;
const SETTINGS_ACK: u8 = 0x1;
/// Chunk sizes the client's bytes arrive in: byte by byte, split frame headers, whole frames.
const CHUNK_SIZES: [usize; 3] = [1, 7, 4096];
/// Read buffer sizes of the HTTP/2 server: smaller than any frame, and larger than the input.
const READ_SIZES: [usize; 2] = [3, 64 * 1024];

/// A reader that returns at most `chunk` bytes per read.
struct ChunkedReader {
    data: Vec<u8>,
    position: usize,
    chunk: usize,
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let end = self
            .data
            .len()
            .min(self.position + self.chunk)
            .min(self.position + buf.remaining());
        buf.put_slice(&self.data[self.position..end]);
        self.position = end;
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Frame {
    header: FrameHeader,
    payload: Vec<u8>,
}

/// A header block as the HTTP/2 server decodes it.
#[derive(Debug, PartialEq, Eq)]
struct DecodedBlock {
    stream_id: u32,
    end_stream: bool,
    headers: HeaderList,
}

fn grpc_request(authority: &str) -> HeaderList {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("workload.spiffe.io", "true"),
    ]
    .into_iter()
    .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
    .collect()
}

fn with_authority(headers: &HeaderList, authority: &str) -> HeaderList {
    headers
        .iter()
        .map(|(name, value)| {
            if name == b":authority" {
                (name.clone(), authority.as_bytes().to_vec())
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect()
}

fn encode(encoder: &mut Encoder<'_>, headers: &HeaderList) -> Vec<u8> {
    encoder.encode(headers.iter().map(|(name, value)| (&name[..], &value[..])))
}

/// Builds one frame byte for byte, without the code under test.
fn frame(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![length[1], length[2], length[3], frame_type, flags];
    bytes.extend_from_slice(&stream_id.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Builds a HEADERS frame carrying all of `block`, with END_HEADERS.
fn headers_frame(stream_id: u32, end_stream: bool, block: &[u8]) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream_id, block)
}

/// Builds a HEADERS frame and CONTINUATION frames of at most `fragment_size` bytes each.
fn split_headers_frames(stream_id: u32, block: &[u8], fragment_size: usize) -> Vec<u8> {
    let fragments: Vec<&[u8]> = block.chunks(fragment_size).collect();
    let mut bytes = Vec::new();
    for (index, fragment) in fragments.iter().enumerate() {
        let frame_type = if index == 0 { HEADERS } else { CONTINUATION };
        let flags = if index + 1 == fragments.len() {
            END_HEADERS
        } else {
            0
        };
        bytes.extend(frame(frame_type, flags, stream_id, fragment));
    }
    bytes
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    for frame in frames {
        bytes.extend_from_slice(frame);
    }
    bytes
}

/// Appends an HPACK string literal without Huffman coding.
fn hpack_string(value: &[u8], block: &mut Vec<u8>) {
    encode_integer_into(value.len(), 7, 0, block).unwrap();
    block.extend_from_slice(value);
}

/// Appends a literal with incremental indexing whose name is static table entry `name_index`.
fn hpack_indexed_name(name_index: usize, value: &[u8], block: &mut Vec<u8>) {
    encode_integer_into(name_index, 6, 0x40, block).unwrap();
    hpack_string(value, block);
}

/// Appends a literal with incremental indexing whose name is a literal too.
fn hpack_new_name(name: &[u8], value: &[u8], block: &mut Vec<u8>) {
    block.push(0x40);
    hpack_string(name, block);
    hpack_string(value, block);
}

/// Appends a field taken whole from the static or dynamic table.
fn hpack_indexed(index: usize, block: &mut Vec<u8>) {
    encode_integer_into(index, 7, 0x80, block).unwrap();
}

/// Runs `input` through [`AuthorityRewrite`], arriving in pieces of `chunk` bytes and read with
/// a buffer of `read_size` bytes, until the end of the stream.
async fn rewrite(input: &[u8], chunk: usize, read_size: usize) -> io::Result<Vec<u8>> {
    let reader = ChunkedReader {
        data: input.to_vec(),
        position: 0,
        chunk,
    };
    let mut connection = AuthorityRewrite::new(reader);
    let mut output = Vec::new();
    let mut buffer = vec![0; read_size];
    loop {
        let count = connection.read(&mut buffer).await?;
        if count == 0 {
            return Ok(output);
        }
        output.extend_from_slice(&buffer[..count]);
    }
}

/// Runs all of `input` through a [`FrameFilter`], offering it whole to every call.
fn filter(input: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let mut filter = FrameFilter::new();
    let mut output = Vec::new();
    let mut step_output = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let consumed = filter.push(rest, &mut step_output)?;
        output.append(&mut step_output);
        rest = &rest[consumed..];
    }
    Ok(output)
}

/// Splits the server's view of the connection into frames, after checking the preface.
fn parse_frames(output: &[u8]) -> Vec<Frame> {
    assert_eq!(&output[..PREFACE.len()], PREFACE, "preface forwarded");
    let mut rest = &output[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let header_bytes: [u8; FRAME_HEADER_LEN] = rest[..FRAME_HEADER_LEN].try_into().unwrap();
        let header = FrameHeader::parse(header_bytes);
        let end = FRAME_HEADER_LEN + header.length;
        frames.push(Frame {
            header,
            payload: rest[FRAME_HEADER_LEN..end].to_vec(),
        });
        rest = &rest[end..];
    }
    frames
}

/// Decodes the header blocks of `frames` in order with one decoder, as h2 does, and checks that
/// they use only the frame layout the rewriter promises.
fn decode_blocks(frames: &[Frame]) -> Vec<DecodedBlock> {
    let mut decoder = Decoder::new();
    let mut blocks = Vec::new();
    let mut open: Option<(u32, bool, Vec<u8>)> = None;
    for frame in frames {
        let header = frame.header;
        assert!(
            header.length <= MAX_FRAME_SIZE,
            "frame within the maximum size"
        );
        match header.frame_type {
            HEADERS => {
                assert!(open.is_none(), "HEADERS inside a header block");
                assert_eq!(
                    header.flags & (PADDED | PRIORITY),
                    0,
                    "no padding or priority"
                );
                let end_stream = header.flags & END_STREAM != 0;
                open = Some((header.stream_id, end_stream, frame.payload.clone()));
            }
            CONTINUATION => {
                let block = open.as_mut().expect("CONTINUATION inside a header block");
                assert_eq!(
                    block.0, header.stream_id,
                    "CONTINUATION on the block's stream"
                );
                block.2.extend_from_slice(&frame.payload);
            }
            _ => {
                assert!(open.is_none(), "frame inside a header block");
                continue;
            }
        }
        if header.flags & END_HEADERS != 0 {
            let (stream_id, end_stream, block) = open.take().unwrap();
            blocks.push(DecodedBlock {
                stream_id,
                end_stream,
                headers: decoder.decode(&block).unwrap(),
            });
        }
    }
    assert!(open.is_none(), "last header block complete");
    blocks
}

fn frames_other_than_headers(frames: Vec<Frame>) -> Vec<Frame> {
    frames
        .into_iter()
        .filter(|frame| ![HEADERS, CONTINUATION].contains(&frame.header.frame_type))
        .collect()
}

/// Runs `input` in every chunking and read size and returns the decoded header blocks, after
/// checking that every chunking gives the same output.
async fn decoded_in_all_chunkings(input: &[u8]) -> (Vec<DecodedBlock>, Vec<Frame>) {
    let expected = rewrite(input, input.len(), 64 * 1024).await.unwrap();
    for chunk in CHUNK_SIZES {
        for read_size in READ_SIZES {
            let output = rewrite(input, chunk, read_size).await.unwrap();
            assert_eq!(
                output, expected,
                "output with chunk {chunk} and read size {read_size}"
            );
        }
    }
    let frames = parse_frames(&expected);
    (decode_blocks(&frames), frames_other_than_headers(frames))
}

#[tokio::test]
async fn socket_path_authority_replaced() {
    let request = grpc_request(SOCKET_AUTHORITY);
    let mut encoder = Encoder::new();
    let block = encode(&mut encoder, &request);
    let settings_ack = frame(SETTINGS, 0x1, 0, &[]);
    let window_update = frame(WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]);
    let data = frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 2, 0x0a, 0x00]);
    let input = connection(&[
        settings_ack.clone(),
        window_update.clone(),
        headers_frame(1, false, &block),
        data.clone(),
    ]);

    let (blocks, others) = decoded_in_all_chunkings(&input).await;

    assert_eq!(
        blocks,
        [DecodedBlock {
            stream_id: 1,
            end_stream: false,
            headers: with_authority(&request, "localhost"),
        }]
    );
    let raw_others: Vec<Vec<u8>> = others
        .iter()
        .map(|frame| {
            let mut bytes = Vec::new();
            frame.header.write(&mut bytes);
            bytes.extend_from_slice(&frame.payload);
            bytes
        })
        .collect();
    let initial_settings = frame(SETTINGS, 0, 0, &[]);
    assert_eq!(
        raw_others,
        [initial_settings, settings_ack, window_update, data]
    );
}

#[tokio::test]
async fn raw_path_and_empty_authority_replaced() {
    for authority in ["/tmp/signet/api.sock", "", "unix:/tmp/api.sock", "a b"] {
        let request = grpc_request(authority);
        let block = encode(&mut Encoder::new(), &request);
        let input = connection(&[headers_frame(1, true, &block)]);

        let (blocks, _) = decoded_in_all_chunkings(&input).await;

        assert_eq!(blocks.len(), 1, "one block for {authority:?}");
        assert_eq!(
            blocks[0].headers,
            with_authority(&request, "localhost"),
            "{authority:?}"
        );
        assert!(blocks[0].end_stream, "END_STREAM kept for {authority:?}");
    }
}

#[tokio::test]
async fn valid_authority_unchanged() {
    for authority in [
        "localhost",
        "localhost:8081",
        "127.0.0.1:443",
        "[::1]:8081",
        "api.sock",
    ] {
        let request = grpc_request(authority);
        let block = encode(&mut Encoder::new(), &request);
        let input = connection(&[headers_frame(3, false, &block)]);

        let (blocks, _) = decoded_in_all_chunkings(&input).await;

        assert_eq!(blocks.len(), 1, "one block for {authority}");
        assert_eq!(blocks[0].headers, request, "headers for {authority}");
        assert_eq!(blocks[0].stream_id, 3, "stream for {authority}");
    }
}

#[tokio::test]
async fn request_without_authority_unchanged() {
    let request: HeaderList = grpc_request("unused")
        .into_iter()
        .filter(|(name, _)| name != b":authority")
        .collect();
    let block = encode(&mut Encoder::new(), &request);
    let input = connection(&[headers_frame(1, false, &block)]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;

    assert_eq!(blocks[0].headers, request);
}

#[tokio::test]
async fn padded_priority_headers_stripped() {
    let request = grpc_request(SOCKET_AUTHORITY);
    let block = encode(&mut Encoder::new(), &request);
    let padding = 13;
    let mut payload = vec![padding];
    payload.extend_from_slice(&[0x80, 0, 0, 0, 15]);
    payload.extend_from_slice(&block);
    payload.extend(vec![0; usize::from(padding)]);
    let flags = PADDED | PRIORITY | END_HEADERS | END_STREAM;
    let input = connection(&[frame(HEADERS, flags, 1, &payload)]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;

    assert_eq!(
        blocks,
        [DecodedBlock {
            stream_id: 1,
            end_stream: true,
            headers: with_authority(&request, "localhost"),
        }]
    );
}

#[tokio::test]
async fn padded_headers_without_priority_stripped() {
    let request = grpc_request(SOCKET_AUTHORITY);
    let block = encode(&mut Encoder::new(), &request);
    let mut payload = vec![2];
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0, 0]);
    let input = connection(&[frame(HEADERS, PADDED | END_HEADERS, 1, &payload)]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;

    assert_eq!(blocks[0].headers, with_authority(&request, "localhost"));
}

#[tokio::test]
async fn continuation_frames_joined() {
    let request = grpc_request(SOCKET_AUTHORITY);
    let block = encode(&mut Encoder::new(), &request);
    let input = connection(&[split_headers_frames(5, &block, 10)]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;

    assert_eq!(
        blocks,
        [DecodedBlock {
            stream_id: 5,
            end_stream: false,
            headers: with_authority(&request, "localhost"),
        }]
    );
}

#[tokio::test]
async fn large_block_split_into_continuations() {
    let mut request = grpc_request(SOCKET_AUTHORITY);
    request.push((b"x-large".to_vec(), vec![b'a'; 40_000]));
    let block = encode(&mut Encoder::new(), &request);
    let input = connection(&[split_headers_frames(1, &block, MAX_FRAME_SIZE)]);

    let output = rewrite(&input, 4096, 64 * 1024).await.unwrap();
    let frames = parse_frames(&output);

    let types: Vec<u8> = frames.iter().map(|frame| frame.header.frame_type).collect();
    assert_eq!(types, [SETTINGS, HEADERS, CONTINUATION, CONTINUATION]);
    assert_eq!(frames[1].header.length, MAX_FRAME_SIZE);
    assert_eq!(frames[1].header.flags & END_HEADERS, 0);
    assert_eq!(frames[3].header.flags, END_HEADERS);
    let blocks = decode_blocks(&frames);
    assert_eq!(blocks[0].headers, with_authority(&request, "localhost"));
}

#[tokio::test]
async fn dynamic_table_followed_across_blocks() {
    // Stream 1 adds :authority and then :path to the client's dynamic table, its trailers add
    // x-trailer, and stream 3 refers to :authority and :path by index alone.
    let path = b"/SpiffeWorkloadAPI/FetchX509SVID";
    let mut first = vec![0x83, 0x86];
    hpack_indexed_name(1, SOCKET_AUTHORITY.as_bytes(), &mut first);
    hpack_indexed_name(4, path, &mut first);
    let mut trailers = Vec::new();
    hpack_new_name(b"x-trailer", b"1", &mut trailers);
    let mut second = vec![0x83, 0x86];
    hpack_indexed(63, &mut second);
    hpack_indexed(64, &mut second);
    let data = frame(DATA, 0, 1, &[0, 0, 0, 0, 0]);
    let input = connection(&[
        headers_frame(1, false, &first),
        data,
        headers_frame(1, true, &trailers),
        headers_frame(3, false, &second),
    ]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;

    let request = |first_field: &[u8], second_field: &[u8]| -> HeaderList {
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (first_field.to_vec(), b"".to_vec()),
            (second_field.to_vec(), b"".to_vec()),
        ]
    };
    let mut expected_first = request(b":authority", b":path");
    expected_first[2].1 = b"localhost".to_vec();
    expected_first[3].1 = path.to_vec();
    let mut expected_second = request(b":path", b":authority");
    expected_second[2].1 = path.to_vec();
    expected_second[3].1 = b"localhost".to_vec();
    assert_eq!(
        blocks,
        [
            DecodedBlock {
                stream_id: 1,
                end_stream: false,
                headers: expected_first,
            },
            DecodedBlock {
                stream_id: 1,
                end_stream: true,
                headers: vec![(b"x-trailer".to_vec(), b"1".to_vec())],
            },
            DecodedBlock {
                stream_id: 3,
                end_stream: false,
                headers: expected_second,
            },
        ]
    );
}

#[tokio::test]
async fn output_blocks_use_no_dynamic_table() {
    let mut encoder = Encoder::new();
    let first = encode(&mut encoder, &grpc_request(SOCKET_AUTHORITY));
    let second = encode(&mut encoder, &grpc_request(SOCKET_AUTHORITY));
    let input = connection(&[
        headers_frame(1, false, &first),
        headers_frame(3, false, &second),
    ]);

    let output = rewrite(&input, 4096, 64 * 1024).await.unwrap();
    let frames = parse_frames(&output);

    // Each block decodes on its own, so h2's dynamic table never has to match ours.
    for frame in frames
        .iter()
        .filter(|frame| frame.header.frame_type == HEADERS)
    {
        let headers = Decoder::new().decode(&frame.payload).unwrap();
        assert_eq!(headers, grpc_request("localhost"));
    }
}

#[tokio::test]
async fn expanding_blocks_filtered_in_steps() {
    // The socket path as :authority makes the filter encode every block again. A 4000-byte
    // field enters the dynamic table, then 100 one-byte blocks each refer to it.
    let large_value = vec![b'a'; 4000];
    let mut first = Vec::new();
    hpack_indexed_name(1, SOCKET_AUTHORITY.as_bytes(), &mut first);
    hpack_new_name(b"x-large", &large_value, &mut first);
    let mut frames = vec![headers_frame(1, true, &first)];
    frames.extend((0..100).map(|index| headers_frame(3 + 2 * index, true, &[0xbe])));
    let input = connection(&frames);

    let mut output = Vec::new();
    let consumed = FrameFilter::new().push(&input, &mut output).unwrap();
    let (blocks, _) = decoded_in_all_chunkings(&input).await;

    assert!(consumed < input.len(), "first call stops early");
    assert!(
        output.len() < 80 * 1024,
        "first call output {} bytes",
        output.len()
    );
    assert_eq!(blocks.len(), 101);
    let large_field = vec![(b"x-large".to_vec(), large_value)];
    assert_eq!(blocks[0].headers[0].1, b"localhost");
    assert_eq!(blocks[0].headers[1..], large_field);
    assert!(blocks[1..].iter().all(|block| block.headers == large_field));
}

#[tokio::test]
async fn valid_authority_blocks_forwarded_byte_for_byte() {
    let mut encoder = Encoder::new();
    let first = encode(&mut encoder, &grpc_request("localhost"));
    let second = encode(&mut encoder, &grpc_request("localhost"));
    let input = connection(&[
        headers_frame(1, false, &first),
        headers_frame(3, false, &second),
    ]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;
    let output = rewrite(&input, input.len(), 64 * 1024).await.unwrap();

    assert_eq!(output, input);
    assert_eq!(blocks.len(), 2);
    assert!(
        blocks
            .iter()
            .all(|block| block.headers == grpc_request("localhost"))
    );
}

#[tokio::test]
async fn blocks_after_first_replacement_encoded_again() {
    // The client's encoder indexes fields of every block, so the third block refers to entries
    // that the second block, which h2 receives encoded again, added to the client's table.
    let mut encoder = Encoder::new();
    let valid = grpc_request("localhost");
    let first = encode(&mut encoder, &valid);
    let second = encode(&mut encoder, &grpc_request(SOCKET_AUTHORITY));
    let third = encode(&mut encoder, &grpc_request(SOCKET_AUTHORITY));
    let input = connection(&[
        headers_frame(1, false, &first),
        headers_frame(3, false, &second),
        headers_frame(5, false, &third),
    ]);

    let (blocks, _) = decoded_in_all_chunkings(&input).await;
    let output = rewrite(&input, input.len(), 64 * 1024).await.unwrap();
    let frames: Vec<Frame> = parse_frames(&output)
        .into_iter()
        .filter(|frame| frame.header.frame_type == HEADERS)
        .collect();

    let headers: Vec<&HeaderList> = blocks.iter().map(|block| &block.headers).collect();
    assert_eq!(headers, [&valid, &valid, &valid]);
    assert_eq!(frames[0].payload, first, "first block forwarded as sent");
    for frame in &frames[1..] {
        let decoded = Decoder::new().decode(&frame.payload).unwrap();
        assert_eq!(decoded, valid, "later blocks decode on their own");
    }
}

#[tokio::test]
async fn frames_without_header_blocks_pass_through() {
    let mut payload = vec![0; 100_000];
    StdRng::seed_from_u64(1).fill(&mut payload[..]);
    let input = connection(&[
        frame(DATA, 0, 1, &payload),
        frame(DATA, END_STREAM, 1, &[]),
        frame(0x2, 0, 1, &[0, 0, 0, 0, 16]),
        frame(0x6, 0, 0, &[1; 8]),
        frame(0xfa, 0xff, 7, b"unknown type"),
    ]);

    for chunk in CHUNK_SIZES {
        for read_size in READ_SIZES {
            let output = rewrite(&input, chunk, read_size).await.unwrap();
            assert!(output == input, "chunk {chunk}, read size {read_size}");
        }
    }
}

#[tokio::test]
async fn non_http2_bytes_pass_through() {
    let inputs: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n\x00\x00\x01\x01\x04",
        b"",
    ];
    for input in inputs {
        for chunk in CHUNK_SIZES {
            let output = rewrite(input, chunk, 5).await.unwrap();
            assert_eq!(output, input, "chunk {chunk}");
        }
    }
}

#[tokio::test]
async fn end_of_stream_inside_header_block_ends_read() {
    let block = encode(&mut Encoder::new(), &grpc_request(SOCKET_AUTHORITY));
    let input = connection(&[headers_frame(1, false, &block)]);
    let truncated = &input[..input.len() - 3];

    let output = rewrite(truncated, 7, 64 * 1024).await.unwrap();

    let frames = parse_frames(&output);
    assert_eq!(frames.len(), 1, "only SETTINGS forwarded");
    assert_eq!(frames[0].header.frame_type, SETTINGS);
}

#[tokio::test]
async fn invalid_hpack_fails_every_later_read() {
    let mut block = Vec::new();
    hpack_indexed(70, &mut block);
    let input = connection(&[headers_frame(1, false, &block), frame(DATA, 0, 1, b"x")]);
    let reader = ChunkedReader {
        data: input,
        position: 0,
        chunk: 4096,
    };
    let mut connection = AuthorityRewrite::new(reader);
    let mut buffer = vec![0; 4096];

    let forwarded = connection.read(&mut buffer).await.unwrap();
    let first_error = connection.read(&mut buffer).await.unwrap_err();
    let second_error = connection.read(&mut buffer).await.unwrap_err();

    assert_eq!(
        forwarded,
        PREFACE.len() + FRAME_HEADER_LEN,
        "preface and SETTINGS"
    );
    assert_eq!(first_error.kind(), io::ErrorKind::InvalidData);
    assert_eq!(second_error.kind(), io::ErrorKind::InvalidData);
    assert!(
        first_error
            .to_string()
            .contains("invalid HPACK header block"),
        "{first_error}"
    );
}

#[test]
fn truncated_hpack_rejected() {
    let block = [0x41, 0x0a, b'a'];
    let result = filter(&connection(&[headers_frame(1, false, &block)]));
    assert!(matches!(result, Err(RewriteError::Hpack(_))), "{result:?}");
}

#[test]
fn oversized_table_size_update_rejected() {
    let mut block = Vec::new();
    encode_integer_into(4097, 5, 0x20, &mut block).unwrap();
    block.push(0x82);
    let result = filter(&connection(&[headers_frame(1, false, &block)]));
    assert!(matches!(result, Err(RewriteError::Hpack(_))), "{result:?}");
}

#[test]
fn oversized_header_block_rejected() {
    let fragment = vec![0x82; MAX_FRAME_SIZE];
    let mut frames: Vec<Vec<u8>> = vec![frame(HEADERS, 0, 1, &fragment)];
    frames.extend((0..4).map(|_| frame(CONTINUATION, 0, 1, &fragment)));

    let result = filter(&connection(&frames));

    assert!(
        matches!(
            result,
            Err(RewriteError::HeaderBlockTooLarge { stream_id: 1 })
        ),
        "{result:?}"
    );
}

#[test]
fn header_list_expansion_rejected() {
    // One 4000-byte entry in the dynamic table, then 20 references to it in a 20-byte block.
    let mut first = Vec::new();
    hpack_new_name(b"x-large", &[b'a'; 4000], &mut first);
    let second = vec![0xbe; 20];
    let input = connection(&[
        headers_frame(1, true, &first),
        headers_frame(3, true, &second),
    ]);

    let result = filter(&input);

    assert!(
        matches!(result, Err(RewriteError::HeaderListTooLarge)),
        "{result:?}"
    );
}

#[test]
fn interrupted_header_block_rejected() {
    let block = encode(&mut Encoder::new(), &grpc_request(SOCKET_AUTHORITY));
    let (first, rest) = block.split_at(5);
    let interruptions = [
        frame(DATA, 0, 1, b"x"),
        frame(CONTINUATION, END_HEADERS, 3, rest),
        frame(HEADERS, END_HEADERS, 3, rest),
    ];
    for interruption in interruptions {
        let input = connection(&[frame(HEADERS, 0, 1, first), interruption]);

        let result = filter(&input);

        assert!(
            matches!(
                result,
                Err(RewriteError::InterruptedHeaderBlock {
                    block_stream_id: 1,
                    ..
                })
            ),
            "{result:?}"
        );
    }
}

#[test]
fn continuation_without_headers_rejected() {
    let block = encode(&mut Encoder::new(), &grpc_request(SOCKET_AUTHORITY));
    let result = filter(&connection(&[frame(CONTINUATION, END_HEADERS, 1, &block)]));
    assert!(
        matches!(
            result,
            Err(RewriteError::UnexpectedContinuation { stream_id: 1 })
        ),
        "{result:?}"
    );
}

#[test]
fn push_promise_rejected() {
    let result = filter(&connection(&[frame(
        PUSH_PROMISE,
        END_HEADERS,
        1,
        &[0, 0, 0, 2],
    )]));
    assert!(
        matches!(result, Err(RewriteError::PushPromise { stream_id: 1 })),
        "{result:?}"
    );
}

#[test]
fn invalid_padding_rejected() {
    let payloads: [(u8, &[u8]); 4] = [
        (PADDED, &[]),
        (PADDED, &[1]),
        (PADDED, &[5, 0x82, 0, 0, 0]),
        (PADDED | PRIORITY, &[0, 0, 0, 0]),
    ];
    for (flags, payload) in payloads {
        let input = connection(&[frame(HEADERS, flags | END_HEADERS, 1, payload)]);

        let result = filter(&input);

        assert!(
            matches!(result, Err(RewriteError::InvalidPadding { stream_id: 1 })),
            "{payload:?}: {result:?}"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..2000 {
        let mut input = if rng.random_bool(0.8) {
            PREFACE.to_vec()
        } else {
            Vec::new()
        };
        let length = rng.random_range(0..2048);
        input.extend((0..length).map(|_| rng.random::<u8>()));
        feed_in_random_chunks(&mut rng, &input);
    }
}

#[test]
fn random_header_frames_never_panic() {
    let types = [DATA, HEADERS, CONTINUATION, PUSH_PROMISE, SETTINGS, 0xff];
    let mut rng = StdRng::seed_from_u64(0xf4a3e);
    for _ in 0..2000 {
        let mut input = PREFACE.to_vec();
        for _ in 0..rng.random_range(1..6) {
            let frame_type = types[rng.random_range(0..types.len())];
            let payload: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            input.extend(frame(
                frame_type,
                rng.random(),
                rng.random_range(0..4),
                &payload,
            ));
        }
        feed_in_random_chunks(&mut rng, &input);
    }
}

/// Feeds `input` to a [`FrameFilter`] in random pieces until it fails or the input ends.
fn feed_in_random_chunks(rng: &mut StdRng, input: &[u8]) {
    let mut filter = FrameFilter::new();
    let mut output = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let count = rng.random_range(1..=rest.len());
        match filter.push(&rest[..count], &mut output) {
            Ok(consumed) => rest = &rest[consumed..],
            Err(_) => return,
        }
        output.clear();
    }
}

/// Sends a FetchJWTSVID request with `authority` over a hand-built HTTP/2 connection to a real
/// Workload API server, and returns the response header blocks of the stream.
async fn call_with_authority(server: &TestServer, authority: &str) -> Vec<HeaderList> {
    let mut request = grpc_request(authority);
    request[2].1 = b"/SpiffeWorkloadAPI/FetchJWTSVID".to_vec();
    let block = encode(&mut Encoder::new(), &request);
    let input = connection(&[
        headers_frame(1, false, &block),
        frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]),
    ]);
    let mut stream = UnixStream::connect(&server.socket_path).await.unwrap();
    stream.write_all(&input).await.unwrap();

    let response = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream));
    response.await.expect("response within 10 s")
}

/// Reads frames until stream 1 ends, and decodes its header blocks.
async fn read_response(stream: &mut UnixStream) -> Vec<HeaderList> {
    let mut decoder = Decoder::new();
    let mut blocks = Vec::new();
    loop {
        let mut header_bytes = [0; FRAME_HEADER_LEN];
        stream.read_exact(&mut header_bytes).await.unwrap();
        let header = FrameHeader::parse(header_bytes);
        let mut payload = vec![0; header.length];
        stream.read_exact(&mut payload).await.unwrap();

        match header.frame_type {
            SETTINGS if header.flags & SETTINGS_ACK == 0 => {
                stream
                    .write_all(&frame(SETTINGS, SETTINGS_ACK, 0, &[]))
                    .await
                    .unwrap();
            }
            RST_STREAM => panic!("stream reset with error code {payload:?}"),
            HEADERS => {
                assert_eq!(
                    header.flags & END_HEADERS,
                    END_HEADERS,
                    "one-frame response headers"
                );
                blocks.push(decoder.decode(&payload).unwrap());
            }
            _ => {}
        }
        if header.stream_id == 1 && header.flags & END_STREAM != 0 {
            return blocks;
        }
    }
}

fn header_value<'a>(blocks: &'a [HeaderList], name: &str) -> Option<&'a [u8]> {
    blocks
        .iter()
        .flatten()
        .find(|(field, _)| field == name.as_bytes())
        .map(|(_, value)| value.as_slice())
}

#[tokio::test]
async fn server_answers_socket_path_authorities() {
    let server = TestServer::start().await;
    let raw_path = server.socket_path.to_str().unwrap().to_owned();
    let encoded_path = raw_path.trim_start_matches('/').replace('/', "%2F");

    for authority in [encoded_path.as_str(), raw_path.as_str(), "localhost"] {
        let blocks = call_with_authority(&server, authority).await;

        assert_eq!(
            header_value(&blocks, ":status"),
            Some(&b"200"[..]),
            "{authority}"
        );
        // The request has no audience, and only the FetchJWTSVID handler reports that, so the
        // message (percent-encoded, as gRPC sends it) proves the request reached the service.
        assert_eq!(
            header_value(&blocks, "grpc-status"),
            Some(&b"3"[..]),
            "{authority}"
        );
        assert_eq!(
            header_value(&blocks, "grpc-message"),
            Some(&b"audience%20must%20be%20specified"[..]),
            "{authority}"
        );
    }
    server.shutdown().await.unwrap();
}
