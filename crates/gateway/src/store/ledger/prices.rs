//! Prices and money: USD amounts as integer nano-dollars (`Nanos`), prices as exact decimals per
//! million tokens, and the cost of a request's usage. No floating point anywhere. Also the one
//! parser of an amount a person types (admin API and CLI): exact decimal text, bounded, signed
//! only where that means something.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use switchyard_wire::usage::Usage;

/// An amount of money in nano-USD (10⁻⁹ USD). `i64` holds ±9.2 billion USD.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub i64);

const NANOS_PER_USD: i64 = 1_000_000_000;

/// The largest amount an admin or the CLI may give, and the largest balance a top-up may reach:
/// USD 1e9, far inside what the ledger's integer nano-USD columns hold on SQLite and PostgreSQL.
pub const MAX_USD: i64 = 1_000_000_000;
/// `MAX_USD` in nano-USD.
pub const MAX_AMOUNT: Nanos = Nanos(MAX_USD * NANOS_PER_USD);

/// Which amounts a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountRule {
    /// 0 or more (a balance, a budget, a starting credit).
    NonNegative,
    /// More than 0 (a top-up: adding nothing is a mistake, not a request).
    Positive,
}

/// Why an amount of USD was refused; the message completes "'FIELD' = TEXT …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is not an amount of USD: give a decimal such as \"12.50\"")]
    NotAnAmount,
    #[error("must not be negative")]
    Negative,
    #[error("must be more than 0")]
    Zero,
    #[error("is more than {MAX_USD} USD")]
    TooLarge,
    #[error("has more than 9 decimal places; amounts are exact to the nano-dollar")]
    TooPrecise,
}

/// Parses an amount of USD exactly: `12.50`, `-3`, `0.000000001`, `1e3`, `2.5E-2` (the JSON number
/// grammar, leading `+` allowed, surrounding spaces ignored). Nothing is rounded: an amount finer than
/// a nano-dollar is refused, and so is one beyond `MAX_USD`. Linear in the text; never panics.
pub fn parse_usd(text: &str, rule: AmountRule) -> Result<Nanos, AmountError> {
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !digits(int)
        || !digits(frac)
        || (mantissa.contains('.') && frac.is_empty())
    {
        return Err(AmountError::NotAnAmount);
    }
    // The value is DIGITS × 10^scale, with DIGITS = int ++ frac.
    let mut scale: i64 = -(frac.len() as i64);
    if let Some(e) = exponent {
        let (e_neg, e_digits) = match e.as_bytes().first() {
            Some(b'-') => (true, &e[1..]),
            Some(b'+') => (false, &e[1..]),
            _ => (false, e),
        };
        if e_digits.is_empty() || !digits(e_digits) {
            return Err(AmountError::NotAnAmount);
        }
        // Saturates: an exponent past a million digits is out of range either way.
        let e_val = e_digits
            .trim_start_matches('0')
            .parse::<i64>()
            .unwrap_or(if e_digits.trim_start_matches('0').is_empty() {
                0
            } else {
                i64::MAX / 4
            })
            .min(i64::MAX / 4);
        scale = scale.saturating_add(if e_neg { -e_val } else { e_val });
    }
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return match rule {
            AmountRule::Positive => Err(AmountError::Zero),
            AmountRule::NonNegative => Ok(Nanos::ZERO),
        };
    }
    if negative {
        return Err(AmountError::Negative);
    }
    // In nano-USD: `trimmed` × 10^(scale + 9 + the zeros trimmed off its end).
    let shift = scale
        .saturating_add(9)
        .saturating_add((significant.len() - trimmed.len()) as i64);
    if shift < 0 {
        return Err(AmountError::TooPrecise);
    }
    // MAX_AMOUNT has 19 digits: anything longer is too large, and what is left fits an i128.
    if (trimmed.len() as i64).saturating_add(shift) > 19 {
        return Err(AmountError::TooLarge);
    }
    let value = trimmed
        .parse::<i128>()
        .map_err(|_| AmountError::NotAnAmount)?
        * 10i128.pow(shift as u32);
    if value > MAX_AMOUNT.0 as i128 {
        return Err(AmountError::TooLarge);
    }
    Ok(Nanos(value as i64))
}

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Converts a USD decimal, rounding half away from zero to the nano-dollar.
    /// `None` when the amount does not fit.
    pub fn from_usd(usd: Decimal) -> Option<Nanos> {
        usd.checked_mul(Decimal::from(NANOS_PER_USD))?
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            .to_i64()
            .map(Nanos)
    }

    pub fn to_usd(self) -> Decimal {
        Decimal::from_i128_with_scale(self.0 as i128, 9).normalize()
    }
}

