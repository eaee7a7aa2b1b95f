//! Reading one crate: its module tree from the root file (following `mod`
//! declarations and `#[path]`, skipping what `cfg` removes), and in each
//! file the unsafe constructs found by `syn`, the lines of code, and
//! whether each unsafe block has a `// SAFETY:` comment and each unsafe
//! function or trait a `# Safety` section. Text in comments and strings
//! never counts: only the syntax tree does. Macro bodies are not syntax
//! trees: invocations are parsed as items or statements where possible,
//! and otherwise their `unsafe` tokens are counted and reported.

use crate::cfg::{self, Cfg};
use proc_macro2::{Span, TokenStream, TokenTree};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// An `unsafe` block without a `// SAFETY:` comment.
    UndocumentedUnsafeBlock,
    /// An `unsafe impl` without a `// SAFETY:` comment.
    UndocumentedUnsafeImpl,
    /// An `unsafe fn` without a `# Safety` doc section.
    UnsafeFnWithoutSafetyDoc,
    /// An `unsafe trait` without a `# Safety` doc section.
    UnsafeTraitWithoutSafetyDoc,
    /// Unsafe code in a crate that must not have any.
    UnsafeInSafeCrate,
    /// The crate root lacks `#![forbid(unsafe_code)]`.
    MissingForbidUnsafe,
    /// A third-party crate with unsafe code that nobody reviewed.
    UnreviewedDependency,
    /// A build script nobody reviewed (`[build-scripts]`).
    UnreviewedBuildScript,
    /// An unreviewed build script that links native code or passes linker
    /// arguments (`cargo:rustc-link-lib`, `links = ...`).
    NativeLink,
    /// A proc-macro crate nobody reviewed (`[proc-macros]`).
    UnreviewedProcMacro,
    /// An invocation, in a crate that must be safe, of another crate's
    /// macro that emits unsafe code or unsafe attributes (`[macros]`).
    UnsafeMacro,
    /// A macro invocation that could not be parsed (its `unsafe` tokens
    /// were counted, not its structure). Informational.
    UnparsedMacro,
    /// A module file or `include!` that could not be followed. Informational.
    Unfollowed,
}

impl Kind {
    /// True for findings that fail the audit.
    pub fn is_violation(self) -> bool {
        !matches!(self, Kind::UnparsedMacro | Kind::Unfollowed)
    }
}

/// One finding, with its place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// What.
    pub kind: Kind,
    /// File, relative to the crate's directory.
    pub file: String,
    /// Line (1-based; 0 for the whole file or crate).
    pub line: usize,
    /// Details for the reader.
    pub detail: String,
}

/// Figures of one file (or, summed, of a crate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Lines with code (not blank, not only comments), outside code `cfg` removes.
    pub code_lines: usize,
    /// `unsafe { }` blocks.
    pub unsafe_blocks: usize,
    /// Those with a `// SAFETY:` comment.
    pub blocks_with_safety: usize,
    /// `unsafe fn` (free, in impls and traits, and in foreign blocks' callers excluded).
    pub unsafe_fns: usize,
    /// Those with a `# Safety` doc section.
    pub fns_with_safety_doc: usize,
    /// Of `unsafe_fns`, methods implementing a trait: the trait documents
    /// their contract, so no `# Safety` section is asked of them.
    pub unsafe_fns_in_trait_impls: usize,
    /// `unsafe impl`.
    pub unsafe_impls: usize,
    /// Those with a `// SAFETY:` comment.
    pub impls_with_safety: usize,
    /// `unsafe trait`.
    pub unsafe_traits: usize,
    /// Those with a `# Safety` doc section.
    pub traits_with_safety_doc: usize,
    /// `unsafe extern` blocks (declarations of foreign items).
    pub unsafe_externs: usize,
    /// `#[unsafe(...)]` attributes (`no_mangle`, `export_name`, `link_section`).
    pub unsafe_attributes: usize,
    /// Code lines inside unsafe blocks and unsafe functions.
    pub unsafe_lines: usize,
    /// `asm!`, `global_asm!` and `naked_asm!` invocations.
    pub asm_sites: usize,
    /// `unsafe` tokens in `macro_rules!` bodies (they count where expanded;
    /// listed because the parser cannot see them).
    pub unsafe_in_macro_definitions: usize,
    /// `unsafe` tokens in macro invocations that could not be parsed.
    pub unsafe_in_unparsed_macros: usize,
}

