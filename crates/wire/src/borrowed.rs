//! Serde helpers for the borrowed views read on the streaming hot path: a nullable JSON string
//! deserialised as a slice of the input when it has no escapes, and copied only when it has;
//! lenient readers for fields that must never make a chunk unreadable.

use std::borrow::Cow;

/// A nullable string, borrowed from the input when it has no escapes. (Serde's own
/// `Option<Cow<str>>` always copies: its `borrow` applies to a bare `Cow` only.)
pub(crate) fn nullable_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    d.deserialize_option(Text { lenient: false })
}

/// A field read only when it is a string (borrowed when it has no escapes); any other JSON value
/// is skipped as `None`, so that a field the relay merely passes through can never make a chunk
/// unreadable.
pub(crate) fn lenient_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    d.deserialize_any(Text { lenient: true })
}

/// The visitor of both: a string (borrowed when it can be) or null; any other value is `None`
/// when `lenient`, else the usual type error.
struct Text {
    lenient: bool,
}

impl Text {
    fn other<'de, E: serde::de::Error>(
        &self,
        got: serde::de::Unexpected<'_>,
    ) -> Result<Option<Cow<'de, str>>, E> {
        if self.lenient {
            Ok(None)
        } else {
            Err(E::invalid_type(got, self))
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Text {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if self.lenient {
            "any JSON value"
        } else {
            "a string or null"
        })
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.other(serde::de::Unexpected::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.other(serde::de::Unexpected::Signed(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.other(serde::de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.other(serde::de::Unexpected::Float(v))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        if !self.lenient {
            return self.other(serde::de::Unexpected::Seq);
        }
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        if !self.lenient {
            return self.other(serde::de::Unexpected::Map);
        }
        while a
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
}

/// A field read only when it is a non-negative integer; any other JSON value is `None` (what
/// `Value::as_u64` gives), so that it never makes a chunk unreadable.
pub(crate) fn lenient_u64<'de, D>(d: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    Ok(serde_json::Value::deserialize(d)?.as_u64())
}
