//! Offload: files served at the edge for `{prefix, dir}` rules, as an NGINX offload proxy in front
//! of an app would. tower-http's `ServeDir` does the HTTP part (Range, strong ETag, Last-Modified,
//! 304 and 412, precompressed `.br`/`.zst`/`.gz`, `index.html`); the file system underneath is
//! [`Beneath`], which opens every path with `openat2(RESOLVE_BENEATH)` relative to the rule's
//! directory, so neither `..` nor a symlink pointing out of the tree can reach a file outside it.
//! The kernel does the confinement at open time, so there is no window between a check and the
//! open for a swapped symlink to slip through. What a lookup finds (metadata, the bytes of a file
//! up to 1 MiB, or that nothing is there) is reused for one second, as nginx's `open_file_cache`:
//! a changed file is served within a second of the change. Relative symlinks that stay inside the directory
//! are followed; absolute ones are refused (403), wherever they point.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, DefaultServeDirFallback, ServeDir};

use crate::response::EdgeBody;

/// The offload rules, longest prefix first.
#[derive(Debug, Clone)]
pub struct Offload {
    rules: Vec<Rule>,
    /// Whole 200 answers to plain GETs (no validators, no Range) of files kept in memory, reused
    /// for [`VALID_FOR`] without `ServeDir` or a copy of the body.
    answers: Arc<quick_cache::sync::Cache<String, Arc<Kept>, KeptWeight>>,
}

/// An answer of `ServeDir`, kept.
#[derive(Debug)]
struct Kept {
    headers: http::HeaderMap,
    body: Bytes,
    at: Instant,
}

#[derive(Clone)]
struct KeptWeight;

