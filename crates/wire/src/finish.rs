//! [`FinishReason`]: why an answer ended, typed once where each upstream dialect's reader meets
//! it and rendered to text only by each client dialect's encoder.
//!
//! The vocabulary is OpenAI's `finish_reason` (`stop`, `length`, `tool_calls`, `content_filter`,
//! `function_call`). Reading is tolerant: a reason a dialect does not define (a new Anthropic
//! `stop_reason`, a new Gemini `finishReason`, a provider's own OpenAI spelling) is read as
//! [`FinishReason::Stop`], which is what every client was always given for it (OpenAI `stop`,
//! Anthropic `end_turn`, Gemini `STOP`, a completed Response), so an unknown value never breaks a
//! client and no text is kept for it. DeepSeek's `insufficient_system_resource` (the answer was
//! cut short) is read as [`FinishReason::Length`].

use serde::{Serialize, Serializer};

/// Why an answer ended, in OpenAI's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// OpenAI's legacy `function_call`, passed on to chat clients as it came.
    FunctionCall,
}

impl FinishReason {
    pub const ALL: [FinishReason; 5] = [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
        FinishReason::FunctionCall,
    ];

    /// An OpenAI-dialect upstream's `finish_reason` (tolerant, see the module documentation).
    pub fn from_openai(reason: &str) -> FinishReason {
        match reason {
            "length" | "insufficient_system_resource" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "function_call" => FinishReason::FunctionCall,
            _ => FinishReason::Stop,
        }
    }

    /// An Anthropic `stop_reason`: `end_turn`, `stop_sequence` and `pause_turn` → `Stop`;
    /// `max_tokens` and `model_context_window_exceeded` → `Length`; `tool_use` → `ToolCalls`;
    /// `refusal` → `ContentFilter`; anything unknown → `Stop`.
    pub fn from_anthropic(stop_reason: &str) -> FinishReason {
        match stop_reason {
            "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }

    /// A Gemini `finishReason`. `STOP` (or anything unknown) after a function call is
    /// `ToolCalls`; a malformed or unexpected call is `Stop`.
    pub fn from_gemini(reason: &str, called_a_function: bool) -> FinishReason {
        match reason {
            "MAX_TOKENS" => FinishReason::Length,
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII"
            | "IMAGE_SAFETY" | "LANGUAGE" => FinishReason::ContentFilter,
            "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => FinishReason::Stop,
            _ if called_a_function => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }

    /// A Response's `status` and `incomplete_details.reason` (a Responses upstream):
    /// `incomplete` for a content filter is `ContentFilter`, any other `incomplete` is `Length`;
    /// otherwise `ToolCalls` when it called a function, else `Stop`.
    pub fn from_responses(
        status: &str,
        incomplete_reason: Option<&str>,
        called_a_function: bool,
    ) -> FinishReason {
        match (status, incomplete_reason) {
            ("incomplete", Some("content_filter")) => FinishReason::ContentFilter,
            ("incomplete", _) => FinishReason::Length,
            _ if called_a_function => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }

    /// OpenAI's `finish_reason` (chat and completions clients).
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::FunctionCall => "function_call",
        }
    }

    /// Anthropic's `stop_reason` (Messages clients); `stop_sequence` instead of `end_turn` when a
    /// stop sequence ended it.
    pub fn anthropic_stop_reason(self, stopped_by_sequence: bool) -> &'static str {
        match self {
            FinishReason::Length => "max_tokens",
            FinishReason::ToolCalls | FinishReason::FunctionCall => "tool_use",
            FinishReason::ContentFilter => "refusal",
            FinishReason::Stop if stopped_by_sequence => "stop_sequence",
            FinishReason::Stop => "end_turn",
        }
    }

    /// Gemini's `finishReason` (Gemini clients; a function call ends with `STOP`, as Gemini's do).
    pub fn gemini_finish_reason(self) -> &'static str {
        match self {
            FinishReason::Length => "MAX_TOKENS",
            FinishReason::ContentFilter => "SAFETY",
            _ => "STOP",
        }
    }

    /// A Responses client's `incomplete_details.reason` (its `status` is then `incomplete`);
    /// `None` when the response is `completed`.
    pub fn responses_incomplete_reason(self) -> Option<&'static str> {
        match self {
            FinishReason::Length => Some("max_output_tokens"),
            FinishReason::ContentFilter => Some("content_filter"),
            _ => None,
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_openai())
    }
}

