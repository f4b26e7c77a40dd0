//! Offload: files served at the edge for `{prefix, dir}` rules, as an NGINX offload proxy in front
//! of an app would. tower-http's `ServeDir` does the HTTP part (Range, strong ETag, Last-Modified,
//! 304 and 412, precompressed `.br`/`.zst`/`.gz`, `index.html`); the file system underneath is
//! [`Beneath`], which opens every path with `openat2(RESOLVE_BENEATH)` relative to the rule's
//! directory, so neither `..` nor a symlink pointing out of the tree can reach a file outside it.
//! The kernel does the confinement at open time, so there is no window between a check and the
//! open for a swapped symlink to slip through. Relative symlinks that stay inside the directory
//! are followed; absolute ones are refused (403), wherever they point.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, DefaultServeDirFallback, ServeDir};

use crate::body::EdgeBody;

/// The offload rules, longest prefix first.
#[derive(Debug, Clone)]
pub struct Offload {
    rules: Vec<Rule>,
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
        let mut rules: Vec<Rule> = rules
            .iter()
            .map(|r| {
                let prefix = if r.prefix.len() > 1 { r.prefix.trim_end_matches('/').to_owned() } else { r.prefix.clone() };
                let serve = ServeDir::with_backend(&r.dir, Beneath { root: Arc::new(r.dir.clone()) })
                    .precompressed_br()
                    .precompressed_zstd()
                    .precompressed_gzip()
                    .append_index_html_on_directories(true)
                    .redirect_path_prefix(if prefix == "/" { String::new() } else { prefix.clone() });
                Rule { prefix, serve, fallthrough: r.fallthrough }
            })
            .collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
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
        let mut req = Request::new(());
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri.parse().ok()?;
        *req.headers_mut() = parts.headers.clone();
        let mut serve = rule.serve.clone();
        match serve.try_call(req).await {
            Ok(resp) if resp.status() == StatusCode::NOT_FOUND && rule.fallthrough => None,
            Ok(resp) => Some(resp.map(|b| EdgeBody::File(Box::new(b)))),
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

/// `ServeDir`'s file system, confined to one directory by the kernel.
#[derive(Debug, Clone)]
pub struct Beneath {
    root: Arc<PathBuf>,
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
    type File = BeneathFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = Boxed<BeneathFile>;
    type MetadataFuture = Boxed<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let root = self.root.clone();
        Box::pin(async move {
            let file = tokio::task::spawn_blocking(move || open_beneath(&root, &path)).await.map_err(io::Error::other)??;
            Ok(BeneathFile(tokio::fs::File::from_std(file)))
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let root = self.root.clone();
        Box::pin(
            async move { tokio::task::spawn_blocking(move || open_beneath(&root, &path)?.metadata()).await.map_err(io::Error::other)? },
        )
    }
}

/// A file opened by [`Beneath`].
#[derive(Debug)]
pub struct BeneathFile(tokio::fs::File);

impl AsyncRead for BeneathFile {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncSeek for BeneathFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.0).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.0).poll_complete(cx)
    }
}

impl tower_http::services::fs::File for BeneathFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = Pin<Box<dyn Future<Output = io::Result<std::fs::Metadata>> + Send + 'a>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        Box::pin(self.0.metadata())
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
