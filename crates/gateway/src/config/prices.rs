//! A model's prices as the file gives them, checked (with their line) and completed.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::errors::{line_of, ConfigError};
use super::kinds::ModelKind;
use super::model::Route;
use super::raw::RawModel;
use crate::store::ledger::Prices;

/// The largest price a model may have, in USD per 1M tokens (a dollar a token). Far above any
/// provider's, and low enough that pricing any token count stays within `Decimal`'s range: a
/// price the fuzzer found (2.2e26) made every request's cost a multiplication overflow, a panic.
pub(super) const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// One price of model `model` (`field`), with its line when it is refused.
fn parse_price(
    text: &str,
    path: &str,
    model: &str,
    field: &str,
    v: &Option<toml::Spanned<String>>,
) -> Result<Option<Decimal>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let invalid = |what: String| ConfigError::Invalid {
        path: path.to_owned(),
        message: format!(
            "line {}: models.\"{model}\".{field} = \"{}\" {what}",
            line_of(text, v.span().start),
            v.get_ref()
        ),
    };
    match Decimal::from_str(v.get_ref()) {
        Ok(d) if d > MAX_PRICE => Err(invalid(format!(
            "is over the largest price accepted, USD {MAX_PRICE} per 1M tokens"
        ))),
        Ok(d) if !d.is_sign_negative() => Ok(Some(d)),
        _ => Err(invalid(
            "is not a non-negative decimal number of USD per 1M tokens".into(),
        )),
    }
}

/// A model's prices: both `input_price` and `output_price`, or none at all with `free = true`, so
/// that a forgotten price cannot serve a model for nothing.
fn model_prices(
    text: &str,
    path: &str,
    name: &str,
    m: &RawModel,
    input: Option<Decimal>,
    output: Option<Decimal>,
    cache: [Option<Decimal>; 3],
) -> Result<Prices, ConfigError> {
    let [cached_input, cache_write, cache_write_1h] = cache;
    let invalid = |line: usize, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message: format!("line {line}: models.\"{name}\" {message}"),
    };
    let free = m.free.as_ref().is_some_and(|f| *f.get_ref());
    // An embedding model is priced per input token only: no output price needed.
    let output = match (m.kind, output) {
        (Some(ModelKind::Embedding), None) if input.is_some() => Some(Decimal::ZERO),
        (_, output) => output,
    };
    match (free, input, output) {
        (true, None, None) if cache.iter().all(Option::is_none) => Ok(Prices::default()),
        (true, ..) => Err(invalid(
            line_of(text, m.free.as_ref().map_or(0, |f| f.span().start)),
            "is marked free = true but also has prices; remove one or the other".into(),
        )),
        (false, Some(input), Some(output)) => Ok(Prices {
            input,
            output,
            cached_input,
            cache_write,
            cache_write_1h,
        }),
        (false, input, _) => {
            let missing = if input.is_none() {
                "input_price"
            } else {
                "output_price"
            };
            // The line of the model's table: its routes are required.
            let line = m
                .routes
                .first()
                .map_or(1, |r| line_of(text, r.span().start));
            Err(invalid(
                line,
                format!(
                    "has no {missing}: set input_price and output_price (USD per 1M tokens), or free = true for a model that costs nothing"
                ),
            ))
        }
    }
}

/// A model's own prices (what holds and `/v1/models` read) once its routes have their cache
/// defaults: the first route's read price, and the dearest route's write prices, so that a hold
/// covers a prompt written to the cache wherever it is served.
pub(super) fn model_cache_prices(mut prices: Prices, routes: &[Route]) -> Prices {
    let Some(first) = routes.first() else {
        return prices;
    };
    prices.cached_input = first.prices.cached_input;
    let dearest =
        |get: fn(&Prices) -> Option<Decimal>| routes.iter().filter_map(|r| get(&r.prices)).max();
    prices.cache_write = dearest(|p| p.cache_write);
    prices.cache_write_1h = dearest(|p| p.cache_write_1h);
    prices
}

/// Model `name`'s prices as configured: each one parsed, then together checked by `model_prices`.
pub(super) fn raw_prices(
    text: &str,
    path: &str,
    name: &str,
    m: &RawModel,
) -> Result<Prices, ConfigError> {
    let input = parse_price(text, path, name, "input_price", &m.input_price)?;
    let output = parse_price(text, path, name, "output_price", &m.output_price)?;
    let cache = [
        ("cached_input_price", &m.cached_input_price),
        ("cache_write_price", &m.cache_write_price),
        ("cache_write_1h_price", &m.cache_write_1h_price),
    ]
    .map(|(field, raw)| parse_price(text, path, name, field, raw));
    let [cached, write, write_1h] = cache;
    let cache = [cached?, write?, write_1h?];
    model_prices(text, path, name, m, input, output, cache)
}