/// Compares with OpenAI's spelling.
impl PartialEq<&str> for FinishReason {
    fn eq(&self, other: &&str) -> bool {
        self.as_openai() == *other
    }
}

/// Serialised as OpenAI's `finish_reason` (the chat chunks the gateway writes).
impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_openai())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_names_round_trip_and_unknown_ones_are_stop() {
        for r in FinishReason::ALL {
            assert_eq!(FinishReason::from_openai(r.as_openai()), r);
            assert_eq!(r.to_string(), r.as_openai());
        }
        assert_eq!(
            FinishReason::from_openai("insufficient_system_resource"),
            FinishReason::Length
        );
        assert_eq!(FinishReason::from_openai("eos"), FinishReason::Stop);
        assert_eq!(FinishReason::from_openai(""), FinishReason::Stop);
    }

    /// Every Anthropic `stop_reason` gives chat clients the `finish_reason` they always got, and
    /// a chat answer's reason gives Messages clients the `stop_reason` they always got.
    #[test]
    fn anthropic_stop_reasons_map_both_ways() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("a_new_reason", "stop"),
        ] {
            assert_eq!(
                FinishReason::from_anthropic(stop).as_openai(),
                finish,
                "{stop}"
            );
        }
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
            ("insufficient_system_resource", "max_tokens"),
            ("a_new_reason", "end_turn"),
        ] {
            let r = FinishReason::from_openai(finish);
            assert_eq!(r.anthropic_stop_reason(false), stop, "{finish}");
        }
        assert_eq!(
            FinishReason::Stop.anthropic_stop_reason(true),
            "stop_sequence"
        );
        assert_eq!(
            FinishReason::Length.anthropic_stop_reason(true),
            "max_tokens"
        );
    }

    /// Every Gemini `finishReason` gives chat clients the `finish_reason` they always got, and a
    /// chat answer's reason gives Gemini clients the `finishReason` they always got.
    #[test]
    fn gemini_finish_reasons_map_both_ways() {
        for (gemini, called, finish) in [
            ("STOP", false, "stop"),
            ("STOP", true, "tool_calls"),
            ("MAX_TOKENS", false, "length"),
            ("MAX_TOKENS", true, "length"),
            ("SAFETY", false, "content_filter"),
            ("RECITATION", false, "content_filter"),
            ("BLOCKLIST", false, "content_filter"),
            ("PROHIBITED_CONTENT", false, "content_filter"),
            ("SPII", false, "content_filter"),
            ("IMAGE_SAFETY", false, "content_filter"),
            ("LANGUAGE", false, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", true, "stop"),
            ("UNEXPECTED_TOOL_CALL", true, "stop"),
            ("OTHER", false, "stop"),
            ("SOMETHING_NEW", false, "stop"),
            ("SOMETHING_NEW", true, "tool_calls"),
        ] {
            let r = FinishReason::from_gemini(gemini, called);
            assert_eq!(r.as_openai(), finish, "{gemini} {called}");
        }
        for (finish, gemini) in [
            ("stop", "STOP"),
            ("length", "MAX_TOKENS"),
            ("tool_calls", "STOP"),
            ("function_call", "STOP"),
            ("content_filter", "SAFETY"),
            ("a_new_reason", "STOP"),
        ] {
            let r = FinishReason::from_openai(finish);
            assert_eq!(r.gemini_finish_reason(), gemini, "{finish}");
        }
    }

    #[test]
    fn responses_status_maps_both_ways() {
        let read = FinishReason::from_responses;
        assert_eq!(read("completed", None, false), FinishReason::Stop);
        assert_eq!(read("completed", None, true), FinishReason::ToolCalls);
        assert_eq!(
            read("incomplete", Some("max_output_tokens"), false),
            FinishReason::Length
        );
        assert_eq!(
            read("incomplete", Some("content_filter"), true),
            FinishReason::ContentFilter
        );
        assert_eq!(read("incomplete", None, false), FinishReason::Length);
        let written: Vec<_> = FinishReason::ALL
            .iter()
            .map(|r| r.responses_incomplete_reason())
            .collect();
        assert_eq!(
            written,
            [
                None,
                Some("max_output_tokens"),
                None,
                Some("content_filter"),
                None
            ]
        );
    }

    #[test]
    fn serialises_as_the_openai_name() {
        assert_eq!(
            serde_json::to_string(&Some(FinishReason::ToolCalls)).unwrap(),
            "\"tool_calls\""
        );
    }
}
