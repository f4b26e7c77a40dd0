//! sitecar's HTTP/1.1 codec on arbitrary bytes: a response head parsed as main's, and a request head parsed (whole, and fed a byte at a
//! time up to the point it completes) and its body decoded. Never panics; every range of a parsed
//! head lies inside the input; a head found in pieces is the head found whole; a chunked body's
//! decoder never consumes more than it is given nor yields data outside it; and a refused head
//! is refused however it arrives. And on every input both accept, the codec and hyper agree:
//! the same method, target, version, fields and body as hyper's server, and the same status,
//! fields and body as hyper's client reading it as main's answer (the comparison of
//! proxy/tests/h1_codec.rs, on random bytes; hyper runs on an in-memory connection).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../proxy/tests/support/h1_twins.rs"]
mod twins;
use sitecar_proxy::h1::{parse_request, parse_response, BodyKind, ChunkedDecoder, Limits};

const LIMITS: Limits = Limits { max_head_bytes: 4096, max_headers: 32 };

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for hyper");
}

/// The codec against hyper on both sides: what the codec accepts, hyper accepts, and reads alike.
fn agrees_with_hyper(data: &[u8]) {
    RUNTIME.with(|rt| {
        if let Some(ours) = twins::ours(data) {
            let text = String::from_utf8_lossy(data);
            let theirs = rt.block_on(twins::hypers(data));
            let theirs = theirs.unwrap_or_else(|| panic!("the codec accepts a request hyper's server refuses: {text:?}"));
            assert_eq!(
                (&ours.method, &ours.target, ours.http10, &ours.fields),
                (&theirs.method, &theirs.target, theirs.http10, &theirs.fields),
                "head of {text:?}"
            );
            if let (Some(a), Some(b)) = (&ours.body, &theirs.body) {
                assert_eq!(a, b, "body of {text:?}");
            }
        }
        for head_request in [false, true] {
            if let Some(ours) = twins::our_answer(data, head_request) {
                let text = String::from_utf8_lossy(data);
                let theirs = rt.block_on(twins::hypers_answer(data, head_request));
                let theirs = theirs.unwrap_or_else(|| panic!("the codec reads an answer hyper's client refuses: {text:?} (HEAD: {head_request})"));
                assert_eq!((ours.status, ours.http10, &ours.fields), (theirs.status, theirs.http10, &theirs.fields), "head of {text:?}");
                if let (Some(a), Some(b)) = (&ours.body, &theirs.body) {
                    assert_eq!(a, b, "body of {text:?} (HEAD: {head_request})");
                }
            }
        }
    });
}

fuzz_target!(|data: &[u8]| {
    agrees_with_hyper(data);
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