impl quick_cache::Weighter<String, Arc<Kept>> for KeptWeight {
    fn weight(&self, key: &String, val: &Arc<Kept>) -> u64 {
        (key.len() + val.body.len() + 512) as u64
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// Without a trailing slash, except the root rule `/`.
    prefix: String,
    serve: ServeDir<DefaultServeDirFallback, Beneath>,
    fallthrough: bool,
}

impl Offload {
    pub fn new(rules: &[sitecar_config::OffloadRule]) -> Self {
        let found = Arc::new(quick_cache::sync::Cache::with_weighter(4096, KEEP_BYTES, FoundWeight));
        let mut rules: Vec<Rule> = rules
            .iter()
            .map(|r| {
                let prefix = if r.prefix.len() > 1 { r.prefix.trim_end_matches('/').to_owned() } else { r.prefix.clone() };
                let serve = ServeDir::with_backend(&r.dir, Beneath::new(r.dir.clone(), found.clone()))
                    .precompressed_br()
                    .precompressed_zstd()
                    .precompressed_gzip()
                    .append_index_html_on_directories(true)
                    .redirect_path_prefix(if prefix == "/" { String::new() } else { prefix.clone() });
                Rule { prefix, serve, fallthrough: r.fallthrough }
            })
            .collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { rules, answers: Arc::new(quick_cache::sync::Cache::with_weighter(4096, KEEP_BYTES, KeptWeight)) }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule serves `path` (the cache is asked only after the offload).
    pub fn covers(&self, path: &str) -> bool {
        self.route(path).is_some()
    }

    /// The rule whose prefix covers `path` (at a segment boundary), and the rest of the path.
    fn route<'p>(&self, path: &'p str) -> Option<(&Rule, &'p str)> {
        self.rules.iter().find_map(|r| {
            if r.prefix == "/" {
                return Some((r, path));
            }
            let rest = path.strip_prefix(r.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((r, rest))
        })
    }

    /// Serves a request from a rule's directory; `None` when no rule covers it or the file is
    /// missing and the rule falls through to main.
    pub async fn serve(&self, parts: &http::request::Parts) -> Option<Response<EdgeBody>> {
        let (rule, rest) = self.route(parts.uri.path())?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return if rule.fallthrough {
                None
            } else {
                Some(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here\n"))
            };
        }
        if escapes(rest) {
            return Some(plain(StatusCode::NOT_FOUND, "not found\n"));
        }
        let mut uri = String::with_capacity(rest.len() + 1);
        uri.push_str(if rest.is_empty() { "/" } else { rest });
        if let Some(q) = parts.uri.query() {
            uri.push('?');
            uri.push_str(q);
        }
        // A plain GET may be answered by a kept answer for the same file and Accept-Encoding.
        let plain_get = parts.method == Method::GET && !CONDITIONS.iter().any(|h| parts.headers.contains_key(h));
        let key = plain_get.then(|| {
            let accept = parts.headers.get(header::ACCEPT_ENCODING).map_or(&b""[..], |v| v.as_bytes());
            format!("{}{}\n{}", rule.prefix, rest, String::from_utf8_lossy(accept))
        });
        if let Some(kept) = key.as_ref().and_then(|k| self.answers.get(k)).filter(|k| k.at.elapsed() < VALID_FOR) {
            let mut r = Response::new(EdgeBody::full(kept.body.clone()));
            *r.headers_mut() = kept.headers.clone();
            return Some(r);
        }
        let mut req = Request::new(());
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri.parse().ok()?;
        *req.headers_mut() = parts.headers.clone();
        let mut serve = rule.serve.clone();
        match serve.try_call(req).await {
            Ok(resp) if resp.status() == StatusCode::NOT_FOUND && rule.fallthrough => None,
            Ok(resp) => match key {
                Some(key)
                    if resp.status() == StatusCode::OK
                        && crate::headers::content_length(resp.headers()).is_some_and(|l| l <= KEEP_FILES_UP_TO) =>
                {
                    Some(self.keep(key, resp).await)
                }
                _ => Some(resp.map(|b| EdgeBody::File(Box::new(b)))),
            },
            Err(e) if missing(&e) && rule.fallthrough => None,
            Err(e) if missing(&e) => Some(plain(StatusCode::NOT_FOUND, "not found\n")),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Some(plain(StatusCode::FORBIDDEN, "forbidden\n")),
            Err(e) => {
                tracing::warn!(error = %e, path = parts.uri.path(), "offload: cannot read the file");
                Some(plain(StatusCode::INTERNAL_SERVER_ERROR, "the file cannot be read\n"))
            }
        }
    }
}

impl Offload {
    /// Reads a small file's answer whole (it comes from memory) and keeps it.
    async fn keep(&self, key: String, resp: Response<tower_http::services::fs::ServeFileSystemResponseBody>) -> Response<EdgeBody> {
        use http_body_util::BodyExt;
        let (parts, body) = resp.into_parts();
        match body.collect().await {
            Ok(b) => {
                let body = b.to_bytes();
                self.answers.insert(key, Arc::new(Kept { headers: parts.headers.clone(), body: body.clone(), at: Instant::now() }));
                Response::from_parts(parts, EdgeBody::full(body))
            }
            Err(e) => {
                tracing::warn!(error = %e, "offload: cannot read the file");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "the file cannot be read\n")
            }
        }
    }
}

/// Request fields that make an answer depend on more than the file.
const CONDITIONS: [header::HeaderName; 6] =
    [header::RANGE, header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::IF_MATCH, header::IF_UNMODIFIED_SINCE, header::IF_RANGE];

/// No such file: a missing name, or a file name used as a directory.
fn missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

/// A path that tries to leave the directory: a `..` segment, raw or percent-encoded, a NUL, or
/// a backslash (a separator to some apps).
fn escapes(rest: &str) -> bool {
    let Ok(decoded) = percent_decode_str(rest).decode_utf8() else { return true };
    decoded.contains('\0') || decoded.contains('\\') || decoded.split('/').any(|s| s == "..")
}

fn plain(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    let mut r = Response::new(EdgeBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// How long what was learned about a path (its metadata, a small file's bytes, its absence) is
/// used before the file system is asked again, as nginx's `open_file_cache_valid`.
const VALID_FOR: Duration = Duration::from_secs(1);
/// Files up to this size are kept in memory (and served without touching the disk while valid).
const KEEP_FILES_UP_TO: u64 = 1 << 20;
/// Bound of the bytes kept in memory across every rule.
const KEEP_BYTES: u64 = 64 << 20;

/// `ServeDir`'s file system, confined to one directory by the kernel, with a small cache of what
/// it found: one trip to the blocking pool opens, stats and (for small files) reads a file, and
/// requests within [`VALID_FOR`] need none.
#[derive(Debug, Clone)]
pub struct Beneath {
    root: Arc<PathBuf>,
    found: Arc<FoundCache>,
}

type FoundCache = quick_cache::sync::Cache<PathBuf, Arc<Found>, FoundWeight>;

#[derive(Clone)]
struct FoundWeight;

impl quick_cache::Weighter<PathBuf, Arc<Found>> for FoundWeight {
    fn weight(&self, key: &PathBuf, val: &Arc<Found>) -> u64 {
        let body = match &val.what {
            What::File { bytes: Some(b), .. } => b.len() as u64,
            _ => 0,
        };
        body + key.as_os_str().len() as u64 + 128
    }
}

/// What the file system said about a path, and when.
#[derive(Debug)]
struct Found {
    what: What,
    at: Instant,
}

#[derive(Debug)]
enum What {
    Missing(io::ErrorKind),
    Dir(Meta),
    /// A file, with its bytes when small enough to keep.
    File {
        meta: Meta,
        bytes: Option<Bytes>,
    },
}

/// A file's metadata as `ServeDir` needs it.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    dir: bool,
    modified: Option<SystemTime>,
    len: u64,
}

impl tower_http::services::fs::Metadata for Meta {
    fn is_dir(&self) -> bool {
        self.dir
    }

    fn modified(&self) -> io::Result<SystemTime> {
        self.modified.ok_or_else(|| io::Error::other("no modification time"))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl From<&std::fs::Metadata> for Meta {
    fn from(m: &std::fs::Metadata) -> Self {
        Meta { dir: m.is_dir(), modified: m.modified().ok(), len: m.len() }
    }
}

impl Beneath {
    fn new(root: PathBuf, found: Arc<FoundCache>) -> Self {
        Self { root: Arc::new(root), found }
    }

    /// What is known of `path`, asking the file system when nothing valid is known.
    async fn find(&self, path: PathBuf) -> io::Result<Arc<Found>> {
        if let Some(f) = self.found.get(&path).filter(|f| f.at.elapsed() < VALID_FOR) {
            return Ok(f);
        }
        let root = self.root.clone();
        let key = path.clone();
        let what = tokio::task::spawn_blocking(move || probe(&root, &path)).await.map_err(io::Error::other)??;
        let found = Arc::new(Found { what, at: Instant::now() });
        self.found.insert(key, found.clone());
        Ok(found)
    }
}

/// Opens, stats and, when small, reads a path beneath `root`; a missing path is an answer too.
fn probe(root: &Path, path: &Path) -> io::Result<What> {
    let mut file = match open_beneath(root, path) {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(What::Missing(e.kind())),
        Err(e) => return Err(e),
    };
    let m = file.metadata()?;
    let meta = Meta::from(&m);
    if m.is_dir() {
        return Ok(What::Dir(meta));
    }
    let bytes = if m.is_file() && m.len() <= KEEP_FILES_UP_TO {
        let mut buf = Vec::with_capacity(m.len() as usize);
        std::io::Read::read_to_end(&mut file, &mut buf)?;
        Some(Bytes::from(buf))
    } else {
        None
    };
    // The bytes read are what is served: their length is the one that counts.
    let meta = Meta { len: bytes.as_ref().map_or(meta.len, |b| b.len() as u64), ..meta };
    Ok(What::File { meta, bytes })
}

/// Opens `path` (which `ServeDir` built as `root/rest`) beneath `root`: a symlink or `..` that
/// would leave it fails with `PermissionDenied`.
fn open_beneath(root: &Path, path: &Path) -> io::Result<std::fs::File> {
    let rest = path.strip_prefix(root).map_err(|_| io::Error::new(io::ErrorKind::PermissionDenied, "outside the offload directory"))?;
    let rest = if rest.as_os_str().is_empty() { Path::new(".") } else { rest };
    let dir = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dir, rest, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), resolve) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(rustix::io::Errno::XDEV) => {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "the path leads outside the offload directory"))
        }
        Err(e) => Err(e.into()),
    }
}