impl std::fmt::Display for Nanos {
    /// A plain decimal string in USD, as money is written in JSON: `0.0012`, `5`, `-0.5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_usd())
    }
}

impl std::ops::Add for Nanos {
    type Output = Nanos;
    fn add(self, o: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(o.0))
    }
}

/// A model's prices, in USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: Decimal,
    pub output: Decimal,
    /// Price of prompt tokens served from the provider's cache; the input price when unset.
    pub cached_input: Option<Decimal>,
    /// Price of prompt tokens written to the provider's cache (Anthropic's 5-minute writes); the
    /// input price when unset.
    pub cache_write: Option<Decimal>,
    /// Price of prompt tokens written to the cache for an hour (Anthropic's `ephemeral_1h`); the
    /// 5-minute write price when unset.
    pub cache_write_1h: Option<Decimal>,
}

/// What a provider charges for its prompt cache, as a share of the input price (its published
/// price sheets): reads, 5-minute writes, 1-hour writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRatios {
    pub read: Decimal,
    pub write: Decimal,
    pub write_1h: Decimal,
}

impl CacheRatios {
    /// Anthropic: reads 0.1×, 5-minute writes 1.25×, 1-hour writes 2× the input price.
    pub const ANTHROPIC: CacheRatios = CacheRatios {
        read: Decimal::from_parts(1, 0, 0, false, 1),
        write: Decimal::from_parts(125, 0, 0, false, 2),
        write_1h: Decimal::from_parts(2, 0, 0, false, 0),
    };
    /// OpenAI: cached reads at half the input price (GPT-4o's sheet; set `cached_input_price`
    /// for models whose discount is deeper); writes free of any premium.
    pub const OPENAI: CacheRatios = CacheRatios {
        read: Decimal::from_parts(5, 0, 0, false, 1),
        write: Decimal::ONE,
        write_1h: Decimal::ONE,
    };
    /// Gemini (implicit caching): reads at a quarter of the input price.
    pub const GEMINI: CacheRatios = CacheRatios {
        read: Decimal::from_parts(25, 0, 0, false, 2),
        write: Decimal::ONE,
        write_1h: Decimal::ONE,
    };
    /// DeepSeek: cache hits at a tenth of the miss price.
    pub const DEEPSEEK: CacheRatios = CacheRatios {
        read: Decimal::from_parts(1, 0, 0, false, 1),
        write: Decimal::ONE,
        write_1h: Decimal::ONE,
    };
}

/// The cost of one request, split as the cost comment shows it: `total = input + output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub input: Nanos,
    pub output: Nanos,
    /// What the prompt cache saved against the whole prompt at the input price (negative when
    /// writes cost more than reads saved).
    pub cache_saved: Nanos,
}

impl Cost {
    pub fn total(&self) -> Nanos {
        self.input + self.output
    }
}

fn per_million(tokens: u64, price: Decimal) -> Nanos {
    Nanos::from_usd(Decimal::from(tokens) * price / Decimal::from(1_000_000))
        .unwrap_or(Nanos(i64::MAX))
}

impl Prices {
    /// These prices with the cache prices left unset taken from `ratios` of the input price.
    pub fn with_cache_defaults(mut self, ratios: CacheRatios) -> Prices {
        if self.input.is_zero() {
            return self;
        }
        let of = |r: Decimal| (self.input * r).normalize();
        self.cached_input = self.cached_input.or(Some(of(ratios.read)));
        let write = self.cache_write.unwrap_or_else(|| of(ratios.write));
        self.cache_write = Some(write);
        // A 1-hour write given no price of its own keeps the ratio to the 5-minute one.
        self.cache_write_1h = self.cache_write_1h.or_else(|| {
            Some(if ratios.write.is_zero() {
                write
            } else {
                (write * ratios.write_1h / ratios.write).normalize()
            })
        });
        self
    }

