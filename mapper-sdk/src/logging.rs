//! Operator logging: the log filter as people type it (`warning`, `DEBUG`, `verbose`,
//! `3`, `mapper_sdk=warning`), colour only on a terminal without `NO_COLOR`, and text or
//! JSON lines on stderr.
//!
//! The parsing here is pure ([`parse_filter`], [`parse_level`], [`use_colour`]);
//! [`init`] is the one place that installs the subscriber.

use std::ffi::OsStr;
use std::io::IsTerminal as _;

use clap::ValueEnum;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// The level names [`parse_level`] accepts, for messages.
pub const ACCEPTED_LEVELS: &str =
    "error, warn (warning), info, debug (verbose), trace, off (none, quiet) or 0-5";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// A level name that is not one; the filter uses info in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLevel {
    /// The text as given.
    pub value: String,
}

impl std::fmt::Display for UnknownLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not a log level; use {ACCEPTED_LEVELS} (or target=level); using info",
            self.value
        )
    }
}

/// A parsed log filter.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The level of every target no directive names.
    pub default: LevelFilter,
    /// `target=level` directives, in the order given.
    pub targets: Vec<(String, LevelFilter)>,
    /// Values that were not levels; each was replaced by info.
    pub unknown: Vec<UnknownLevel>,
}

impl Filter {
    /// The filter as a `tracing_subscriber` [`Targets`].
    pub fn to_targets(&self) -> Targets {
        Targets::new()
            .with_default(self.default)
            .with_targets(self.targets.iter().cloned())
    }
}

/// Parses one level name, case-insensitively: `error`, `warn`/`warning`, `info`,
/// `debug`/`verbose`, `trace`, `off`/`none`/`quiet`, or `0` (off) to `5` (trace).
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    let level = match text.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "quiet" | "0" => LevelFilter::OFF,
        "error" | "err" | "1" => LevelFilter::ERROR,
        "warn" | "warning" | "2" => LevelFilter::WARN,
        "info" | "3" => LevelFilter::INFO,
        "debug" | "verbose" | "4" => LevelFilter::DEBUG,
        "trace" | "5" => LevelFilter::TRACE,
        _ => return None,
    };
    Some(level)
}

/// Parses a filter: comma-separated directives, each a level (the default for every
/// target) or `target=level`. Without a bare level the default is info, so
/// `mapper_sdk=debug` adds debug lines of the SDK to the usual info lines. Unknown levels
/// become info and are listed in [`Filter::unknown`]; empty directives are ignored.
pub fn parse_filter(text: &str) -> Filter {
    let mut filter = Filter {
        default: LevelFilter::INFO,
        targets: Vec::new(),
        unknown: Vec::new(),
    };
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            Some((target, level)) if !target.trim().is_empty() => {
                let level = level_or_info(level, &mut filter.unknown);
                filter.targets.push((target.trim().to_owned(), level));
            }
            Some((_, level)) => filter.default = level_or_info(level, &mut filter.unknown),
            None => filter.default = level_or_info(directive, &mut filter.unknown),
        }
    }
    filter
}

/// The level `value` names, else info (and `value` goes on the `unknown` list).
fn level_or_info(value: &str, unknown: &mut Vec<UnknownLevel>) -> LevelFilter {
    parse_level(value).unwrap_or_else(|| {
        unknown.push(UnknownLevel {
            value: value.trim().to_owned(),
        });
        LevelFilter::INFO
    })
}