type Boxed<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl Backend for Beneath {
    type File = OffloadFile;
    type Metadata = Meta;
    type OpenFuture = Boxed<OffloadFile>;
    type MetadataFuture = Boxed<Meta>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(async move {
            let found = this.find(path.clone()).await?;
            match &found.what {
                What::Missing(kind) => Err(io::Error::from(*kind)),
                What::File { meta, bytes: Some(b) } => Ok(OffloadFile::Memory(std::io::Cursor::new(b.clone()), *meta)),
                // A directory or a large file: opened for streaming.
                What::Dir(_) | What::File { bytes: None, .. } => {
                    let root = this.root.clone();
                    let file = tokio::task::spawn_blocking(move || open_beneath(&root, &path)).await.map_err(io::Error::other)??;
                    Ok(OffloadFile::Disk(tokio::fs::File::from_std(file)))
                }
            }
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(async move {
            match &this.find(path).await?.what {
                What::Missing(kind) => Err(io::Error::from(*kind)),
                What::Dir(m) | What::File { meta: m, .. } => Ok(*m),
            }
        })
    }
}

/// A file opened by [`Beneath`]: kept bytes, or a file on disk.
#[derive(Debug)]
pub enum OffloadFile {
    Memory(std::io::Cursor<Bytes>, Meta),
    Disk(tokio::fs::File),
}

impl AsyncRead for OffloadFile {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OffloadFile::Memory(c, _) => Pin::new(c).poll_read(cx, buf),
            OffloadFile::Disk(f) => Pin::new(f).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for OffloadFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            OffloadFile::Memory(c, _) => Pin::new(c).start_seek(position),
            OffloadFile::Disk(f) => Pin::new(f).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            OffloadFile::Memory(c, _) => Pin::new(c).poll_complete(cx),
            OffloadFile::Disk(f) => Pin::new(f).poll_complete(cx),
        }
    }
}

