//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally from whatever part of a
//! body has arrived: chunk sizes by `httparse::parse_chunk_size` (extensions skipped), the CRLF
//! after each chunk checked, and the trailer section read to its end (bounded) and set aside.

use std::ops::Range;

/// Where the decoder is in the coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunked body that breaks the coding: the client's fault (400) or main's (502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    MissingCrlf,
    BadTrailers,
    TrailersTooLarge,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "invalid chunk size line",
            ChunkError::MissingCrlf => "chunk data not followed by CRLF",
            ChunkError::BadTrailers => "invalid trailer section",
            ChunkError::TrailersTooLarge => "trailer section too large",
        })
    }
}

impl std::error::Error for ChunkError {}

/// One step of decoding: bytes of `input` used, and the part of `input` that is body data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub data: Option<Range<usize>>,
}

/// An incremental decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max_trailer_bytes: usize,
    /// The trailer section once read (its bytes, without the final CRLF), for the caller to
    /// parse or drop.
    trailers: Vec<u8>,
}

impl ChunkedDecoder {
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self { state: State::Size, max_trailer_bytes, trailers: Vec::new() }
    }

    /// The body has ended (the last chunk and the trailer section have been read).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer section's field lines, once done (empty when there were none).
    pub fn trailers(&self) -> &[u8] {
        &self.trailers
    }

    /// Decodes from the start of `input` (the bytes not consumed by earlier steps): at most one
    /// piece of data per step; `consumed == 0` with no data means more input is needed.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(Step { consumed: at, data: None }),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        at += n;
                        self.state = State::Trailers;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        at += n;
                        self.state = State::Data(size);
                    }
                    Ok(httparse::Status::Partial) => {
                        // A size line has no business being long: 16 hex digits and extensions.
                        if rest.len() > 4096 {
                            return Err(ChunkError::BadSize);
                        }
                        return Ok(Step { consumed: at, data: None });
                    }
                    Err(_) => return Err(ChunkError::BadSize),
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(Step { consumed: at, data: None });
                    }
                    let take = (rest.len() as u64).min(left) as usize;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Step { consumed: at + take, data: Some(at..at + take) });
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok(Step { consumed: at, data: None }),
                    _ => return Err(ChunkError::MissingCrlf),
                },
                State::Trailers => {
                    // The trailer section ends at an empty line: CRLF at once, or after fields.
                    if rest.starts_with(b"\r\n") {
                        self.state = State::Done;
                        return Ok(Step { consumed: at + 2, data: None });
                    }
                    let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if rest.len() > self.max_trailer_bytes {
                            return Err(ChunkError::TrailersTooLarge);
                        }
                        return Ok(Step { consumed: at, data: None });
                    };
                    if end + 4 > self.max_trailer_bytes {
                        return Err(ChunkError::TrailersTooLarge);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(&rest[..end + 4], &mut fields) {
                        Ok(httparse::Status::Complete(_)) => {}
                        _ => return Err(ChunkError::BadTrailers),
                    }
                    self.trailers = rest[..end + 2].to_vec();
                    self.state = State::Done;
                    return Ok(Step { consumed: at + end + 4, data: None });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; the body, or the error.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(1024);
        let (mut body, mut pending, mut fed) = (Vec::new(), Vec::new(), 0);
        loop {
            let step = d.step(&pending)?;
            if let Some(r) = &step.data {
                body.extend_from_slice(&pending[r.clone()]);
            }
            pending.drain(..step.consumed);
            if d.is_done() {
                return Ok((body, pending.is_empty()));
            }
            if step.consumed == 0 && step.data.is_none() {
                if fed >= input.len() {
                    return Ok((body, false));
                }
                let next = (fed + piece).min(input.len());
                pending.extend_from_slice(&input[fed..next]);
                fed = next;
            }
        }
    }

    #[test]
    fn rfc9112_s7_1_chunks_extensions_and_trailers_in_any_pieces() {
        let body = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(decode(body, piece), Ok((b"hello world".to_vec(), true)), "pieces of {piece}");
        }
        let mut d = ChunkedDecoder::new(1024);
        let mut at = 0;
        while !d.is_done() {
            at += d.step(&body[at..]).unwrap().consumed;
        }
        assert_eq!(d.trailers(), b"X-Sum: 1\r\n");
        assert_eq!(decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4), Ok((b"0123456789".to_vec(), true)));
    }

    #[test]
    fn rfc9112_s7_1_broken_codings_are_errors() {
        assert_eq!(decode(b"5\r\nhelloXX0\r\n\r\n", 64), Err(ChunkError::MissingCrlf));
        assert_eq!(decode(b"zz\r\nhello\r\n0\r\n\r\n", 64), Err(ChunkError::BadSize));
        assert_eq!(decode(b"-1\r\n", 64), Err(ChunkError::BadSize));
        assert_eq!(decode(b"fffffffffffffffff\r\n", 64), Err(ChunkError::BadSize), "overflow");
        assert_eq!(decode(b"0\r\nbad trailer\r\n\r\n", 64), Err(ChunkError::BadTrailers));
        let big = format!("0\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(decode(big.as_bytes(), 64), Err(ChunkError::TrailersTooLarge));
        assert_eq!(decode(b"5\r\nhel", 2), Ok((b"hel".to_vec(), false)), "incomplete: data so far, not done");
    }
}
