//! A reload's one rule: settings only a restart can change keep their running values.

use super::Config;

impl Config {
    /// For a reload: the settings that only a restart can change take `running`'s values here,
    /// and their names are returned when the file asks for something else. Everything else
    /// (providers, models, prices, routing, provider quotas, the admin key, `keep_alive_ms`,
    /// `max_body_bytes`) is this config's own.
    pub fn keep_restart_settings(&mut self, running: &Config) -> Vec<&'static str> {
        let mut kept = Vec::new();
        macro_rules! keep {
            ($($field:ident),*) => {$(
                if self.$field != running.$field {
                    kept.push(stringify!($field));
                    self.$field = running.$field.clone();
                }
            )*};
        }
        keep!(
            listen,
            database,
            journal,
            instances,
            durability,
            redis,
            redis_failure,
            redis_timeout,
            key_refresh,
            streams,
            server,
            cors,
            event_log,
            capture,
            otlp,
            embedded_demo
        );
        // Only used to fill a fresh database: nothing to apply, nothing to report.
        self.demo_credits = running.demo_credits;
        kept
    }
}
