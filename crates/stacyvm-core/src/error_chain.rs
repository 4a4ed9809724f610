//! Rendering an error with its causes, for logs.
//!
//! The errors of every layer keep a client-safe `Display` and put the
//! private cause (host paths, a runtime's stderr) in `source`; a log line
//! shows both with `error = %ErrorChain(&e)`.

use std::fmt;

/// `Display`s an error followed by each of its sources: `a: b: c`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut last = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            // `#[error(transparent)]` wrappers repeat their source's text.
            if text != last {
                write!(f, ": {text}")?;
            }
            last = text;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn joins_sources_and_skips_transparent_repeats() {
        let e = E(
            "outer",
            Some(Box::new(E("outer", Some(Box::new(E("inner", None)))))),
        );
        assert_eq!(ErrorChain(&e).to_string(), "outer: inner");
        assert_eq!(ErrorChain(&E("alone", None)).to_string(), "alone");
    }
}