impl Stats {
    /// Adds `other` to these figures.
    pub fn add(&mut self, other: &Stats) {
        self.code_lines += other.code_lines;
        self.unsafe_blocks += other.unsafe_blocks;
        self.blocks_with_safety += other.blocks_with_safety;
        self.unsafe_fns += other.unsafe_fns;
        self.fns_with_safety_doc += other.fns_with_safety_doc;
        self.unsafe_fns_in_trait_impls += other.unsafe_fns_in_trait_impls;
        self.unsafe_impls += other.unsafe_impls;
        self.impls_with_safety += other.impls_with_safety;
        self.unsafe_traits += other.unsafe_traits;
        self.traits_with_safety_doc += other.traits_with_safety_doc;
        self.unsafe_externs += other.unsafe_externs;
        self.unsafe_attributes += other.unsafe_attributes;
        self.unsafe_lines += other.unsafe_lines;
        self.asm_sites += other.asm_sites;
        self.unsafe_in_macro_definitions += other.unsafe_in_macro_definitions;
        self.unsafe_in_unparsed_macros += other.unsafe_in_unparsed_macros;
    }

    /// Any unsafe construct at all (asm counts: it needs `unsafe` or `global_asm!`).
    pub fn has_unsafe(&self) -> bool {
        self.unsafe_blocks
            + self.unsafe_fns
            + self.unsafe_impls
            + self.unsafe_traits
            + self.unsafe_externs
            + self.unsafe_attributes
            + self.asm_sites
            + self.unsafe_in_macro_definitions
            + self.unsafe_in_unparsed_macros
            > 0
    }
}

/// One file's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Relative to the crate's directory.
    pub path: String,
    /// Its figures.
    pub stats: Stats,
}

/// A `macro_rules!` definition and the unsafe code it emits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MacroDef {
    /// Its name.
    pub name: String,
    /// `#[macro_export]`: other crates can invoke it.
    pub exported: bool,
    /// File and line of the definition.
    pub file: String,
    /// Line.
    pub line: usize,
    /// What unsafe its body writes (`unsafe block`, `#[unsafe(no_mangle)]`,
    /// ...), empty when none.
    pub emits: Vec<String>,
    /// Paths of the macros its body invokes (`$crate::inner`, `other::m`).
    pub calls: Vec<Vec<String>>,
}

/// A macro invocation (also one written inside another macro's arguments
/// or a `macro_rules!` body): the path, as written, and its place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MacroUse {
    /// File.
    pub file: String,
    /// Line.
    pub line: usize,
    /// Path segments (`["framekernel", "entry_point"]`, `["$crate", "m"]`).
    pub path: Vec<String>,
}

/// Attributes that place or export code in ways only unsafe code may
/// (unsafe attributes in edition 2024, and those a macro may hide).
const UNSAFE_ATTRIBUTES: [&str; 5] = ["no_mangle", "export_name", "link_section", "used", "naked"];

/// What unsafe code `tokens` (a macro body) write: unsafe blocks, fns,
/// impls, traits and extern blocks, unsafe attributes, assembly.
pub fn unsafe_emits(tokens: TokenStream) -> Vec<String> {
    let mut out = BTreeSet::new();
    emits_into(tokens, &mut out);
    out.into_iter().collect()
}

fn emits_into(tokens: TokenStream, out: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let ident = |t: Option<&TokenTree>| match t {
        Some(TokenTree::Ident(i)) => Some(i.to_string()),
        _ => None,
    };
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        match t {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(g)) = tokens.get(i + 1)
                    && g.delimiter() == proc_macro2::Delimiter::Bracket
                {
                    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                    match ident(inner.first()).as_deref() {
                        Some("unsafe") => {
                            let what = match inner.get(1) {
                                Some(TokenTree::Group(a)) => ident(a.stream().into_iter().next().as_ref()).unwrap_or_default(),
                                _ => String::new(),
                            };
                            out.insert(format!("#[unsafe({what})]"));
                        }
                        Some(name) if UNSAFE_ATTRIBUTES.contains(&name) => {
                            out.insert(format!("#[{name}]"));
                        }
                        _ => emits_into(g.stream(), out),
                    }
                    i += 2;
                    continue;
                }
            }
            TokenTree::Ident(id) if id == "unsafe" => {
                let what = match tokens.get(i + 1) {
                    Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Brace => "unsafe block".to_string(),
                    next => match ident(next).as_deref() {
                        Some(k @ ("fn" | "impl" | "trait" | "extern")) => format!("unsafe {k}"),
                        _ => "unsafe".to_string(),
                    },
                };
                out.insert(what);
            }
            TokenTree::Ident(id) if ["asm", "global_asm", "naked_asm"].iter().any(|n| id == n) => {
                if matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!') {
                    out.insert(format!("{id}!"));
                }
            }
            TokenTree::Ident(id) if id == "extern" => {
                let after = if matches!(tokens.get(i + 1), Some(TokenTree::Literal(_))) { i + 2 } else { i + 1 };
                if matches!(tokens.get(after), Some(TokenTree::Group(g)) if g.delimiter() == proc_macro2::Delimiter::Brace) {
                    out.insert("extern block".into());
                }
            }
            TokenTree::Group(g) => emits_into(g.stream(), out),
            _ => {}
        }
        i += 1;
    }
}