    /// What `usage` costs. Reasoning tokens are part of the completion and bill as output; of
    /// the prompt, cache reads bill at the cached price, 5-minute writes at the write price,
    /// 1-hour writes at theirs and the rest at the input price. The input part is rounded to the
    /// nano-dollar once, and so is the output part.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let prompt = usage.prompt_tokens;
        let cached = usage.cached_tokens.min(prompt);
        let written = usage.cache_write_tokens.min(prompt - cached);
        let written_1h = usage.cache_write_1h_tokens.min(written);
        let uncached = prompt - cached - written;
        let write = self.cache_write.unwrap_or(self.input);
        let input_usd = (Decimal::from(uncached) * self.input
            + Decimal::from(cached) * self.cached_input.unwrap_or(self.input)
            + Decimal::from(written - written_1h) * write
            + Decimal::from(written_1h) * self.cache_write_1h.unwrap_or(write))
            / Decimal::from(1_000_000);
        let input = Nanos::from_usd(input_usd).unwrap_or(Nanos(i64::MAX));
        Cost {
            input,
            output: per_million(usage.completion_tokens, self.output),
            cache_saved: Nanos(per_million(prompt, self.input).0.saturating_sub(input.0)),
        }
    }

    /// The most `prompt_tokens` in and `max_output` out can cost: the prompt at the dearest of
    /// the input and cache-write prices.
    pub fn worst_case(&self, prompt_tokens: u64, max_output: u64) -> Nanos {
        let prompt_price = [self.cache_write, self.cache_write_1h]
            .into_iter()
            .flatten()
            .fold(self.input, Decimal::max);
        per_million(prompt_tokens, prompt_price) + per_million(max_output, self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn typed_amounts_are_exact_and_bounded() {
        use AmountError::*;
        use AmountRule::*;
        let ok = |t: &str| parse_usd(t, NonNegative);
        assert_eq!(ok("12.50"), Ok(Nanos(12_500_000_000)));
        assert_eq!(ok(" 3 "), Ok(Nanos(3_000_000_000)));
        assert_eq!(ok("+0.000000001"), Ok(Nanos(1)));
        assert_eq!(ok("1e3"), Ok(Nanos(1_000 * NANOS_PER_USD)));
        assert_eq!(ok("2.5E-2"), Ok(Nanos(25_000_000)));
        assert_eq!(ok("0.10000000000000000000"), Ok(Nanos(100_000_000)));
        assert_eq!(ok("1000000000"), Ok(MAX_AMOUNT));
        assert_eq!(ok("0"), Ok(Nanos::ZERO));
        assert_eq!(ok("-0"), Ok(Nanos::ZERO));
        assert_eq!(ok("0e999999999999999999999"), Ok(Nanos::ZERO));
        assert_eq!(ok("1000000000.000000001"), Err(TooLarge));
        assert_eq!(ok("1e25"), Err(TooLarge));
        assert_eq!(ok("1e99999999999999999999999"), Err(TooLarge));
        assert_eq!(ok("79228162514264337593543950335"), Err(TooLarge));
        assert_eq!(ok("0.0000000001"), Err(TooPrecise));
        assert_eq!(ok("1e-99999999999999999999"), Err(TooPrecise));
        assert_eq!(ok("-5"), Err(Negative));
        assert_eq!(ok("-1e25"), Err(Negative));
        for bad in [
            "", "-", "abc", "1.", ".5", "1e", "1e+", "NaN", "inf", "1_000", "0x10", "1,5", "١",
        ] {
            assert_eq!(ok(bad), Err(NotAnAmount), "{bad:?}");
        }
        assert_eq!(parse_usd("0.000", Positive), Err(Zero));
        assert_eq!(parse_usd("0.01", Positive), Ok(Nanos(10_000_000)));
    }

    #[test]
    fn amounts_too_large_for_nanos_are_refused_not_a_panic() {
        assert_eq!(Nanos::from_usd(d("1e25")), None);
        assert_eq!(Nanos::from_usd(d("79228162514264337593543950335")), None);
        assert_eq!(Nanos::from_usd(d("2.5")), Some(Nanos(2_500_000_000)));
    }

    #[test]
    fn cost_matches_the_seed_example_shape() {
        // 15 prompt tokens at $20/M = $0.0003; 42 completion tokens at $21.428571…: use round numbers.
        let p = Prices {
            input: d("20"),
            output: d("25"),
            ..Prices::default()
        };
        let c = p.cost(&Usage {
            prompt_tokens: 15,
            completion_tokens: 36,
            ..Usage::default()
        });
        assert_eq!(c.input.to_string(), "0.0003");
        assert_eq!(c.output.to_string(), "0.0009");
        assert_eq!(c.total().to_string(), "0.0012");
    }

    #[test]
    fn cached_and_reasoning_tokens() {
        let p = Prices {
            input: d("2.50"),
            output: d("10.00"),
            cached_input: Some(d("1.25")),
            ..Prices::default()
        };
        let c = p.cost(&Usage {
            prompt_tokens: 1000,
            cached_tokens: 400,
            completion_tokens: 100,
            reasoning_tokens: 60,
            ..Usage::default()
        });
        // 600 × 2.5 + 400 × 1.25 = 2000 µ$ ; 100 × 10 = 1000 µ$
        assert_eq!(c.input, Nanos(2_000_000));
        assert_eq!(c.output, Nanos(1_000_000));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_bill_at_its_price_sheet() {
        // Claude Sonnet: $3 input, $15 output; the sheet: reads $0.30, 5-minute writes $3.75,
        // 1-hour writes $6 per million.
        let p = Prices {
            input: d("3"),
            output: d("15"),
            ..Prices::default()
        }
        .with_cache_defaults(CacheRatios::ANTHROPIC);
        assert_eq!(p.cached_input, Some(d("0.3")));
        assert_eq!(p.cache_write, Some(d("3.75")));
        assert_eq!(p.cache_write_1h, Some(d("6")));
        let c = p.cost(&Usage {
            // 17 uncached + 20,000 read + 1,000 written for 5 minutes + 2,000 for an hour.
            prompt_tokens: 23_017,
            cached_tokens: 20_000,
            cache_write_tokens: 3_000,
            cache_write_1h_tokens: 2_000,
            completion_tokens: 10,
            ..Usage::default()
        });
        // 17×3 + 20,000×0.30 + 1,000×3.75 + 2,000×6 = 21,801 µ$; 10×15 = 150 µ$.
        assert_eq!(c.input, Nanos(21_801_000));
        assert_eq!(c.output, Nanos(150_000));
        // Against 23,017 × $3 = 69,051 µ$ at the input price.
        assert_eq!(c.cache_saved, Nanos(69_051_000 - 21_801_000));
        // A hold covers a prompt written to the cache for an hour.
        assert_eq!(p.worst_case(1_000, 0), Nanos(6_000_000));
    }

    #[test]
    fn configured_cache_prices_win_and_a_1h_price_follows_the_write_price() {
        let p = Prices {
            input: d("3"),
            output: d("15"),
            cached_input: Some(d("0.25")),
            cache_write: Some(d("4")),
            ..Prices::default()
        }
        .with_cache_defaults(CacheRatios::ANTHROPIC);
        assert_eq!(p.cached_input, Some(d("0.25")));
        assert_eq!(p.cache_write, Some(d("4")));
        assert_eq!(p.cache_write_1h, Some(d("6.4")));
        // A free model stays free; an OpenAI route's writes cost what input costs.
        let free = Prices::default().with_cache_defaults(CacheRatios::ANTHROPIC);
        assert_eq!(free, Prices::default());
        let o = Prices {
            input: d("2.5"),
            output: d("10"),
            ..Prices::default()
        }
        .with_cache_defaults(CacheRatios::OPENAI);
        assert_eq!(
            (o.cached_input, o.cache_write),
            (Some(d("1.25")), Some(d("2.5")))
        );
    }

    #[test]
    fn sub_nano_amounts_round_half_away_from_zero() {
        let p = Prices {
            input: d("0.0000375"),
            output: d("0"),
            ..Prices::default()
        };
        // 1 token × 0.0000375 / 1e6 USD = 0.0375 nano → 0
        assert_eq!(
            p.cost(&Usage {
                prompt_tokens: 1,
                ..Usage::default()
            })
            .input,
            Nanos(0)
        );
        // 20 tokens = 0.75 nano → 1
        assert_eq!(
            p.cost(&Usage {
                prompt_tokens: 20,
                ..Usage::default()
            })
            .input,
            Nanos(1)
        );
    }

    #[test]
    fn money_prints_as_plain_decimal() {
        assert_eq!(Nanos(5 * NANOS_PER_USD).to_string(), "5");
        assert_eq!(Nanos(1).to_string(), "0.000000001");
        assert_eq!(Nanos::from_usd(d("12.345")).unwrap(), Nanos(12_345_000_000));
    }
}
