//! Evaluating `#[cfg(...)]` predicates as the kernel build sees them:
//! target `x86_64-unknown-none`, release profile, not a test, with the
//! crate's resolved features. Keys the build never sets (`test`, `miri`,
//! `docsrs`, `unix`, ...) are false.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use std::collections::BTreeSet;
use syn::punctuated::Punctuated;
use syn::{Meta, Token};

/// The configuration of one crate in the build that compiles it.
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    /// Enabled cargo features.
    pub features: BTreeSet<String>,
    /// A host tool or test (Linux, x86_64, unix), not the kernel target.
    pub host: bool,
}

fn key_value(key: &str, value: &str, cfg: &Cfg) -> bool {
    if cfg.host {
        return match key {
            "feature" => cfg.features.contains(value),
            "target_arch" => value == "x86_64",
            "target_os" => value == "linux",
            "target_family" => value == "unix",
            "target_env" => value == "gnu",
            "target_pointer_width" => value == "64",
            "target_endian" => value == "little",
            "target_vendor" => value == "unknown",
            "target_has_atomic" => matches!(value, "8" | "16" | "32" | "64" | "ptr"),
            "panic" => value == "unwind",
            "target_feature" => matches!(value, "sse" | "sse2" | "fxsr"),
            _ => false,
        };
    }
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

/// A parsed `cfg` predicate. Parsed from tokens (not `syn::Meta`, which
/// rejects `cfg(true)`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pred {
    /// `true` / `false`.
    Literal(bool),
    /// `unix`, `test`, ...
    Name(String),
    /// `feature = "x"`, ...
    KeyValue(String, String),
    /// `all(..)`, `any(..)`, `not(..)`.
    List(String, Vec<Pred>),
}

fn split_commas(tokens: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut parts = vec![Vec::new()];
    for t in tokens {
        match &t {
            TokenTree::Punct(p) if p.as_char() == ',' => parts.push(Vec::new()),
            _ => {
                if let Some(last) = parts.last_mut() {
                    last.push(t);
                }
            }
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

fn parse(tokens: &[TokenTree]) -> Option<Pred> {
    match tokens {
        [TokenTree::Ident(i)] => Some(match i.to_string().as_str() {
            "true" => Pred::Literal(true),
            "false" => Pred::Literal(false),
            name => Pred::Name(name.into()),
        }),
        [TokenTree::Ident(i), TokenTree::Punct(eq), TokenTree::Literal(lit)] if eq.as_char() == '=' => {
            let text = lit.to_string();
            let value = text.strip_prefix('"')?.strip_suffix('"')?.to_string();
            Some(Pred::KeyValue(i.to_string(), value))
        }
        [TokenTree::Ident(i), TokenTree::Group(g)] if g.delimiter() == Delimiter::Parenthesis => {
            let inner = split_commas(g.stream()).iter().map(|p| parse(p)).collect::<Option<Vec<_>>>()?;
            Some(Pred::List(i.to_string(), inner))
        }
        _ => None,
    }
}

fn holds(pred: &Pred, cfg: &Cfg) -> bool {
    match pred {
        Pred::Literal(b) => *b,
        // `windows`, `test`, `debug_assertions`, `doc`, `miri`, ...: none is
        // set for the kernel's release build (the host has `unix`).
        Pred::Name(name) => name == "unix" && cfg.host,
        Pred::KeyValue(key, value) => key_value(key, value, cfg),
        Pred::List(op, inner) => match op.as_str() {
            "all" => inner.iter().all(|p| holds(p, cfg)),
            "any" => inner.iter().any(|p| holds(p, cfg)),
            "not" => inner.len() == 1 && inner.iter().all(|p| !holds(p, cfg)),
            _ => false,
        },
    }
}

/// Whether the predicate `tokens` (the inside of `cfg(...)`) holds; `None`
/// when it cannot be read.
pub fn eval_tokens(tokens: TokenStream, cfg: &Cfg) -> Option<bool> {
    let parts = split_commas(tokens);
    match parts.as_slice() {
        [one] => parse(one).map(|p| holds(&p, cfg)),
        _ => None,
    }
}

/// Whether `meta` (the inside of `cfg(...)`, as syn reads it) holds.
pub fn eval(meta: &Meta, cfg: &Cfg) -> bool {
    eval_tokens(meta.to_token_stream(), cfg).unwrap_or(false)
}

/// Whether the attributes leave the item in the build: every `#[cfg]`
/// holds. A `cfg` this evaluator cannot read counts as holding (the code
/// is counted rather than missed). (`cfg_attr` does not remove items.)
pub fn enabled(attrs: &[syn::Attribute], cfg: &Cfg) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).all(|a| match &a.meta {
        Meta::List(list) => eval_tokens(list.tokens.clone(), cfg).unwrap_or(true),
        _ => true,
    })
}

/// For a `cfg_attr` whose predicate holds, the tokens of the attributes
/// it applies.
pub fn cfg_attr_applied(attr: &syn::Attribute, cfg: &Cfg) -> Option<TokenStream> {
    let Meta::List(list) = &attr.meta else { return None };
    if !attr.path().is_ident("cfg_attr") {
        return None;
    }
    let split = split_commas(list.tokens.clone());
    let (pred, rest) = split.split_first()?;
    parse(pred).is_some_and(|p| holds(&p, cfg)).then(|| rest.iter().flatten().cloned().collect())
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
            } else if let syn::Meta::List(list) = &attr.meta {
                // `cfg_attr(true, ...)` and the like, which syn cannot read as metas.
                let split = split_commas(list.tokens.clone());
                if let Some((pred, rest)) = split.split_first()
                    && parse(pred).is_some_and(|p| holds(&p, cfg))
                {
                    for part in rest {
                        let tokens: TokenStream = part.iter().cloned().collect();
                        if let Ok(meta) = syn::parse2::<Meta>(tokens) {
                            out.push(meta);
                        }
                    }
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
        let tokens: TokenStream = text.parse().unwrap();
        eval_tokens(tokens, &Cfg { features: features.iter().map(|s| s.to_string()).collect(), host: false }).unwrap()
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
        assert!(holds("true", &[]) && !holds("false", &[]));
        let attrs: Vec<syn::Attribute> = vec![syn::parse_quote!(#[cfg(feature = "x",)]), syn::parse_quote!(#[cfg(what ever)])];
        let cfg = Cfg { features: ["x".to_string()].into(), host: false };
        assert!(enabled(&attrs[..1], &cfg), "a trailing comma is valid");
        assert!(enabled(&attrs[1..], &cfg), "unreadable: counted");
    }
}
