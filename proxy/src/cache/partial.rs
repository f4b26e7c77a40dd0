//! Partial content (RFC 9111 §3.3, §3.4): a range request on a miss asks main for the whole
//! object when it may be stored (and answers the range from it); an object too large to store is
//! asked for in ranges, whose 206 answers are stored as pieces of one representation (same strong
//! `ETag`, same length), combined as they arrive, answered from when a piece covers a later
//! range, and promoted to a whole stored response once they cover it all.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use super::{cache_status, plan, Cache, CachedResponse, Candidate, Lookup, Outcome, Stored};

/// What a key of pieces ends with: a space, which no request's key holds.
pub(super) const SUFFIX: &str = " (partial)";

/// Pieces of one representation, sorted by offset, neither overlapping nor adjacent.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    /// The representation's complete length (from `Content-Range`).
    pub total: u64,
    pub pieces: Vec<(u64, Bytes)>,
}

impl Segments {
    pub(super) fn bytes(&self) -> u64 {
        self.pieces.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// Adds a piece at `start`, merging it with every piece it overlaps or touches.
    pub(super) fn add(&mut self, start: u64, body: Bytes) {
        let (mut lo, mut hi) = (start, start + body.len() as u64);
        let mut merged: Vec<(u64, Bytes)> = Vec::with_capacity(self.pieces.len() + 1);
        let mut touching: Vec<(u64, Bytes)> = vec![(start, body)];
        for (s, b) in self.pieces.drain(..) {
            let e = s + b.len() as u64;
            if e < lo || s > hi {
                merged.push((s, b));
            } else {
                lo = lo.min(s);
                hi = hi.max(e);
                touching.push((s, b));
            }
        }
        let joined = if touching.len() == 1 {
            touching.pop().map(|(_, b)| b).unwrap_or_default()
        } else {
            let mut out = BytesMut::zeroed((hi - lo) as usize);
            // Later pieces (the new one first here) are laid down last so the newest bytes win.
            for (s, b) in touching.iter().skip(1).chain(touching.iter().take(1)) {
                let at = (s - lo) as usize;
                out[at..at + b.len()].copy_from_slice(b);
            }
            out.freeze()
        };
        merged.push((lo, joined));
        merged.sort_by_key(|(s, _)| *s);
        self.pieces = merged;
    }

    /// The bytes `start..=end` when one piece holds them all.
    fn slice(&self, start: u64, end: u64) -> Option<Bytes> {
        let (s, b) = self.pieces.iter().find(|(s, b)| *s <= start && end < s + b.len() as u64)?;
        Some(b.slice((start - s) as usize..=(end - s) as usize))
    }

    /// The whole representation, when the pieces cover it.
    fn complete(&self) -> Option<Bytes> {
        match self.pieces.as_slice() {
            [(0, b)] if b.len() as u64 == self.total => Some(b.clone()),
            _ => None,
        }
    }
}

/// `Content-Range: bytes first-last/complete` with a known complete length.
pub(super) fn content_range(h: &HeaderMap) -> Option<(u64, u64, u64)> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?, total.trim().parse().ok()?);
    (first <= last && last < total).then_some((first, last, total))
}

/// A strong entity tag (RFC 9110 §8.8.3): pieces are combined only under one (§3.4).
fn strong_etag(h: &HeaderMap) -> Option<&HeaderValue> {
    h.get(header::ETAG).filter(|v| v.as_bytes().first() == Some(&b'"'))
}

impl Cache {
    /// Where the pieces of `key` are kept: beside it, under a name no request's key can have.
    pub(super) fn parts_key(key: &str) -> Arc<str> {
        Arc::from(format!("{key}{SUFFIX}"))
    }

    /// Whether range requests for `key` go to main as they are (its object is too large to store
    /// whole, or pieces of it are stored).
    pub(super) fn asks_in_ranges(&self, key: &str) -> bool {
        self.large.get(key).is_some() || self.store.get(&*Cache::parts_key(key)).is_some()
    }

    /// Remembers that `key`'s object is not fetched whole for a range.
    pub(super) fn mark_large(&self, key: &Arc<str>) {
        self.large.insert(key.clone(), ());
    }

    /// A fresh stored piece that holds the single range `parts` asks for (and whose `If-Range`,
    /// if any, holds), as a 206.
    pub(super) fn partial_hit(&self, key: &str, parts: &http::request::Parts, now: SystemTime) -> Option<CachedResponse> {
        if parts.method != Method::GET {
            return None;
        }
        let Lookup::Found(s) = self.lookup(&Cache::parts_key(key), &parts.headers) else { return None };
        let segments = s.segments.as_deref()?;
        if !s.answers(parts, now) || !super::stored::if_range_holds(&parts.headers, &s.headers) {
            return None;
        }
        let range = parts.headers.get(header::RANGE)?.to_str().ok()?;
        let ranges = http_range_header::parse_range_header(range).ok()?.validate(segments.total).ok()?;
        let [r] = ranges.as_slice() else { return None };
        let (start, end) = (*r.start(), *r.end());
        let body = segments.slice(start, end)?;
        self.count(Outcome::Hit);
        let mut headers = s.headers.clone();
        headers.insert(header::AGE, HeaderValue::from(s.age(now).as_secs()));
        headers.insert(plan::cache_status_name(), cache_status(Outcome::Hit, Some(s.ttl(now)), false));
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{}", segments.total)) {
            headers.insert(header::CONTENT_RANGE, v);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let mut resp = CachedResponse::new(Some(body));
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        *resp.headers_mut() = headers;
        Some(resp)
    }

