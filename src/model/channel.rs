//! Channel names and channel globs: what a name may be, and how a pattern
//! (`boiler.temp*`, `plant.{a,b}.flow`) matches names. One matcher for every
//! place that takes a glob: channel rules, detectors, alert rules, silences,
//! the stream filter of `serve`.

/// Why a string is not a channel name, if it is not one.
pub fn check_channel_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 200 {
        return Err("it is longer than 200 bytes");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains white space or control characters");
    }
    if name.contains(['*', '?', '[', ']', '{', '}']) {
        return Err("glob characters are for `channels`, `detect` and `alerts` keys, not names");
    }
    Ok(())
}

/// A channel glob (`boiler.temp*`), or an exact name.
pub fn channel_matcher(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// Whether a pattern has glob characters (else it names one channel).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}
