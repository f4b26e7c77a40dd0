//! Request ids and W3C trace context: fast random ids, `traceparent` parsing and creation.

use std::cell::Cell;

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let local = 0u8;
    // Thread-distinct: mix in a stack address.
    (t ^ (&local as *const u8 as u64).rotate_left(32)) | 1
}

/// xorshift64*: not for secrets, fine for ids.
pub fn random_u64() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Each byte's two lowercase hex digits.
const PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// `v` as 16 lowercase hex digits, a byte at a time.
fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (pair, byte) in out.chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair.copy_from_slice(&PAIRS[byte as usize]);
    }
    out
}

/// A new request id: 32 lowercase hex digits, built without allocating.
pub fn request_id() -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&hex16(random_u64()));
    id[16..].copy_from_slice(&hex16(random_u64()));
    id
}

/// A 32-digit request id in GUID form, as App Service's `X-ARR-LOG-ID`.
pub fn guid(id: &[u8; 32]) -> [u8; 36] {
    let mut g = [b'-'; 36];
    g[0..8].copy_from_slice(&id[0..8]);
    g[9..13].copy_from_slice(&id[8..12]);
    g[14..18].copy_from_slice(&id[12..16]);
    g[19..23].copy_from_slice(&id[16..20]);
    g[24..36].copy_from_slice(&id[20..32]);
    g
}

/// An accepted request id from a client: short, printable, no spaces.
pub fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

/// The parts of a valid version-00 `traceparent` (lowercase hex, as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 32],
    pub span_id: [u8; 16],
    pub flags: [u8; 2],
}

impl TraceParent {
    /// The `sampled` flag (bit 0 of the trace flags).
    pub fn sampled(&self) -> bool {
        let low = self.flags[1];
        let v = if low.is_ascii_digit() { low - b'0' } else { low - b'a' + 10 };
        v & 1 == 1
    }

    /// The header value.
    pub fn to_bytes(self) -> [u8; 55] {
        let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-00";
        tp[3..35].copy_from_slice(&self.trace_id);
        tp[36..52].copy_from_slice(&self.span_id);
        tp[53..55].copy_from_slice(&self.flags);
        tp
    }
}

/// A valid version-00 `traceparent`, or `None`.
pub fn parse_traceparent(traceparent: &[u8]) -> Option<TraceParent> {
    // 00-<32 hex>-<16 hex>-<2 hex>
    if traceparent.len() != 55 || &traceparent[..3] != b"00-" || traceparent[35] != b'-' || traceparent[52] != b'-' {
        return None;
    }
    let lower_hex = |s: &[u8]| s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let (trace, span, flags) = (&traceparent[3..35], &traceparent[36..52], &traceparent[53..55]);
    if !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
        return None;
    }
    if trace.iter().all(|b| *b == b'0') || span.iter().all(|b| *b == b'0') {
        return None;
    }
    let mut tp = TraceParent { trace_id: [0; 32], span_id: [0; 16], flags: [0; 2] };
    tp.trace_id.copy_from_slice(trace);
    tp.span_id.copy_from_slice(span);
    tp.flags.copy_from_slice(flags);
    Some(tp)
}

/// The trace id of a valid version-00 `traceparent`, or `None`.
#[cfg(test)]
pub(crate) fn trace_id(traceparent: &[u8]) -> Option<[u8; 32]> {
    parse_traceparent(traceparent).map(|t| t.trace_id)
}

/// A new span id: 16 lowercase hex digits, never all zero.
pub fn span_id() -> [u8; 16] {
    hex16(random_u64() | 1)
}

/// A new trace with a new span, marked sampled or not.
pub fn new_trace(sampled: bool) -> TraceParent {
    let mut trace_id = [0u8; 32];
    trace_id[..16].copy_from_slice(&hex16(random_u64()));
    trace_id[16..].copy_from_slice(&hex16(random_u64() | 1));
    TraceParent { trace_id, span_id: span_id(), flags: if sampled { *b"01" } else { *b"00" } }
}

/// A new sampled `traceparent` and its trace id, built without allocating.
#[cfg(test)]
pub(crate) fn new_traceparent() -> ([u8; 55], [u8; 32]) {
    let t = new_trace(true);
    (t.to_bytes(), t.trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_validated() {
        let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(ok), Some(*b"4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"), None);
        assert_eq!(trace_id(b"garbage"), None);
        let (tp, trace) = new_traceparent();
        assert_eq!(trace_id(&tp), Some(trace));
        let parsed = parse_traceparent(ok).unwrap();
        assert_eq!(&parsed.span_id, b"00f067aa0ba902b7");
        assert!(parsed.sampled());
        assert_eq!(&parsed.to_bytes(), ok);
        assert!(!parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap().sampled());
        assert!(parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0b").unwrap().sampled());
        let unsampled = new_trace(false);
        assert_eq!(parse_traceparent(&unsampled.to_bytes()), Some(unsampled));
        assert!(!unsampled.sampled());
    }

    #[test]
    fn hex_digits_are_the_values_digits() {
        for v in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef, random_u64()] {
            assert_eq!(hex16(v).as_slice(), format!("{v:016x}").as_bytes());
        }
    }

    #[test]
    fn ids_differ_and_have_the_right_shape() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(&guid(b"0123456789abcdef0123456789abcdef"), b"01234567-89ab-cdef-0123-456789abcdef");
        assert!(valid_request_id(b"abc-123"));
        assert!(!valid_request_id(b"a b"));
    }
}