    /// A 206 from main that may be stored as a piece: a strong `ETag`, a `Content-Range` with
    /// the complete length that its `Content-Length` agrees with, and what a 200 with its fields
    /// could be stored for.
    pub(super) fn piece_candidate(&self, req: &http::request::Parts, resp: &http::response::Parts, now: SystemTime) -> Option<Candidate> {
        if resp.status != StatusCode::PARTIAL_CONTENT || strong_etag(&resp.headers).is_none() {
            return None;
        }
        let (first, last, total) = content_range(&resp.headers)?;
        // The body main frames (its Content-Length) must be the range it names.
        if crate::headers::content_length(&resp.headers) != Some(last - first + 1) {
            return None;
        }
        let mut whole = resp.clone();
        whole.status = StatusCode::OK;
        let mut c = self.candidate(req, &whole, now)?;
        c.stored.status = StatusCode::PARTIAL_CONTENT;
        c.stored.headers.remove(header::CONTENT_RANGE);
        c.stored.segments = Some(Box::new(Segments { total, pieces: Vec::new() }));
        c.stored.piece_start = first;
        Some(c)
    }

    /// Stores a piece under `parts_key` (the key of its pieces), combined with the stored pieces
    /// of the same representation (RFC 9111 §3.4: the newer piece's fields win); once the pieces
    /// cover the whole representation it is stored as a 200 under `key`.
    pub(super) fn insert_piece(&self, key: &Arc<str>, parts_key: &Arc<str>, mut stored: Stored, body: Bytes) {
        let Some(mut segments) = stored.segments.take() else { return };
        if body.is_empty() {
            return;
        }
        let same = |old: &Stored| {
            old.vary == stored.vary
                && strong_etag(&old.headers) == strong_etag(&stored.headers)
                && old.segments.as_ref().is_some_and(|s| s.total == segments.total)
        };
        if let Lookup::Found(old) = self.lookup_exact(parts_key, &stored) {
            if same(&old) {
                if let Some(old_segments) = &old.segments {
                    segments.pieces = old_segments.pieces.clone();
                }
            }
        }
        let start = stored.piece_start;
        segments.add(start, body.clone());
        if segments.bytes() > self.max_object() {
            // The pieces of one representation are bounded like a whole one: keep the newest.
            segments.pieces = vec![(start, body)];
        }
        if let Some(whole) = segments.complete() {
            stored.status = StatusCode::OK;
            stored.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(whole.len()));
            stored.body = whole;
            self.remove_all(parts_key);
            self.insert(key, stored);
            return;
        }
        stored.headers.remove(header::CONTENT_LENGTH);
        stored.segments = Some(segments);
        self.insert(parts_key, stored);
    }

    /// The stored variant `stored`'s request would find (same `Vary` values), if any.
    fn lookup_exact(&self, key: &Arc<str>, stored: &Stored) -> Lookup {
        let Some(variants) = self.store.get(key) else { return Lookup::None };
        match variants.iter().find(|v| v.vary == stored.vary) {
            Some(v) => Lookup::Found(v.clone()),
            None => Lookup::VaryMiss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(pieces: &[(u64, &str)]) -> Segments {
        let mut s = Segments { total: 100, pieces: Vec::new() };
        for (start, b) in pieces {
            s.add(*start, Bytes::from(b.to_string()));
        }
        s
    }

    #[test]
    fn pieces_combine_when_they_overlap_or_touch() {
        let s = seg(&[(0, "abc"), (10, "klm"), (3, "def")]);
        assert_eq!(s.pieces, vec![(0, Bytes::from("abcdef")), (10, Bytes::from("klm"))]);
        let s = seg(&[(0, "abcdef"), (2, "XY")]);
        assert_eq!(s.pieces, vec![(0, Bytes::from("abXYef"))], "the newer bytes win");
        let s = seg(&[(5, "fgh"), (0, "abcdefghij")]);
        assert_eq!(s.pieces, vec![(0, Bytes::from("abcdefghij"))]);
        assert_eq!(s.slice(2, 4), Some(Bytes::from("cde")));
        assert_eq!(seg(&[(0, "ab"), (5, "fg")]).slice(1, 5), None);
    }

    #[test]
    fn rfc9110_s14_4_content_range_needs_a_complete_length() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")));
            h
        };
        assert_eq!(content_range(&h("bytes 0-9/100")), Some((0, 9, 100)));
        assert_eq!(content_range(&h("bytes 0-9/*")), None);
        assert_eq!(content_range(&h("bytes 9-0/100")), None);
        assert_eq!(content_range(&h("bytes 0-100/100")), None);
        assert_eq!(content_range(&h("items 0-9/100")), None);
    }
}
