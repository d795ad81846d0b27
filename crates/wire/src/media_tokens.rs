//! Upper bounds of the prompt tokens that images, input audio and files (PDFs) cost, by the
//! providers' documented rules, for the gateway's admission hold. A chat request carries no image
//! size: the size of an inline PNG or GIF is read from its header (the first 24 bytes of its base64
//! data, decoded on the stack); any other image is bounded by the most one image can cost on the
//! provider (a constant). Audio and files are bounded from the size of their base64 data. Pure
//! arithmetic: no IO, no allocation.

use base64::Engine;

/// How a route's provider counts an image's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRule {
    /// OpenAI's tile rule (vision guide, "Calculating costs"; GPT-4o, GPT-4.1, GPT-4.5, o1, o3):
    /// `detail: "low"` costs `base`; otherwise the image is scaled into 2048×2048, then its
    /// shortest side to 768, and costs `base` plus `tile` per 512-px tile: at most 2 × 4 tiles
    /// (85 + 8 × 170 = 1,445). gpt-4o-mini bills the same dollars as 2,833 + 5,667 per tile.
    Tiles { base: u64, tile: u64 },
    /// An OpenAI-dialect model the table does not know, patch-based ones included (gpt-4.1-mini
    /// and -nano, o4-mini: 32-px patches, at most 1,536, times a multiplier of up to 2.46,
    /// whatever the `detail`): the larger of that and the 85/170 tile rule; 3,779 at most.
    OpenAiOther,
    /// Anthropic's vision guide: about width × height / 750 tokens (one per 28×28-px patch in the
    /// current guide); larger images are first scaled down to the model's native resolution:
    /// about 1,600 tokens at most up to Claude 4.6, about 3.75 megapixels (2,576 px on the long
    /// edge, ≈ 4,784 patches) for Claude Opus 4.7. [`ANTHROPIC_IMAGE_MAX`] at most.
    Anthropic,
    /// Gemini's token guide: an image with both sides up to 384 px is 258 tokens; a larger one is
    /// cut into 768×768 tiles of 258 tokens each. Gemini 3's `media_resolution` spends up to 1,120
    /// per image, whatever its size, so that is the floor; [`GEMINI_IMAGE_MAX`] at most (16 tiles,
    /// 3,072 × 3,072 px, past which images are scaled down), and when the size is unknown.
    Gemini,
}

/// The most one image costs on a Gemini route (see [`ImageRule::Gemini`]).
pub const GEMINI_IMAGE_MAX: u64 = 16 * 258;

/// Every rule, so that one walk over a request can total its images under each.
pub const IMAGE_RULES: [ImageRule; 5] = [
    ImageRule::Tiles {
        base: TILE_BASE,
        tile: TILE_TOKENS,
    },
    ImageRule::Tiles {
        base: GPT_4O_MINI_BASE,
        tile: GPT_4O_MINI_TILE,
    },
    ImageRule::OpenAiOther,
    ImageRule::Anthropic,
    ImageRule::Gemini,
];

/// The most one image costs on an Anthropic route (see [`ImageRule::Anthropic`]), rounded up.
pub const ANTHROPIC_IMAGE_MAX: u64 = 4_800;

