//! Prices and money: USD amounts as integer nano-dollars (`Nanos`), prices as exact decimals per
//! million tokens, and the cost of a request's usage. No floating point anywhere.

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
}

/// The cost of one request, split as the cost comment shows it: `total = input + output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub input: Nanos,
    pub output: Nanos,
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
    /// What `usage` costs. Reasoning tokens are part of the completion and bill as output;
    /// cached prompt tokens bill at the cached price. Each part is rounded to the nano-dollar once.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let cached_price = self.cached_input.unwrap_or(self.input);
        let input_usd = (Decimal::from(uncached) * self.input
            + Decimal::from(cached) * cached_price)
            / Decimal::from(1_000_000);
        Cost {
            input: Nanos::from_usd(input_usd).unwrap_or(Nanos(i64::MAX)),
            output: per_million(usage.completion_tokens, self.output),
        }
    }

    /// The most `prompt_tokens` in and `max_output` out can cost (prompt at the full input price).
    pub fn worst_case(&self, prompt_tokens: u64, max_output: u64) -> Nanos {
        per_million(prompt_tokens, self.input) + per_million(max_output, self.output)
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
            cached_input: None,
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
    fn sub_nano_amounts_round_half_away_from_zero() {
        let p = Prices {
            input: d("0.0000375"),
            output: d("0"),
            cached_input: None,
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
