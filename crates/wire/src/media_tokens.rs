//! Upper bounds of the prompt tokens that images, input audio and files (PDFs) cost, by the
//! providers' documented rules, for the gateway's admission hold. A chat request carries no image
//! size, so an image is bounded by the most one image can cost on the provider (a constant); audio
//! and files are bounded from the size of their base64 data. Pure arithmetic: no IO, no decoding,
//! no allocation.

/// The most one image costs on an OpenAI-dialect route serving `model` (the upstream model name),
/// with `detail: "low"` or not (`high`, `auto` or absent).
///
/// OpenAI's vision guide ("Calculating costs"), tile-based models (GPT-4o, GPT-4.1, GPT-4.5, o1,
/// o3): `low` costs a flat base (85); `high` scales the image into 2048×2048, then its shortest side
/// to 768, and costs the base plus 170 per 512-px tile: at most 2 × 4 tiles, 85 + 8 × 170 = 1,445.
/// gpt-4o-mini bills the same dollars with a base of 2,833 and 5,667 per tile (48,169 at most).
/// Patch-based models (gpt-4.1-mini/-nano, o4-mini and newer) cost 32-px patches, at most 1,536,
/// times a per-model multiplier of up to 2.46 (gpt-4.1-nano), regardless of `detail`: 3,779. A
/// model the table does not know gets that largest non-outlier figure.
pub fn openai_image_max(model: &str, detail_low: bool) -> u64 {
    let m = model.rsplit('/').next().unwrap_or(model);
    if m.starts_with("gpt-4o-mini") {
        return if detail_low {
            GPT_4O_MINI_BASE
        } else {
            GPT_4O_MINI_BASE + MAX_TILES * GPT_4O_MINI_TILE
        };
    }
    let tiled = [
        "gpt-4o",
        "chatgpt-4o",
        "gpt-4-turbo",
        "gpt-4.1",
        "gpt-4.5",
        "o1",
        "o3",
    ]
    .iter()
    .any(|p| m.starts_with(p))
        && !m.contains("-mini")
        && !m.contains("-nano");
    match (tiled, detail_low) {
        (true, true) => TILE_BASE,
        (true, false) => TILE_BASE + MAX_TILES * TILE_TOKENS,
        (false, _) => PATCH_MAX,
    }
}

/// The most one image costs on an Anthropic route. Anthropic's vision guide: about
/// width × height / 750 tokens (one token per 28×28-px patch in the current guide), images above
/// the model's native resolution are first scaled down: about 1,600 tokens at most up to Claude 4.6
/// (1.15 megapixels), and 2,576 px on the long edge (about 3.75 megapixels, ≈ 4,784 patches) for
/// Claude Opus 4.7. The larger figure, rounded up.
pub const ANTHROPIC_IMAGE_MAX: u64 = 4_800;

/// The most input audio of `base64_len` base64 characters costs. OpenAI bills user audio at one
/// token per 100 ms (Realtime API cost guide); the slowest format it accepts, MP3 at 8 kbit/s,
/// holds 1,000 bytes per second, so a token per 100 decoded bytes bounds it.
pub fn audio_max(base64_len: usize) -> u64 {
    decoded_len(base64_len).div_ceil(AUDIO_BYTES_PER_TOKEN) + 1
}

/// The most pages a file (PDF) can have, given the size of its base64 data (`None` for a file
/// referenced by id, whose size the gateway cannot see): a page takes at least
/// [`PDF_MIN_PAGE_BYTES`], and no provider takes more than 600 pages in one request (Anthropic's
/// PDF guide; OpenAI's file inputs allow fewer).
pub fn file_pages(base64_len: Option<usize>) -> u64 {
    match base64_len {
        Some(len) => decoded_len(len)
            .div_ceil(PDF_MIN_PAGE_BYTES)
            .clamp(1, PDF_MAX_PAGES),
        None => PDF_MAX_PAGES,
    }
}

/// The most one PDF page costs, given the most one page image costs on the route. Both providers
/// turn each page into its extracted text plus an image of the page (Anthropic's PDF guide:
/// typically 1,500–3,000 text tokens per page, plus the page image).
pub fn page_max(page_image_max: u64) -> u64 {
    PDF_PAGE_TEXT_TOKENS + page_image_max
}

/// Bytes that `len` base64 characters decode to, at most.
fn decoded_len(len: usize) -> u64 {
    (len as u64).div_ceil(4) * 3
}

const TILE_BASE: u64 = 85;
const TILE_TOKENS: u64 = 170;
/// 768 px / 512 → 2 tiles across the short side; 2048 px / 512 → 4 along the long side.
const MAX_TILES: u64 = 8;
const GPT_4O_MINI_BASE: u64 = 2_833;
const GPT_4O_MINI_TILE: u64 = 5_667;
/// 1,536 patches × 2.46 (gpt-4.1-nano's multiplier), rounded up.
const PATCH_MAX: u64 = 3_779;
const AUDIO_BYTES_PER_TOKEN: u64 = 100;
/// A page object, its content stream and its cross-reference entry: a conservative floor.
pub const PDF_MIN_PAGE_BYTES: u64 = 512;
const PDF_MAX_PAGES: u64 = 600;
const PDF_PAGE_TEXT_TOKENS: u64 = 3_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenAI's documented high-detail rule for an image of `w`×`h`.
    fn tiles(w: f64, h: f64, base: u64, tile: u64) -> u64 {
        let fit = (2048.0 / w.max(h)).min(1.0);
        let (w, h) = (w * fit, h * fit);
        let short = (768.0 / w.min(h)).min(1.0);
        let (w, h) = (w * short, h * short);
        base + tile * ((w / 512.0).ceil() as u64) * ((h / 512.0).ceil() as u64)
    }

    #[test]
    fn the_image_maximum_is_the_worst_size_under_the_tile_rule() {
        // OpenAI's own examples: 1024×1024 high = 765; 2048×4096 high = 1105.
        assert_eq!(tiles(1024.0, 1024.0, 85, 170), 765);
        assert_eq!(tiles(2048.0, 4096.0, 85, 170), 1105);
        let mut worst = 0;
        for w in (64..=8192).step_by(64) {
            for h in (64..=8192).step_by(256) {
                worst = worst.max(tiles(w as f64, h as f64, 85, 170));
            }
        }
        assert!(worst <= openai_image_max("gpt-4o", false), "{worst}");
        assert_eq!(openai_image_max("gpt-4o-2024-08-06", true), 85);
        assert_eq!(openai_image_max("gpt-4o-mini", false), 48_169);
        // Unknown and patch-based models ignore `detail` and get the largest figure.
        assert_eq!(openai_image_max("gpt-4.1-nano", true), 3_779);
        assert_eq!(openai_image_max("some-local-model", true), 3_779);
        let opus_4_7_16_by_9 = 2576u64 * 1456 / 784;
        assert!(ANTHROPIC_IMAGE_MAX >= opus_4_7_16_by_9);
    }

    #[test]
    fn audio_and_files_are_bounded_by_their_size() {
        // One minute of 8 kbit/s MP3: 60,000 bytes, 80,000 base64 characters, 600 tokens.
        assert_eq!(audio_max(80_000), 601);
        assert_eq!(file_pages(Some(8)), 1);
        assert_eq!(file_pages(Some(4 * 512 / 3 * 10)), 10);
        assert_eq!(file_pages(None), 600);
        assert_eq!(file_pages(Some(100_000_000)), 600);
        assert_eq!(page_max(1_600), 4_600);
    }
}