impl tower_http::services::fs::File for OffloadFile {
    type Metadata = Meta;
    type MetadataFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Meta>> + Send + 'a>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        match self {
            OffloadFile::Memory(_, m) => Box::pin(std::future::ready(Ok(*m))),
            OffloadFile::Disk(f) => Box::pin(async move { Ok(Meta::from(&f.metadata().await?)) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_at_segment_boundaries_longest_prefix_first() {
        let rule = |p: &str| sitecar_config::OffloadRule { prefix: p.into(), dir: "/tmp".into(), fallthrough: true };
        let o = Offload::new(&[rule("/static"), rule("/static/img/")]);
        assert_eq!(o.route("/static/a.css").map(|(r, rest)| (r.prefix.as_str(), rest)), Some(("/static", "/a.css")));
        assert_eq!(o.route("/static/img/x.png").map(|(r, rest)| (r.prefix.as_str(), rest)), Some(("/static/img", "/x.png")));
        assert_eq!(o.route("/static").map(|(_, rest)| rest), Some(""));
        assert!(o.route("/staticfoo").is_none());
        assert!(o.route("/api").is_none());
    }

    #[test]
    fn parent_segments_in_any_spelling_escape() {
        for p in ["/../etc/passwd", "/%2e%2e/etc", "/a/%2E%2E/%2e%2e/x", "/a\\..\\b", "/x%00y", "/%ff"] {
            assert!(escapes(p), "{p}");
        }
        for p in ["/a/b.txt", "/..a", "/a..b/c", "/"] {
            assert!(!escapes(p), "{p}");
        }
    }
}
