//! The textual units of the config file: durations (`500ms`, `30s`, `5m`) and sizes (`64KiB`, `16MiB`).

use std::time::Duration;

/// Parses a duration such as `500ms`, `30s`, `5m` or `1h`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis_per_unit = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// Writes a duration the way the config file does, in the largest unit that keeps it whole (`1500ms`,
/// `30s`, `5m`, `1h`), so a message quotes the value the operator wrote.
pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, suffix) in [(3_600_000, "h"), (60_000, "m"), (1_000, "s")] {
        let (whole, rest) = (millis / unit, millis % unit);
        if whole > 0 && rest == 0 {
            return format!("{whole}{suffix}");
        }
    }
    format!("{millis}ms")
}

/// Parses a size such as `125`, `64KiB`, `16MiB`, `1GiB` (also `KB`/`MB`/`GB`, as powers of 1000).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn durations_are_written_back_in_their_largest_whole_unit() {
        for text in ["500ms", "1500ms", "1s", "30s", "90s", "5m", "1h", "0ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Some(65_536));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("125"), Some(125));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999GiB"), None);
    }
}
