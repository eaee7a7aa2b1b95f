//! Evaluating `#[cfg(...)]` predicates as the kernel build sees them:
//! target `x86_64-unknown-none`, release profile, not a test, with the
//! crate's resolved features. Keys the build never sets (`test`, `miri`,
//! `docsrs`, `unix`, ...) are false.

use std::collections::BTreeSet;
use syn::punctuated::Punctuated;
use syn::{Meta, Token};

/// The configuration of one crate in the kernel build.
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    /// Enabled cargo features.
    pub features: BTreeSet<String>,
}

fn key_value(key: &str, value: &str, cfg: &Cfg) -> bool {
    match key {
        "feature" => cfg.features.contains(value),
        "target_arch" => value == "x86_64",
        "target_os" => value == "none",
        "target_pointer_width" => value == "64",
        "target_endian" => value == "little",
        "target_vendor" => value == "unknown",
        "target_env" | "target_abi" => value.is_empty(),
        "target_has_atomic" => matches!(value, "8" | "16" | "32" | "64" | "ptr"),
        "panic" => value == "abort",
        // x86_64-unknown-none is soft-float: no SSE, no AVX.
        "target_feature" => false,
        _ => false,
    }
}

/// Whether `meta` (the inside of `cfg(...)`) holds.
pub fn eval(meta: &Meta, cfg: &Cfg) -> bool {
    match meta {
        // `unix`, `windows`, `test`, `debug_assertions`, `doc`, `miri`, ...:
        // none is set for the kernel's release build.
        Meta::Path(_) => false,
        Meta::NameValue(nv) => {
            let key = nv.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            match &nv.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => key_value(&key, &s.value(), cfg),
                _ => false,
            }
        }
        Meta::List(list) => {
            let name = list.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            let inner = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated);
            let Ok(inner) = inner else { return false };
            match name.as_str() {
                "all" => inner.iter().all(|m| eval(m, cfg)),
                "any" => inner.iter().any(|m| eval(m, cfg)),
                "not" => inner.len() == 1 && inner.iter().all(|m| !eval(m, cfg)),
                _ => false,
            }
        }
    }
}

/// Whether the attributes leave the item in the build: every `#[cfg]`
/// holds. (`cfg_attr` does not remove items.)
pub fn enabled(attrs: &[syn::Attribute], cfg: &Cfg) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).all(|a| a.parse_args::<Meta>().is_ok_and(|m| eval(&m, cfg)))
}

/// The attributes in effect: plain ones, and those inside a `cfg_attr`
/// whose predicate holds.
pub fn effective(attrs: &[syn::Attribute], cfg: &Cfg) -> Vec<Meta> {
    let mut out = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("cfg_attr") {
            if let Ok(list) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
                let mut parts = list.into_iter();
                if let Some(pred) = parts.next()
                    && eval(&pred, cfg)
                {
                    out.extend(parts);
                }
            }
        } else {
            out.push(attr.meta.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(text: &str, features: &[&str]) -> bool {
        let meta: Meta = syn::parse_str(text).unwrap();
        eval(&meta, &Cfg { features: features.iter().map(|s| s.to_string()).collect() })
    }

    #[test]
    fn the_kernel_build() {
        assert!(!holds("test", &[]));
        assert!(holds("not(test)", &[]));
        assert!(holds("target_arch = \"x86_64\"", &[]));
        assert!(!holds("unix", &[]));
        assert!(holds("all(target_arch = \"x86_64\", not(windows))", &[]));
        assert!(holds("any(test, feature = \"alloc\")", &["alloc"]));
        assert!(!holds("any(test, feature = \"alloc\")", &[]));
        assert!(!holds("target_feature = \"sse2\"", &[]));
        assert!(holds("not(any())", &[]));
        assert!(!holds("debug_assertions", &[]));
    }
}
