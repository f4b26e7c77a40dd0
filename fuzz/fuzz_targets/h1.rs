//! sitecar's HTTP/1.1 codec on arbitrary bytes: a response head parsed as main's, and a request head parsed (whole, and fed a byte at a
//! time up to the point it completes) and its body decoded. Never panics; every range of a parsed
//! head lies inside the input; a head found in pieces is the head found whole; a chunked body's
//! decoder never consumes more than it is given nor yields data outside it; and a refused head
//! is refused however it arrives. (Agreement with hyper's server: proxy/tests/h1_codec.rs.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitecar_proxy::h1::{parse_request, parse_response, BodyKind, ChunkedDecoder, Limits};

const LIMITS: Limits = Limits { max_head_bytes: 4096, max_headers: 32 };

fuzz_target!(|data: &[u8]| {
    // Main's response heads: never a panic, every range inside the head, no body after HEAD.
    for head_request in [false, true] {
        if let Ok(Some(r)) = parse_response(data, head_request, LIMITS.max_head_bytes, LIMITS.max_headers) {
            assert!(r.len <= data.len());
            for range in std::iter::once(&r.reason).chain(r.fields.iter().flat_map(|(n, v)| [n, v])) {
                assert!(range.start <= range.end && range.end <= r.len);
            }
            assert!(!head_request || r.body == sitecar_proxy::h1::ResponseBody::Empty);
        }
    }
    let whole = parse_request(data, &LIMITS);
    if let Ok(Some(head)) = &whole {
        assert!(head.len <= data.len());
        for r in std::iter::once(&head.target).chain(head.host.iter()).chain(head.fields.iter().flat_map(|(n, v)| [n, v])) {
            assert!(r.start <= r.end && r.end <= head.len, "{r:?} outside the head");
        }
        // The same head, found as the bytes arrive.
        let mut found = None;
        for end in 1..=data.len() {
            match parse_request(&data[..end], &LIMITS) {
                Ok(None) => continue,
                other => {
                    found = Some(other);
                    break;
                }
            }
        }
        assert_eq!(found.as_ref(), Some(&whole), "a head found in pieces differs");
        if head.body == BodyKind::Chunked {
            let rest = &data[head.len..];
            let mut d = ChunkedDecoder::new(1024);
            let mut at = 0;
            while let Ok(step) = d.step(&rest[at..]) {
                assert!(step.consumed <= rest.len() - at);
                if let Some(r) = &step.data {
                    assert!(r.end <= step.consumed);
                }
                at += step.consumed;
                if d.is_done() || (step.consumed == 0 && step.data.is_none()) {
                    break;
                }
            }
        }
    }
});
