//! The kernel command line: whitespace-separated `key` and `key=value` words.

/// A parsed view of a command line.
#[derive(Debug, Clone, Copy)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    /// Wraps `text`.
    pub fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The words, in order.
    pub fn words(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
        self.text.split_ascii_whitespace().map(|w| match w.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (w, None),
        })
    }

    /// The value of the last `key=value` word, if any.
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.words().filter(|(k, _)| *k == key).filter_map(|(_, v)| v).last()
    }

    /// True when `key` appears as a bare word or as `key=1`/`key=yes`/`key=on`.
    pub fn flag(&self, key: &str) -> bool {
        self.words()
            .filter(|(k, _)| *k == key)
            .last()
            .is_some_and(|(_, v)| matches!(v, None | Some("1" | "yes" | "on" | "true")))
    }

    /// The whole text.
    pub fn as_str(&self) -> &'a str {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_values() {
        let c = Cmdline::new("  tessera.selftest tessera.fault=page  quiet=0 x=1 x=2 ");
        assert!(c.flag("tessera.selftest"));
        assert!(!c.flag("quiet"));
        assert!(!c.flag("missing"));
        assert_eq!(c.value("tessera.fault"), Some("page"));
        assert_eq!(c.value("x"), Some("2"));
        assert_eq!(c.value("tessera.selftest"), None);
        assert_eq!(c.words().count(), 5);
    }

    #[test]
    fn empty_line() {
        let c = Cmdline::new("");
        assert_eq!(c.words().count(), 0);
        assert!(!c.flag("a"));
    }
}
