//! sitecar's HTTP/1.1 codec (`sitecar_proxy::h1`) held to hyper's server: on every input both
//! accept, the same method, target, version, header fields and body. Inputs: requests as
//! clients and attackers write them (the smuggling shapes of hostile.rs among them) and a few
//! thousand deterministic mutations of those (bytes flipped, inserted, dropped, cut short).
//! `H1_SHOW=1` lists the inputs hyper accepts and the codec refuses, with its reason. Main's
//! responses likewise against hyper's client (status, fields, body; HEAD and 1xx included).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "support/h1_twins.rs"]
mod twins;

use sitecar_proxy::h1::{parse_request, parse_response};
use twins::{hypers, hypers_answer, our_answer, ours, LIMITS};

fn corpus() -> Vec<Vec<u8>> {
    let texts: &[&str] = &[
        "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        "GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: shop.example:8080\r\nAccept: */*\r\nUser-Agent: curl/8\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: a\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00005\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
        "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        "GET http://shop.example/p?q HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Obs: caf\u{e9}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "DELETE /r HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        // Shapes of request smuggling (hostile.rs), refused by one or both.
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n X-Folded: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX\0: v\r\n\r\n",
    ];
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// Deterministic mutations of each input (xorshift, fixed seed).
fn mutations(base: &[Vec<u8>], per: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"\r\n :;,\t0123456789aAfFzZ-_/?%\"\x00\x7f\x80\xff";
    let mut out = Vec::new();
    for input in base {
        for _ in 0..per {
            let mut m = input.clone();
            for _ in 0..1 + next() % 3 {
                if m.is_empty() {
                    break;
                }
                let at = (next() % m.len() as u64) as usize;
                let byte = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 4 {
                    0 => m[at] = byte,
                    1 => m.insert(at, byte),
                    2 => {
                        m.remove(at);
                    }
                    _ => m.truncate(at.max(1)),
                }
            }
            out.push(m);
        }
    }
    out
}

#[tokio::test]
async fn the_codec_agrees_with_hypers_server_on_every_input_both_accept() {
    let base = corpus();
    let mut inputs = base.clone();
    inputs.extend(mutations(&base, 200));
    let (mut both, mut only_ours, mut only_hyper) = (0, Vec::new(), 0);
    for input in &inputs {
        let (a, b) = (ours(input), hypers(input).await);
        match (a, b) {
            (Some(a), Some(b)) => {
                both += 1;
                let text = String::from_utf8_lossy(input);
                assert_eq!((&a.method, &a.target, a.http10, &a.fields), (&b.method, &b.target, b.http10, &b.fields), "head of {text:?}");
                if let (Some(x), Some(y)) = (&a.body, &b.body) {
                    assert_eq!(x, y, "body of {text:?}");
                }
            }
            (Some(_), None) => only_ours.push(String::from_utf8_lossy(input).into_owned()),
            (None, Some(_)) => {
                only_hyper += 1;
                if std::env::var("H1_SHOW").is_ok() {
                    eprintln!("HYPER-ONLY {:?} -> {:?}", String::from_utf8_lossy(input), parse_request(input, &LIMITS));
                }
            }
            (None, None) => {}
        }
    }
    // The codec is stricter than hyper (Host, transfer codings, CL beside TE, targets), never
    // looser: what it accepts, hyper accepts too.
    eprintln!("compared {both} inputs both accepted; hyper alone accepted {only_hyper}; {} inputs", inputs.len());
    assert!(only_ours.is_empty(), "accepted by the codec only: {only_ours:#?}");
    assert!(both > 600, "too few inputs both accepted to compare: {both} (hyper alone: {only_hyper})");
}

#[test]
fn a_head_arriving_in_pieces_is_the_head_found_whole() {
    let base = corpus();
    let mut inputs = base.clone();
    inputs.extend(mutations(&base, 20));
    for input in &inputs {
        let whole = parse_request(input, &LIMITS);
        let found = (1..=input.len()).map(|end| parse_request(&input[..end], &LIMITS)).find(|r| !matches!(r, Ok(None)));
        match &whole {
            Ok(None) => assert_eq!(found, None),
            _ => assert_eq!(found.as_ref(), Some(&whole), "{:?}", String::from_utf8_lossy(input)),
        }
    }
}

fn responses() -> Vec<Vec<u8>> {
    let texts: &[&str] = &[
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\nuntil the end",
        "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nnot found",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 1\r\n\r\nx",
    ];
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

#[tokio::test]
async fn mains_responses_are_read_as_hypers_client_reads_them() {
    let base = responses();
    let mut inputs = base.clone();
    inputs.extend(mutations(&base, 120));
    let (mut both, mut only_ours) = (0, Vec::new());
    for input in &inputs {
        for head_request in [false, true] {
            let (a, b) = (our_answer(input, head_request), hypers_answer(input, head_request).await);
            match (a, b) {
                (Some(a), Some(b)) => {
                    both += 1;
                    let text = String::from_utf8_lossy(input);
                    assert_eq!((a.status, a.http10, &a.fields), (b.status, b.http10, &b.fields), "head of {text:?} (HEAD: {head_request})");
                    if let (Some(x), Some(y)) = (&a.body, &b.body) {
                        assert_eq!(x, y, "body of {text:?} (HEAD: {head_request})");
                    }
                }
                (Some(_), None) => only_ours.push((String::from_utf8_lossy(input).into_owned(), head_request)),
                (None, Some(b)) if std::env::var("H1_SHOW").is_ok() => {
                    let why = parse_response(input, head_request, LIMITS.max_head_bytes, LIMITS.max_headers);
                    eprintln!("HYPER-ONLY {} {:?} -> {:?}", b.status, String::from_utf8_lossy(input), why.map(|h| h.map(|h| h.body)));
                }
                _ => {}
            }
        }
    }
    eprintln!("compared {both} responses both read, of {}", inputs.len() * 2);
    assert!(only_ours.is_empty(), "read by the codec only: {only_ours:#?}");
    assert!(both > 800, "too few responses both read to compare: {both}");
}

#[tokio::test]
async fn what_the_codec_writes_hypers_client_reads() {
    use http::{HeaderMap, HeaderValue, StatusCode};
    use sitecar_proxy::h1::write::{chunk, last_chunk, response_head, Framing};
    let mut fields = HeaderMap::new();
    fields.insert("content-type", HeaderValue::from_static("application/grpc"));
    fields.append("x-multi", HeaderValue::from_static("1"));
    fields.append("x-multi", HeaderValue::from_static("2"));
    for (framing, body) in [(Framing::Chunked, vec![b'a'; 70_000]), (Framing::Length(5), b"hello".to_vec()), (Framing::Chunked, Vec::new())]
    {
        let mut out = Vec::new();
        response_head(&mut out, StatusCode::CREATED, &fields, framing, b"Sat, 05 Dec 2026 08:00:00 GMT", false);
        match framing {
            Framing::Chunked => {
                for piece in body.chunks(16_384) {
                    chunk(&mut out, piece);
                }
                last_chunk(&mut out, None);
            }
            _ => out.extend_from_slice(&body),
        }
        let got = hypers_answer(&out, false).await.expect("hyper read it");
        assert_eq!((got.status, got.body.as_deref()), (201, Some(body.as_slice())));
        assert_eq!(got.fields.iter().filter(|(n, _)| n == "x-multi").count(), 2);
        assert_eq!(our_answer(&out, false), Some(got), "the codec reads it as hyper does");
    }
}