/// Macro invocations written in `tokens` (`path!(...)`, `$crate::m!{...}`):
/// (line, path).
pub fn invocations(tokens: TokenStream) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    invocations_into(tokens, &mut out);
    out
}

fn invocations_into(tokens: TokenStream, out: &mut Vec<(usize, Vec<String>)>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            TokenTree::Group(g) => invocations_into(g.stream(), out),
            TokenTree::Punct(p) if p.as_char() == '!' && matches!(tokens.get(i + 1), Some(TokenTree::Group(_))) => {
                // Walk back over `a::b::c` (and `$crate`).
                let mut path = Vec::new();
                let mut line = 0;
                let mut j = i;
                while let Some(TokenTree::Ident(id)) = j.checked_sub(1).and_then(|k| tokens.get(k)) {
                    path.push(id.to_string());
                    line = id.span().start().line;
                    j -= 1;
                    if let Some(TokenTree::Punct(d)) = j.checked_sub(1).and_then(|k| tokens.get(k))
                        && d.as_char() == '$'
                    {
                        if let Some(last) = path.last_mut() {
                            *last = format!("${last}");
                        }
                        j -= 1;
                    }
                    let colons = |k: usize| matches!(tokens.get(k), Some(TokenTree::Punct(c)) if c.as_char() == ':');
                    if j >= 3 && colons(j - 1) && colons(j - 2) {
                        j -= 2;
                    } else {
                        break;
                    }
                }
                if !path.is_empty() {
                    path.reverse();
                    out.push((line, path));
                }
            }
            _ => {}
        }
    }
}

/// One crate's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CrateScan {
    /// Per file, in module order.
    pub files: Vec<FileReport>,
    /// Sum over the files.
    pub total: Stats,
    /// Every root file has `#![forbid(unsafe_code)]` (as the build sees it).
    pub forbids_unsafe: bool,
    /// Root files (library, binaries) without it.
    pub roots_without_forbid: Vec<String>,
    /// Findings (violations are judged later, by policy).
    pub findings: Vec<Finding>,
    /// Every unsafe construct, as `UnsafeInSafeCrate` findings: a violation
    /// in a crate that must be safe, a list of places in a trusted one.
    pub sites: Vec<Finding>,
    /// Its `macro_rules!` definitions.
    pub macro_defs: Vec<MacroDef>,
    /// Its macro invocations.
    pub macro_uses: Vec<MacroUse>,
    /// Names its `use` items bring in: (name, full path), e.g.
    /// `use dep::m as n;` → (`n`, `[dep, m]`).
    pub imports: Vec<(String, Vec<String>)>,
}