/// Whether to colour log lines: only on a terminal, and only when `NO_COLOR` is unset or
/// empty (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the stderr subscriber: the filter from `flag` (`--log-level`), else
/// `RUST_LOG`, else info, in `format`. Unknown levels are reported once each, as a
/// warning in the log (or on stderr when the filter hides warnings).
pub fn init(flag: Option<&str>, format: LogFormat) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let env = std::env::var("RUST_LOG").ok();
    let (source, text) = match (flag, env.as_deref()) {
        (Some(f), _) => ("--log-level", f),
        (None, Some(e)) => ("RUST_LOG", e),
        (None, None) => ("default", "info"),
    };
    let filter = parse_filter(text);
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(layer.with_filter(filter.to_targets()))
        .try_init()
        .is_ok();
    for u in &filter.unknown {
        if installed && tracing::enabled!(tracing::Level::WARN) {
            tracing::warn!("{source}: {u}");
        } else {
            eprintln!("warning: {source}: {u}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level_of(f: &Filter, target: &str) -> Option<LevelFilter> {
        f.targets
            .iter()
            .rev()
            .find(|(t, _)| t == target)
            .map(|(_, l)| *l)
    }

    #[test]
    fn level_names_as_people_type_them() {
        for (text, want) in [
            ("error", LevelFilter::ERROR),
            ("ERROR", LevelFilter::ERROR),
            ("warn", LevelFilter::WARN),
            ("Warning", LevelFilter::WARN),
            (" info ", LevelFilter::INFO),
            ("debug", LevelFilter::DEBUG),
            ("VERBOSE", LevelFilter::DEBUG),
            ("trace", LevelFilter::TRACE),
            ("off", LevelFilter::OFF),
            ("none", LevelFilter::OFF),
            ("Quiet", LevelFilter::OFF),
            ("0", LevelFilter::OFF),
            ("1", LevelFilter::ERROR),
            ("2", LevelFilter::WARN),
            ("3", LevelFilter::INFO),
            ("4", LevelFilter::DEBUG),
            ("5", LevelFilter::TRACE),
        ] {
            assert_eq!(parse_level(text), Some(want), "{text:?}");
        }
        for text in ["", "6", "-1", "loud", "mapper_sdk", "warnings"] {
            assert_eq!(parse_level(text), None, "{text:?}");
        }
    }

    #[test]
    fn warning_is_a_level_not_a_target() {
        let f = parse_filter("warning");
        assert_eq!(f.default, LevelFilter::WARN);
        assert!(f.targets.is_empty());
        assert!(f.unknown.is_empty());
    }

    #[test]
    fn directives_take_the_same_names() {
        let f = parse_filter("Warning, mapper_sdk=VERBOSE ,modbus_mapper=4,rumqttc=quiet");
        assert_eq!(f.default, LevelFilter::WARN);
        assert_eq!(level_of(&f, "mapper_sdk"), Some(LevelFilter::DEBUG));
        assert_eq!(level_of(&f, "modbus_mapper"), Some(LevelFilter::DEBUG));
        assert_eq!(level_of(&f, "rumqttc"), Some(LevelFilter::OFF));
        assert!(f.unknown.is_empty());
    }

    #[test]
    fn a_target_alone_keeps_info_for_the_rest() {
        let f = parse_filter("mapper_sdk=debug");
        assert_eq!(f.default, LevelFilter::INFO);
        let t = f.to_targets();
        assert!(t.would_enable("modbus_mapper", &tracing::Level::INFO));
        assert!(!t.would_enable("modbus_mapper", &tracing::Level::DEBUG));
        assert!(t.would_enable("mapper_sdk::app", &tracing::Level::DEBUG));
    }

    #[test]
    fn unknown_levels_fall_back_to_info_and_are_named() {
        let f = parse_filter("loud");
        assert_eq!(f.default, LevelFilter::INFO);
        assert_eq!(
            f.unknown,
            vec![UnknownLevel {
                value: "loud".into()
            }]
        );
        let msg = f.unknown[0].to_string();
        assert!(msg.contains("\"loud\""), "{msg}");
        assert!(
            msg.contains("warn (warning)") && msg.contains("info"),
            "{msg}"
        );

        let f = parse_filter("error,mapper_sdk=chatty");
        assert_eq!(f.default, LevelFilter::ERROR);
        assert_eq!(level_of(&f, "mapper_sdk"), Some(LevelFilter::INFO));
        assert_eq!(f.unknown.len(), 1);
        assert_eq!(f.unknown[0].value, "chatty");
    }

    #[test]
    fn empty_and_bare_equals_directives() {
        let f = parse_filter("");
        assert_eq!(f.default, LevelFilter::INFO);
        assert!(f.targets.is_empty() && f.unknown.is_empty());
        let f = parse_filter(" , ,=debug,");
        assert_eq!(f.default, LevelFilter::DEBUG);
        assert!(f.targets.is_empty() && f.unknown.is_empty());
    }

    #[test]
    fn the_later_directive_for_a_target_wins() {
        let t = parse_filter("mapper_sdk=trace,mapper_sdk=error").to_targets();
        assert!(!t.would_enable("mapper_sdk", &tracing::Level::WARN));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(true, Some(OsStr::new("0"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }
}
