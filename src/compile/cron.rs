//! Five-field cron schedules (`0 3 * * *`): minute, hour, day of month,
//! month, day of week (0 or 7 is Sunday), each `*`, numbers, ranges, lists
//! and `/steps`. As in cron, when both day fields are restricted a day
//! matching either one matches.

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    fields: [u64; 5],
    any_dom: bool,
    any_dow: bool,
}

const BOUNDS: [(u32, u32, &str); 5] =
    [(0, 59, "minute"), (0, 23, "hour"), (1, 31, "day of month"), (1, 12, "month"), (0, 7, "day of week")];

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("{} fields instead of 5", parts.len()));
        }
        let mut fields = [0u64; 5];
        for (i, (f, (lo, hi, name))) in parts.iter().zip(BOUNDS).enumerate() {
            for part in f.split(',') {
                let (range, step) = part.split_once('/').map_or((part, None), |(r, s)| (r, Some(s)));
                let step = match step {
                    None => 1,
                    Some(s) => match s.parse::<u32>() {
                        Ok(n) if n > 0 => n,
                        _ => return Err(format!("bad step `{s}` in the {name} field")),
                    },
                };
                let (a, b) = if range == "*" {
                    (lo, hi)
                } else {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    let num = |v: &str| match v.parse::<u32>() {
                        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                        _ => Err(format!("`{v}` is outside {lo}–{hi} in the {name} field")),
                    };
                    (num(a)?, num(b)?)
                };
                if a > b {
                    return Err(format!("`{range}` runs backwards in the {name} field"));
                }
                let mut v = a;
                while v <= b {
                    fields[i] |= 1 << v;
                    v += step;
                }
            }
        }
        // Sunday is 0 and 7.
        if fields[4] & (1 << 7) != 0 {
            fields[4] |= 1;
        }
        Ok(Schedule { fields, any_dom: parts[2] == "*", any_dow: parts[4] == "*" })
    }

    /// Whether the schedule fires at this minute (dow: 0 = Sunday).
    pub fn matches(&self, minute: u32, hour: u32, dom: u32, month: u32, dow: u32) -> bool {
        let has = |i: usize, v: u32| self.fields[i] & (1 << v) != 0;
        let day = match (self.any_dom, self.any_dow) {
            (false, false) => has(2, dom) || has(4, dow),
            _ => has(2, dom) && has(4, dow),
        };
        has(0, minute) && has(1, hour) && has(3, month) && day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_ranges_steps_and_days() {
        let s = Schedule::parse("0 3 * * *").unwrap();
        assert!(s.matches(0, 3, 15, 6, 2) && !s.matches(1, 3, 15, 6, 2) && !s.matches(0, 4, 15, 6, 2));
        let s = Schedule::parse("*/15 8-17 * * 1-5").unwrap();
        assert!(s.matches(45, 17, 1, 1, 5) && !s.matches(45, 17, 1, 1, 6) && !s.matches(50, 9, 1, 1, 1));
        let s = Schedule::parse("0 0 1 * 7").unwrap();
        assert!(s.matches(0, 0, 1, 3, 3) && s.matches(0, 0, 9, 3, 0) && !s.matches(0, 0, 9, 3, 1));
        assert!(Schedule::parse("0 3 * *").is_err() && Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("5-1 * * * *").is_err() && Schedule::parse("*/0 * * * *").is_err());
    }
}
