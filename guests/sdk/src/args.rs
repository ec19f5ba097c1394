//! Parsing `init` arguments of the form `--name value`.
//!
//! Arguments that do not start with `--` are positional and left to the
//! caller; an option this parser is not asked about is an error, so a typo
//! fails the spawn instead of being ignored.

use std::str::FromStr;

/// The values of `--name value` options, checked against the names a guest
/// accepts.
#[derive(Debug)]
pub struct Options<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Options<'a> {
    /// Splits `args` into `--name value` pairs, refusing options not in
    /// `known` (given without the dashes) and an option without a value.
    /// Positional arguments are skipped.
    pub fn parse(args: &'a [String], known: &[&str]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(name) = arg.strip_prefix("--") else {
                continue;
            };
            if !known.contains(&name) {
                return Err(format!("unknown option '--{name}'"));
            }
            let value = iter
                .next()
                .ok_or_else(|| format!("option '--{name}' needs a value"))?;
            pairs.push((name, value.as_str()));
        }
        Ok(Options { pairs })
    }

    /// The last value given for `--name`, parsed; `None` if it was not given.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.pairs.iter().rev().find(|(n, _)| *n == name) {
            None => Ok(None),
            Some((_, value)) => value
                .parse()
                .map(Some)
                .map_err(|_| format!("option '--{name}': invalid value '{value}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_the_last_value_and_skips_positionals() {
        let a = args(&["prog", "--mib", "4", "x", "--mib", "8"]);
        let opts = Options::parse(&a, &["mib"]).unwrap();
        assert_eq!(opts.get::<usize>("mib").unwrap(), Some(8));
        assert_eq!(opts.get::<usize>("other").unwrap(), None);
    }

    #[test]
    fn refuses_unknown_missing_and_malformed() {
        let unknown = args(&["--mbi", "4"]);
        assert_eq!(
            Options::parse(&unknown, &["mib"]).unwrap_err(),
            "unknown option '--mbi'"
        );
        let missing = args(&["--mib"]);
        assert_eq!(
            Options::parse(&missing, &["mib"]).unwrap_err(),
            "option '--mib' needs a value"
        );
        let malformed = args(&["--mib", "four"]);
        let opts = Options::parse(&malformed, &["mib"]).unwrap();
        assert_eq!(
            opts.get::<usize>("mib").unwrap_err(),
            "option '--mib': invalid value 'four'"
        );
    }
}
