//! `[streams]` and `[responses]`: replay buffers and stored Responses, with their defaults.

use std::time::Duration;

use super::raw::RawStreams;

/// `[streams]`: the bounds of the replay buffers (`relay::replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamsConfig {
    /// How long a resumable stream goes on with no reader before it is cancelled (60 s).
    pub grace: Duration,
    /// The most one stream keeps (8 MiB); past it its oldest events go.
    pub max_stream_bytes: usize,
    /// The most all streams keep (256 MiB); past it finished streams go, oldest first.
    pub max_total_bytes: usize,
    /// How long a finished stream can still be read (5 minutes).
    pub keep_finished: Duration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            grace: Duration::from_secs(60),
            max_stream_bytes: 8 << 20,
            max_total_bytes: 256 << 20,
            keep_finished: Duration::from_secs(300),
        }
    }
}

pub(super) fn streams_config(r: RawStreams) -> Result<StreamsConfig, String> {
    let d = StreamsConfig::default();
    let ms = |key: &str, v: Option<u64>, d: Duration| match v {
        Some(0) => Err(format!("streams.{key} = 0: must be at least 1 ms")),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Ok(d),
    };
    let bytes = |key: &str, v: Option<usize>, d: usize| match v {
        Some(0) => Err(format!("streams.{key} = 0: must be at least 1 byte")),
        Some(v) => Ok(v),
        None => Ok(d),
    };
    Ok(StreamsConfig {
        grace: ms("resume_grace_ms", r.resume_grace_ms, d.grace)?,
        max_stream_bytes: bytes(
            "replay_max_stream_bytes",
            r.replay_max_stream_bytes,
            d.max_stream_bytes,
        )?,
        max_total_bytes: bytes(
            "replay_max_total_bytes",
            r.replay_max_total_bytes,
            d.max_total_bytes,
        )?,
        keep_finished: ms(
            "replay_keep_finished_ms",
            r.replay_keep_finished_ms,
            d.keep_finished,
        )?,
    })
}

/// `[responses]`: a Responses API conversation stored (`store`, true by default as in OpenAI's
/// API) is kept `retention` (30 days by default, as OpenAI keeps them; zero stores none), then
/// purged; revoking a key deletes its stored responses unless `keep_on_revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsesConfig {
    pub retention: Duration,
    pub keep_on_revoke: bool,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            retention: Duration::from_secs(30 * 86_400),
            keep_on_revoke: false,
        }
    }
}
