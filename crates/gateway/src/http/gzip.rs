//! gzip for responses. A streamed body is compressed frame by frame with a sync flush after every
//! frame, so compression never holds a token back; the gzip trailer follows the last frame.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::Stream;

/// Compresses a whole body at once.
pub(super) fn compress(body: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 2 + 64), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// A stream of frames, gzip-encoded, each frame flushed as it passes.
pub(super) struct GzipFrames<S> {
    inner: S,
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl<S> GzipFrames<S> {
    pub(super) fn new(inner: S) -> Self {
        GzipFrames {
            inner,
            encoder: Some(GzEncoder::new(
                Vec::with_capacity(1024),
                Compression::fast(),
            )),
        }
    }
}

impl<S: Stream<Item = Bytes> + Unpin> Stream for GzipFrames<S> {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(encoder) = this.encoder.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(frame)) => {
                let result = encoder.write_all(&frame).and_then(|()| encoder.flush());
                Poll::Ready(Some(
                    result.map(|()| Bytes::from(std::mem::take(encoder.get_mut()))),
                ))
            }
            Poll::Ready(None) => {
                let encoder = this.encoder.take().expect("checked above");
                Poll::Ready(Some(encoder.finish().map(Bytes::from)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use futures_util::StreamExt;
    use std::io::Read;

    #[tokio::test]
    async fn every_frame_decodes_on_its_own() {
        let frames = vec![
            Bytes::from_static(b"data: {\"a\":1}\n\n"),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ];
        let mut s = GzipFrames::new(futures_util::stream::iter(frames));
        let first = s.next().await.unwrap().unwrap();
        // The first frame alone already decodes to the first event (sync flush).
        let mut d = flate2::write::GzDecoder::new(Vec::new());
        d.write_all(&first).unwrap();
        d.flush().unwrap();
        assert_eq!(d.get_ref().as_slice(), b"data: {\"a\":1}\n\n");
        let mut all = first.to_vec();
        while let Some(f) = s.next().await {
            all.extend_from_slice(&f.unwrap());
        }
        let mut out = String::new();
        GzDecoder::new(&all[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }
}