impl ImageRule {
    /// The rule of an OpenAI-dialect route serving `model` (the upstream model name).
    pub fn openai(model: &str) -> ImageRule {
        let m = model.rsplit('/').next().unwrap_or(model);
        if m.starts_with("gpt-4o-mini") {
            return IMAGE_RULES[1];
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
        if tiled {
            IMAGE_RULES[0]
        } else {
            ImageRule::OpenAiOther
        }
    }

    /// Where this rule is in [`IMAGE_RULES`].
    pub fn index(self) -> usize {
        IMAGE_RULES.iter().position(|r| *r == self).unwrap_or(2)
    }

    /// The most one image of `size` (width, height; `None` when unknown) costs, with
    /// `detail: "low"` or not.
    pub fn tokens(self, detail_low: bool, size: Option<(u32, u32)>) -> u64 {
        match self {
            ImageRule::Tiles { base, .. } if detail_low => base,
            ImageRule::Tiles { base, tile } => base + tile * size.map_or(MAX_TILES, tiles),
            ImageRule::OpenAiOther => {
                let patches = size.map_or(MAX_PATCHES, |(w, h)| {
                    (u64::from(w).div_ceil(32) * u64::from(h).div_ceil(32)).min(MAX_PATCHES)
                });
                let tiled = IMAGE_RULES[0].tokens(false, size);
                tiled.max((patches * PATCH_MULTIPLIER_PERCENT).div_ceil(100))
            }
            ImageRule::Anthropic => size.map_or(ANTHROPIC_IMAGE_MAX, |(w, h)| {
                let (w, h) = (u64::from(w), u64::from(h));
                (w * h)
                    .div_ceil(750)
                    .max(w.div_ceil(28) * h.div_ceil(28))
                    .min(ANTHROPIC_IMAGE_MAX)
            }),
            ImageRule::Gemini => size.map_or(GEMINI_IMAGE_MAX, |(w, h)| {
                let tiles = u64::from(w).div_ceil(768) * u64::from(h).div_ceil(768);
                (tiles * 258).clamp(1_120, GEMINI_IMAGE_MAX)
            }),
        }
    }
}

/// 512-px tiles of an image under OpenAI's high-detail rule, at most [`MAX_TILES`]. Fitting into
/// 2048×2048 keeps the aspect ratio, so once the shortest side is at 768 px (at most 2 tiles) the
/// long side is 768 × long / short, whether the image was scaled up or down: an upper bound.
fn tiles((w, h): (u32, u32)) -> u64 {
    let (long, short) = (u64::from(w.max(h)), u64::from(w.min(h)).max(1));
    let long = (768 * long).div_ceil(short);
    (2 * long.div_ceil(512)).min(MAX_TILES)
}

/// The width and height of an inline PNG or GIF image (`data:image/…;base64,…`), read from its
/// header; `None` for any other image or URL.
pub fn image_size(url: &str) -> Option<(u32, u32)> {
    let (_, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
    let mut head = [0u8; 24];
    base64::engine::general_purpose::STANDARD
        .decode_slice(data.get(..32)?, &mut head)
        .ok()?;
    let be = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let le16 = |i: usize| u32::from(u16::from_le_bytes([head[i], head[i + 1]]));
    let size = if head.starts_with(b"\x89PNG\r\n\x1a\n") && &head[12..16] == b"IHDR" {
        (be(16), be(20))
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        (le16(6), le16(8))
    } else {
        return None;
    };
    (size.0 > 0 && size.1 > 0).then_some(size)
}

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
const MAX_PATCHES: u64 = 1_536;
/// gpt-4.1-nano's multiplier, the largest documented: 1,536 × 2.46 = 3,779 at most.
const PATCH_MULTIPLIER_PERCENT: u64 = 246;
const AUDIO_BYTES_PER_TOKEN: u64 = 100;
/// A page object, its content stream and its cross-reference entry: a conservative floor.
pub const PDF_MIN_PAGE_BYTES: u64 = 512;
const PDF_MAX_PAGES: u64 = 600;
const PDF_PAGE_TEXT_TOKENS: u64 = 3_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenAI's documented high-detail rule for an image of `w`×`h` (scaling down only).
    fn documented(w: u64, h: u64) -> u64 {
        let fit = |v: u64, long: u64| if long > 2048 { v * 2048 / long } else { v };
        let (w, h) = (fit(w, w.max(h)), fit(h, w.max(h)));
        let short = w.min(h);
        let (w, h) = if short > 768 {
            (w * 768 / short, h * 768 / short)
        } else {
            (w, h)
        };
        85 + 170 * w.div_ceil(512) * h.div_ceil(512)
    }

    fn max(rule: ImageRule, low: bool) -> u64 {
        rule.tokens(low, None)
    }

    #[test]
    fn openai_images_cost_at_most_the_tile_rule_and_its_maximum() {
        let gpt_4o = ImageRule::openai("gpt-4o-2024-08-06");
        // OpenAI's own examples: 1024×1024 high = 765; 2048×4096 high = 1105.
        assert_eq!(gpt_4o.tokens(false, Some((1024, 1024))), 765);
        assert_eq!(gpt_4o.tokens(false, Some((2048, 4096))), 1105);
        for w in (16..=8192).step_by(61) {
            for h in (16..=8192).step_by(251) {
                let size = Some((w as u32, h as u32));
                let t = gpt_4o.tokens(false, size);
                assert!(t >= documented(w, h) && t <= max(gpt_4o, false), "{w}×{h}");
                let other = ImageRule::OpenAiOther.tokens(true, size);
                assert!(other >= t && other <= 3_779, "{w}×{h}");
            }
        }
        assert_eq!(max(gpt_4o, false), 1_445);
        assert_eq!(max(gpt_4o, true), 85);
        assert_eq!(max(ImageRule::openai("gpt-4o-mini"), false), 48_169);
        // Unknown and patch-based models ignore `detail` and get the largest figure.
        assert_eq!(max(ImageRule::openai("gpt-4.1-nano"), true), 3_779);
        assert_eq!(max(ImageRule::openai("some-local-model"), true), 3_779);
        for rule in IMAGE_RULES {
            assert_eq!(IMAGE_RULES[rule.index()], rule);
        }
    }

    #[test]
    fn gemini_images_are_258_per_tile_within_the_floor_and_the_cap() {
        let g = ImageRule::Gemini;
        assert_eq!(g.tokens(false, None), GEMINI_IMAGE_MAX);
        assert_eq!(g.tokens(true, Some((300, 300))), 1_120);
        assert_eq!(g.tokens(false, Some((3072, 3072))), 16 * 258);
        assert_eq!(g.tokens(false, Some((8000, 8000))), GEMINI_IMAGE_MAX);
        assert!(g.tokens(false, Some((1536, 1536))) >= 4 * 258);
    }

    #[test]
    fn anthropic_images_cost_by_their_pixels_up_to_the_maximum() {
        let a = ImageRule::Anthropic;
        // Anthropic's table: 200×200 ≈ 54, 1000×1000 ≈ 1,334, 1092×1092 ≈ 1,590.
        assert!((54..=64).contains(&a.tokens(false, Some((200, 200)))));
        assert!((1_334..=1_370).contains(&a.tokens(false, Some((1000, 1000)))));
        assert!((1_590..=1_600).contains(&a.tokens(false, Some((1092, 1092)))));
        assert_eq!(a.tokens(true, Some((8000, 8000))), ANTHROPIC_IMAGE_MAX);
        let opus_4_7_16_by_9 = 2576u64 * 1456 / 784;
        assert!(ANTHROPIC_IMAGE_MAX >= opus_4_7_16_by_9);
    }

    #[test]
    fn inline_png_and_gif_sizes_are_read_from_their_header() {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
        let url = format!("data:image/png;base64,{}", b64(&png));
        assert_eq!(image_size(&url), Some((640, 480)));
        let gif = b"GIF89a\x20\x03\x58\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let url = format!("data:image/gif;base64,{}", b64(gif));
        assert_eq!(image_size(&url), Some((800, 600)));
        assert_eq!(image_size("https://example.com/a.png"), None);
        assert_eq!(
            image_size("data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wBD"),
            None
        );
        assert_eq!(image_size("data:image/png;base64,iVBORw0KGgo="), None);
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