/// Which lines of `source` hold code: not blank, not only a comment.
/// Strings and character literals are skipped so `//` inside them is code.
pub fn code_lines(source: &str) -> Vec<bool> {
    let bytes = source.as_bytes();
    let lines = source.split('\n').count();
    let mut code = vec![false; lines + 1];
    let (mut i, mut line, mut depth) = (0usize, 0usize, 0usize);
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    while i < bytes.len() {
        let c = at(i);
        if c == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        if depth > 0 {
            if c == b'*' && at(i + 1) == b'/' {
                depth -= 1;
                i += 2;
            } else if c == b'/' && at(i + 1) == b'*' {
                depth += 1;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match c {
            b'/' if at(i + 1) == b'/' => {
                while i < bytes.len() && at(i) != b'\n' {
                    i += 1;
                }
            }
            b'/' if at(i + 1) == b'*' => {
                depth = 1;
                i += 2;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'"' | b'r' | b'b' if starts_string(bytes, i) => {
                let (end, newlines) = skip_string(bytes, i);
                for l in line..=line + newlines {
                    if let Some(slot) = code.get_mut(l) {
                        *slot = true;
                    }
                }
                line += newlines;
                i = end;
            }
            b'\'' => {
                if let Some(slot) = code.get_mut(line) {
                    *slot = true;
                }
                // A character literal ('x', '\n', '\'', '\u{..}') or a lifetime.
                if at(i + 1) == b'\\' {
                    i += 3; // quote, backslash, the escaped character
                    while i < bytes.len() && at(i) != b'\'' && at(i) != b'\n' {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == b'\'' {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            _ => {
                if let Some(slot) = code.get_mut(line) {
                    *slot = true;
                }
                i += 1;
            }
        }
    }
    code
}

fn starts_string(bytes: &[u8], i: usize) -> bool {
    let rest = bytes.get(i..).unwrap_or(&[]);
    // An identifier ending in r or b ("for", "sub") is not a prefix.
    let prev_ident = i > 0 && bytes.get(i - 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if rest.first() == Some(&b'"') {
        return true;
    }
    if prev_ident {
        return false;
    }
    // r"..", r#".."#, b"..", br"..", br#".."# — but not r#ident.
    let raw = |from: usize| {
        let hashes = rest.get(from..).unwrap_or(&[]).iter().take_while(|&&c| c == b'#').count();
        rest.get(from + hashes) == Some(&b'"')
    };
    (rest.starts_with(b"r") && raw(1)) || rest.starts_with(b"b\"") || (rest.starts_with(b"br") && raw(2))
}

/// Skips a string literal starting at `i`; returns the end and the newlines inside.
fn skip_string(bytes: &[u8], mut i: usize) -> (usize, usize) {
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut newlines = 0;
    if at(i) == b'b' {
        i += 1;
    }
    if at(i) == b'r' {
        i += 1;
        let mut hashes = 0;
        while at(i) == b'#' {
            hashes += 1;
            i += 1;
        }
        i += 1; // the quote
        while i < bytes.len() {
            if at(i) == b'\n' {
                newlines += 1;
            }
            if at(i) == b'"' && (1..=hashes).all(|k| at(i + k) == b'#') {
                return (i + 1 + hashes, newlines);
            }
            i += 1;
        }
        return (i, newlines);
    }
    i += 1; // the quote
    while i < bytes.len() {
        match at(i) {
            b'\\' => {
                if at(i + 1) == b'\n' {
                    newlines += 1;
                }
                i += 2;
            }
            b'"' => return (i + 1, newlines),
            b'\n' => {
                newlines += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    (i, newlines)
}

/// A `# Safety` (or `## Safety`, ...) heading in the doc comments, outside
/// code blocks.
fn has_safety_doc(attrs: &[syn::Attribute]) -> bool {
    let mut doc = String::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let syn::Meta::NameValue(nv) = &a.meta
            && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
        {
            doc.push_str(&s.value());
            doc.push('\n');
        }
    }
    let mut in_code = false;
    doc.lines().map(str::trim).any(|line| {
        if line.starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code && line.starts_with('#') && line.trim_start_matches('#').trim() == "Safety"
    })
}

/// Lines of `unsafe {` in raw tokens (macro bodies).
fn unsafe_block_lines(tokens: TokenStream) -> Vec<usize> {
    let mut out = Vec::new();
    let mut previous_unsafe: Option<usize> = None;
    for t in tokens {
        match &t {
            TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Brace => {
                if let Some(line) = previous_unsafe {
                    out.push(line);
                }
                out.extend(unsafe_block_lines(g.stream()));
            }
            TokenTree::Group(g) => out.extend(unsafe_block_lines(g.stream())),
            _ => {}
        }
        previous_unsafe = match &t {
            TokenTree::Ident(i) if i == "unsafe" => Some(i.span().start().line),
            _ => None,
        };
    }
    out
}

fn count_unsafe_tokens(tokens: TokenStream) -> usize {
    tokens
        .into_iter()
        .map(|t| match t {
            TokenTree::Ident(i) if i == "unsafe" => 1,
            TokenTree::Group(g) => count_unsafe_tokens(g.stream()),
            _ => 0,
        })
        .sum()
}

/// A `mod name;` declaration: its `#[path]`, and the inline modules it is in.
struct ModDecl {
    name: String,
    path: Option<String>,
    inline: Vec<String>,
}

struct FileVisitor<'a> {
    cfg: &'a Cfg,
    file: String,
    lines: Vec<&'a str>,
    stats: Stats,
    findings: Vec<Finding>,
    /// Start line of each enclosing statement or item (innermost last).
    anchors: Vec<usize>,
    /// Line ranges inside unsafe blocks or unsafe fns.
    unsafe_ranges: Vec<(usize, usize)>,
    /// Line ranges `cfg` removes (not code of the build).
    removed: Vec<(usize, usize)>,
    /// `mod name;` declarations, to follow.
    modules: Vec<ModDecl>,
    /// Every unsafe construct.
    sites: Vec<Finding>,
    /// Inside `impl Trait for Type` (depth).
    trait_impls: usize,
    /// (line, column) of unsafe blocks that are a statement's own expression.
    direct_children: BTreeSet<(usize, usize)>,
    /// Inline modules around the current item (`mod a { mod b { ... } }`).
    inline: Vec<String>,
    /// `macro_rules!` definitions.
    macro_defs: Vec<MacroDef>,
    /// Macro invocations.
    macro_uses: Vec<MacroUse>,
    /// `use` names.
    imports: Vec<(String, Vec<String>)>,
}

/// The names a `use` tree brings in, with their full paths.
fn use_names(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_names(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident != "self" => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.push((n.ident.to_string(), path));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((r.rename.to_string(), path));
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_names(t, prefix, out);
            }
        }
        _ => {}
    }
}

fn lines_of(span: Span) -> (usize, usize) {
    (span.start().line, span.end().line)
}

impl FileVisitor<'_> {
    /// A `SAFETY:` comment (any case, `//` or `/* */`) after code on the
    /// line, or in the comment lines right above `line` or above `anchor`
    /// (the statement, `let` or item whose direct child the construct is),
    /// as clippy's `undocumented_unsafe_blocks` asks. Attribute lines
    /// between comment and code are allowed.
    fn has_safety_comment(&self, line: usize, anchor: Option<usize>) -> bool {
        let says_safety = |comment: &str| comment.to_ascii_uppercase().contains("SAFETY:");
        let trailing = |text: &str| text.find("//").or_else(|| text.find("/*")).is_some_and(|at| says_safety(&text[at..]));
        let mut candidates = vec![line];
        candidates.extend(anchor.filter(|&a| a <= line));
        candidates.into_iter().any(|start| {
            if trailing(self.line_text(start)) {
                return true;
            }
            let mut l = start;
            let mut in_attribute = false;
            while l > 1 {
                l -= 1;
                let text = self.line_text(l).trim();
                let comment = text.starts_with("//") || text.starts_with("/*") || text.starts_with('*') || text.ends_with("*/");
                if comment {
                    if says_safety(text) {
                        return true;
                    }
                } else if text.starts_with("#[") || text.ends_with(")]") || text.ends_with(']') && in_attribute {
                    in_attribute = !text.starts_with("#[");
                } else if in_attribute {
                    // inside a multi-line attribute
                } else {
                    break;
                }
            }
            false
        })
    }

    fn line_text(&self, line: usize) -> &str {
        line.checked_sub(1).and_then(|i| self.lines.get(i)).copied().unwrap_or("")
    }

    fn finding(&mut self, kind: Kind, line: usize, detail: String) {
        self.findings.push(Finding { kind, file: self.file.clone(), line, detail });
    }

    fn site(&mut self, line: usize, what: &str) {
        self.sites.push(Finding { kind: Kind::UnsafeInSafeCrate, file: self.file.clone(), line, detail: what.into() });
    }

    /// `#[unsafe(...)]`, and the attributes that needed it before edition
    /// 2024 (`no_mangle`, `export_name`, `link_section`), also inside a
    /// `cfg_attr` that applies.
    fn unsafe_attributes(&mut self, attrs: &[syn::Attribute]) {
        let line = |attr: &syn::Attribute| attr.span().start().line;
        let named = |tokens: TokenStream| {
            tokens.into_iter().any(|t| {
                matches!(&t, TokenTree::Ident(i) if ["unsafe", "no_mangle", "export_name", "link_section"].iter().any(|n| i == n))
            })
        };
        for attr in attrs {
            let unsafe_attr = if attr.path().is_ident("cfg_attr") {
                cfg::cfg_attr_applied(attr, self.cfg).is_some_and(named)
            } else {
                let p = attr.path();
                p.is_ident("unsafe") || p.is_ident("no_mangle") || p.is_ident("export_name") || p.is_ident("link_section")
            };
            if unsafe_attr {
                self.stats.unsafe_attributes += 1;
                self.site(line(attr), "unsafe attribute");
            }
        }
    }

    fn macro_call(&mut self, mac: &syn::Macro) {
        let name = mac.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let line = mac.path.span().start().line;
        let path = mac.path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.macro_uses.push(MacroUse { file: self.file.clone(), line, path });
        for (line, path) in invocations(mac.tokens.clone()) {
            self.macro_uses.push(MacroUse { file: self.file.clone(), line, path });
        }
        if matches!(name.as_str(), "asm" | "global_asm" | "naked_asm") {
            self.stats.asm_sites += 1;
            self.site(line, &format!("{name}!"));
            return;
        }
        if name == "include" {
            self.finding(Kind::Unfollowed, line, "include! is not followed".into());
            return;
        }
        if !mentions_unsafe(mac.tokens.clone()) {
            return; // nothing unsafe inside, whatever it expands to here
        }
        if let Ok(file) = syn::parse2::<syn::File>(mac.tokens.clone()) {
            for item in &file.items {
                self.visit_item(item);
            }
            return;
        }
        if let Ok(items) = syn::parse2::<ImplItems>(mac.tokens.clone()) {
            for item in &items.0 {
                self.visit_impl_item(item);
            }
            return;
        }
        if let Ok(block) = syn::parse2::<BracedStmts>(mac.tokens.clone()) {
            for stmt in &block.0 {
                self.visit_stmt(stmt);
            }
            return;
        }
        if let Ok(expr) = syn::parse2::<syn::Expr>(mac.tokens.clone()) {
            self.visit_expr(&expr);
            return;
        }
        if let Ok(args) = mac.parse_body_with(syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated) {
            for expr in &args {
                self.visit_expr(expr);
            }
            return;
        }
        let n = count_unsafe_tokens(mac.tokens.clone());
        self.stats.unsafe_in_unparsed_macros += n;
        self.site(line, &format!("`unsafe` inside {name}!"));
        self.finding(Kind::UnparsedMacro, line, format!("{name}!: {n} `unsafe` token(s) in a body the parser cannot read"));
    }
}

/// Items of an impl block (a macro body in impl position).
struct ImplItems(Vec<syn::ImplItem>);

impl syn::parse::Parse for ImplItems {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let mut items = Vec::new();
        while !input.is_empty() {
            items.push(input.parse()?);
        }
        Ok(ImplItems(items))
    }
}

/// Tokens that may hide unsafe code or files the scan cannot see.
fn mentions_unsafe(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => {
            let s = i.to_string();
            matches!(
                s.as_str(),
                "unsafe" | "asm" | "global_asm" | "naked_asm" | "extern" | "include" | "no_mangle" | "export_name" | "link_section"
            )
        }
        TokenTree::Group(g) => mentions_unsafe(g.stream()),
        _ => false,
    })
}

/// Statements without braces (a macro body such as `{ let x = ...; }`).
struct BracedStmts(Vec<syn::Stmt>);

impl syn::parse::Parse for BracedStmts {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        syn::Block::parse_within(input).map(BracedStmts)
    }
}

impl<'ast> Visit<'ast> for FileVisitor<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::ExternCrate(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::ForeignMod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::TraitAlias(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Union(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if !cfg::enabled(attrs, self.cfg) {
            self.removed.push(lines_of(item.span()));
            return;
        }
        self.unsafe_attributes(attrs);
        self.anchors.push(item.span().start().line);
        // Items nested in a method body are not part of the trait impl.
        let trait_impls = core::mem::replace(&mut self.trait_impls, 0);
        match item {
            syn::Item::Mod(m) if m.content.is_none() => {
                let path = cfg::effective(attrs, self.cfg).into_iter().find(|m| m.path().is_ident("path")).and_then(|m| match m {
                    syn::Meta::NameValue(nv) => match nv.value {
                        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
                        _ => None,
                    },
                    _ => None,
                });
                self.modules.push(ModDecl { name: m.ident.to_string(), path, inline: self.inline.clone() });
            }
            syn::Item::Mod(m) => {
                // Inline module: `mod x;` inside it lives in a subdirectory.
                self.inline.push(m.ident.to_string());
                visit::visit_item_mod(self, m);
                self.inline.pop();
            }
            syn::Item::Macro(m) => {
                if m.mac.path.is_ident("macro_rules") {
                    let calls = invocations(m.mac.tokens.clone());
                    for (line, path) in &calls {
                        self.macro_uses.push(MacroUse { file: self.file.clone(), line: *line, path: path.clone() });
                    }
                    let emits = unsafe_emits(m.mac.tokens.clone());
                    // `unsafe` tokens, or at least one for a body that writes
                    // only an attribute such as #[no_mangle] or global_asm!.
                    let n = count_unsafe_tokens(m.mac.tokens.clone()).max(usize::from(!emits.is_empty()));
                    self.stats.unsafe_in_macro_definitions += n;
                    if n > 0 {
                        self.site(m.span().start().line, &format!("macro_rules! body writing {}", emits.join(", ")));
                    }
                    self.macro_defs.push(MacroDef {
                        name: m.ident.as_ref().map(ToString::to_string).unwrap_or_default(),
                        exported: attrs.iter().any(|a| a.path().is_ident("macro_export")),
                        file: self.file.clone(),
                        line: m.span().start().line,
                        emits,
                        calls: calls.into_iter().map(|(_, p)| p).collect(),
                    });
                    // Unsafe blocks written in the body need their comment too.
                    for line in unsafe_block_lines(m.mac.tokens.clone()) {
                        if !self.has_safety_comment(line, None) {
                            self.finding(Kind::UndocumentedUnsafeBlock, line, "unsafe block in a macro_rules! body without a // SAFETY: comment".into());
                        }
                    }
                } else {
                    self.macro_call(&m.mac);
                }
            }
            _ => visit::visit_item(self, item),
        }
        self.trait_impls = trait_impls;
        self.anchors.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        use_names(&u.tree, &mut Vec::new(), &mut self.imports);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.unsafe_fn(&f.sig, &f.attrs, Some(f.block.span()));
        visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !cfg::enabled(&f.attrs, self.cfg) {
            self.removed.push(lines_of(f.span()));
            return;
        }
        self.unsafe_attributes(&f.attrs);
        self.anchors.push(f.span().start().line);
        self.unsafe_fn(&f.sig, &f.attrs, Some(f.block.span()));
        visit::visit_impl_item_fn(self, f);
        self.anchors.pop();
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if !cfg::enabled(&f.attrs, self.cfg) {
            self.removed.push(lines_of(f.span()));
            return;
        }
        self.anchors.push(f.span().start().line);
        self.unsafe_fn(&f.sig, &f.attrs, f.default.as_ref().map(|b| b.span()));
        visit::visit_trait_item_fn(self, f);
        self.anchors.pop();
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if let Some(unsafety) = i.unsafety {
            self.stats.unsafe_impls += 1;
            let line = unsafety.span.start().line;
            self.site(line, "unsafe impl");
            if self.has_safety_comment(line, self.anchors.last().copied()) {
                self.stats.impls_with_safety += 1;
            } else {
                self.finding(Kind::UndocumentedUnsafeImpl, line, "unsafe impl without a // SAFETY: comment".into());
            }
        }
        let is_trait_impl = i.trait_.is_some();
        self.trait_impls += usize::from(is_trait_impl);
        visit::visit_item_impl(self, i);
        self.trait_impls -= usize::from(is_trait_impl);
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        if let Some(unsafety) = t.unsafety {
            let line = unsafety.span.start().line;
            self.stats.unsafe_traits += 1;
            self.site(line, "unsafe trait");
            if has_safety_doc(&t.attrs) {
                self.stats.traits_with_safety_doc += 1;
            } else {
                self.finding(Kind::UnsafeTraitWithoutSafetyDoc, line, format!("unsafe trait {} has no # Safety section", t.ident));
            }
        }
        visit::visit_item_trait(self, t);
    }

    fn visit_item_foreign_mod(&mut self, f: &'ast syn::ItemForeignMod) {
        // `unsafe extern "C" { ... }` (edition 2024) or a plain `extern`
        // block: both declare items only unsafe code can use.
        self.stats.unsafe_externs += 1;
        self.site(f.span().start().line, "extern block");
        visit::visit_item_foreign_mod(self, f);
    }

    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        let attrs: &[syn::Attribute] = match stmt {
            syn::Stmt::Local(l) => &l.attrs,
            syn::Stmt::Macro(m) => &m.attrs,
            _ => &[],
        };
        if !cfg::enabled(attrs, self.cfg) {
            self.removed.push(lines_of(stmt.span()));
            return;
        }
        self.anchors.push(stmt.span().start().line);
        let own = match stmt {
            syn::Stmt::Local(l) => l.init.as_ref().map(|i| &*i.expr),
            syn::Stmt::Expr(e, _) => Some(e),
            _ => None,
        };
        let own = match own {
            Some(syn::Expr::Assign(a)) => Some(&*a.right),
            other => other,
        };
        if let Some(syn::Expr::Unsafe(u)) = own {
            let start = u.unsafe_token.span.start();
            self.direct_children.insert((start.line, start.column));
        }
        match stmt {
            syn::Stmt::Macro(m) => self.macro_call(&m.mac),
            _ => visit::visit_stmt(self, stmt),
        }
        self.anchors.pop();
    }

    fn visit_expr_macro(&mut self, m: &'ast syn::ExprMacro) {
        self.macro_call(&m.mac);
    }

    /// Macros anywhere else (impl and trait items, types, patterns).
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.macro_call(m);
    }

    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.stats.unsafe_blocks += 1;
        let start = e.unsafe_token.span.start();
        let line = start.line;
        self.site(line, "unsafe block");
        // The statement's comment counts only for a block that is the
        // statement's (or `let`'s) own expression.
        let anchor = self.direct_children.contains(&(start.line, start.column)).then(|| self.anchors.last().copied()).flatten();
        if self.has_safety_comment(line, anchor) {
            self.stats.blocks_with_safety += 1;
        } else {
            self.finding(Kind::UndocumentedUnsafeBlock, line, "unsafe block without a // SAFETY: comment".into());
        }
        self.unsafe_ranges.push(lines_of(e.span()));
        visit::visit_expr_unsafe(self, e);
    }
}

