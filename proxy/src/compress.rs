//! Compression at the edge: a response main did not compress, for a client whose
//! `Accept-Encoding` allows it, when the type is worth it ([`crate::headers::compressible`], with
//! the body's known size); and `Vary: Accept-Encoding` on every response that is compressed for
//! some clients (RFC 9110 §12.5.5). Files of offload rules are not passed here: they are served
//! precompressed instead.

use http::{header, HeaderValue, Request, Response};

use crate::headers;
use crate::response::EdgeBody;

/// What the front door compresses, with the body's known size.
fn compressible(response: &Response<EdgeBody>) -> bool {
    let size = http_body::Body::size_hint(response.body()).exact().or_else(|| crate::headers::content_length(response.headers()));
    headers::compressible(response.status(), response.headers(), size)
}

/// `Vary: Accept-Encoding` on a response the front door would compress for another client, so a
/// shared cache downstream never hands a compressed body to a client that cannot read it, nor the
/// identity one to every client. (A stored response has it already.)
#[inline]
pub fn vary_by_encoding(response: &mut Response<EdgeBody>) {
    if headers::varies_by_encoding(response.headers()) || !compressible(response) {
        return;
    }
    response.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
}

/// The response compressed for a client that sent `accept` (tower-http's encoders, level 4).
pub async fn compress(accept: HeaderValue, response: Response<EdgeBody>) -> Response<EdgeBody> {
    use tower::{Service, ServiceExt};
    use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate, SizeAbove};
    use tower_http::compression::{Compression, CompressionLevel};
    if !compressible(&response) {
        return response;
    }
    let mut slot = Some(response);
    let inner = tower::service_fn(move |_: Request<()>| {
        let r = slot.take().unwrap_or_else(|| Response::new(EdgeBody::empty()));
        std::future::ready(Ok::<_, std::convert::Infallible>(r))
    });
    let predicate = DefaultPredicate::new().and(SizeAbove::new(256)).and(NotForContentType::const_new("application/octet-stream"));
    let mut service = Compression::new(inner).compress_when(predicate).quality(CompressionLevel::Precise(4));
    let mut req = Request::new(());
    req.headers_mut().insert(header::ACCEPT_ENCODING, accept);
    match service.ready().await {
        Ok(s) => match s.call(req).await {
            Ok(r) => r.map(|b| EdgeBody::Compressed(Box::new(b))),
            Err(never) => match never {},
        },
        Err(never) => match never {},
    }
}