impl FileVisitor<'_> {
    fn unsafe_fn(&mut self, sig: &syn::Signature, attrs: &[syn::Attribute], body: Option<Span>) {
        let Some(unsafety) = sig.unsafety else { return };
        let line = unsafety.span.start().line;
        let name = &sig.ident;
        self.stats.unsafe_fns += 1;
        self.site(line, "unsafe fn");
        if self.trait_impls > 0 && !has_safety_doc(attrs) {
            self.stats.unsafe_fns_in_trait_impls += 1;
        } else if has_safety_doc(attrs) {
            self.stats.fns_with_safety_doc += 1;
        } else {
            self.finding(Kind::UnsafeFnWithoutSafetyDoc, line, format!("unsafe fn {name} has no # Safety section"));
        }
        if let Some(body) = body {
            self.unsafe_ranges.push(lines_of(body));
        }
    }
}

/// Scans one crate from its root file.
pub fn scan_crate(root: &Path, crate_dir: &Path, cfg: &Cfg) -> CrateScan {
    let mut files = Vec::new();
    let mut findings = Vec::new();
    let mut total = Stats::default();
    let mut forbids_unsafe = false;
    let mut roots_without_forbid = Vec::new();
    let mut sites = Vec::new();
    let mut macro_defs = Vec::new();
    let mut macro_uses = Vec::new();
    let mut imports = Vec::new();
    // (file, is the crate root, its children sit next to it like mod.rs)
    let mut queue: Vec<(PathBuf, bool, bool)> = vec![(root.to_path_buf(), true, true)];
    let mut seen = BTreeSet::new();
    while let Some((path, is_root, mod_rs_like)) = queue.pop() {
        let rel = path.strip_prefix(crate_dir).unwrap_or(&path).display().to_string();
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                findings.push(Finding { kind: Kind::Unfollowed, file: rel, line: 0, detail: format!("cannot open: {e}") });
                continue;
            }
        };
        if !seen.insert(canonical) {
            continue;
        }
        let source = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                findings.push(Finding { kind: Kind::Unfollowed, file: rel, line: 0, detail: format!("cannot read: {e}") });
                continue;
            }
        };
        let parsed = match syn::parse_file(&source) {
            Ok(f) => f,
            Err(e) => {
                let line = e.span().start().line;
                findings.push(Finding { kind: Kind::Unfollowed, file: rel, line, detail: format!("does not parse: {e}") });
                continue;
            }
        };
        if is_root {
            forbids_unsafe = cfg::effective(&parsed.attrs, cfg).iter().any(|m| {
                m.path().is_ident("forbid")
                    && matches!(m, syn::Meta::List(l) if l.tokens.to_string().split(',').any(|t| t.trim() == "unsafe_code"))
            });
            if !forbids_unsafe {
                roots_without_forbid.push(rel.clone());
            }
        }
        let mut visitor = FileVisitor {
            cfg,
            file: rel.clone(),
            lines: source.lines().collect(),
            stats: Stats::default(),
            findings: Vec::new(),
            anchors: Vec::new(),
            unsafe_ranges: Vec::new(),
            removed: Vec::new(),
            modules: Vec::new(),
            sites: Vec::new(),
            trait_impls: 0,
            direct_children: BTreeSet::new(),
            inline: Vec::new(),
            macro_defs: Vec::new(),
            macro_uses: Vec::new(),
            imports: Vec::new(),
        };
        visitor.unsafe_attributes(&parsed.attrs);
        for item in &parsed.items {
            visitor.visit_item(item);
        }
        let code = code_lines(&source);
        let is_code = |line: usize| {
            code.get(line.wrapping_sub(1)).copied().unwrap_or(false)
                && !visitor.removed.iter().any(|&(a, b)| (a..=b).contains(&line))
        };
        let line_count = source.lines().count();
        visitor.stats.code_lines = (1..=line_count).filter(|&l| is_code(l)).count();
        visitor.stats.unsafe_lines =
            (1..=line_count).filter(|&l| is_code(l) && visitor.unsafe_ranges.iter().any(|&(a, b)| (a..=b).contains(&l))).count();
        // Child modules: next to a root or mod.rs file, else in a directory
        // named after this file.
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        // rustc's rules: children of a root, mod.rs or #[path] file sit
        // next to it, those of another file in a directory named after it;
        // inline modules add a directory each; #[path] is relative to the
        // file's directory, plus inline modules' directories.
        let child_dir = if mod_rs_like || stem == "mod" { dir.clone() } else { dir.join(&stem) };
        for decl in &visitor.modules {
            let name = &decl.name;
            let inline_dir = decl.inline.iter().fold(child_dir.clone(), |d, m| d.join(m));
            let candidates = match (&decl.path, decl.inline.is_empty()) {
                (Some(p), true) => vec![dir.join(p)],
                (Some(p), false) => vec![inline_dir.join(p)],
                (None, _) => vec![inline_dir.join(format!("{name}.rs")), inline_dir.join(name).join("mod.rs")],
            };
            match candidates.iter().find(|c| c.exists()) {
                Some(found) => queue.push((found.clone(), false, decl.path.is_some())),
                None => visitor.findings.push(Finding {
                    kind: Kind::Unfollowed,
                    file: rel.clone(),
                    line: 0,
                    detail: format!("module {name}: no file among {candidates:?}"),
                }),
            }
        }
        total.add(&visitor.stats);
        findings.extend(visitor.findings);
        sites.extend(visitor.sites);
        macro_defs.extend(visitor.macro_defs);
        macro_uses.extend(visitor.macro_uses);
        imports.extend(visitor.imports);
        files.push(FileReport { path: rel, stats: visitor.stats });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    findings.sort();
    sites.sort();
    macro_defs.sort();
    macro_uses.sort();
    macro_uses.dedup();
    imports.sort();
    imports.dedup();
    CrateScan { files, total, forbids_unsafe, roots_without_forbid, findings, sites, macro_defs, macro_uses, imports }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lines_skip_comments_and_see_strings() {
        let src = "// c\n\nlet a = 1; // x\n/* a\n b */\nlet s = \"// not a comment\n still\";\nlet c = '\\'';\nfn f<'a>() {}\n/// doc\n";
        let code = code_lines(src);
        let lines: Vec<usize> = (0..9).filter(|&i| code[i]).map(|i| i + 1).collect();
        assert_eq!(lines, [3, 6, 7, 8, 9]);
    }
}
