//! Code that runs while the kernel is built: build scripts, proc-macro
//! crates and the host crates they use. None of it is compiled into the
//! kernel, but all of it decides what is: a build script can link a native
//! archive or pass linker arguments, a proc-macro writes code into the
//! crate that uses it (with call-site spans `forbid(unsafe_code)` does not
//! see). Each must be reviewed (`[build-scripts]`, `[proc-macros]` in
//! `trusted.toml`).

use crate::cfg::Cfg;
use crate::scan::{self, Finding, Kind, Stats};
use crate::{Origin, Policy};
use serde::Serialize;
use std::path::Path;

/// What kind of build-time code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum BuildKind {
    /// A package's build script (`build.rs`, target kind `custom-build`).
    BuildScript,
    /// A proc-macro crate used by a kernel or cell crate (or by another
    /// proc-macro or build script they use).
    ProcMacro,
    /// A crate compiled for the host only because a build script or
    /// proc-macro uses it. Listed, not judged.
    HostDependency,
}

/// One piece of build-time code.
#[derive(Debug, Clone, Serialize)]
pub struct BuildEntry {
    /// Package name.
    pub package: String,
    /// Version.
    pub version: String,
    /// Ours or third-party.
    pub origin: Origin,
    /// What it is.
    pub kind: BuildKind,
    /// Its root file, relative to the package directory.
    pub file: String,
    /// The package's `links = "..."` key, if any.
    pub links: Option<String>,
    /// Lines of the build script that link native code or pass linker
    /// arguments (`cargo:rustc-link-lib`, `rustc-link-arg*`,
    /// `rustc-link-search`), and build-dependencies that compile native
    /// code (`cc`, `cmake`): (line, text).
    pub native: Vec<(usize, String)>,
    /// The policy's reason, when reviewed.
    pub reviewed: Option<String>,
    /// Its figures, read like any crate (host cfg).
    pub stats: Stats,
    /// Unsafe sites in it.
    pub unsafe_sites: usize,
}

/// Directives of a build script that put native code or linker arguments
/// into the build (matched as text: `cargo:` and `cargo::` forms).
const LINK_DIRECTIVES: [&str; 4] = ["rustc-link-lib", "rustc-link-arg", "rustc-link-search", "rustc-cdylib-link-arg"];

/// Build-dependencies that compile native code for the build script to link.
pub const NATIVE_BUILD_DEPS: [&str; 3] = ["cc", "cmake", "pkg-config"];

/// The lines of `source` that mention a link directive.
pub fn link_lines(source: &str) -> Vec<(usize, String)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| LINK_DIRECTIVES.iter().any(|d| l.contains(d)))
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

/// Reads a build script (or proc-macro root) at `root` in package
/// directory `dir` with the host's cfg: its figures, its unsafe sites and
/// (for a build script) the lines that link native code.
pub fn read(kind: BuildKind, root: &Path, dir: &Path, cfg: &Cfg) -> (Stats, usize, Vec<(usize, String)>) {
    let scan = scan::scan_crate(root, dir, cfg);
    let native = match kind {
        BuildKind::BuildScript => std::fs::read_to_string(root).map(|s| link_lines(&s)).unwrap_or_default(),
        _ => Vec::new(),
    };
    (scan.total, scan.sites.len(), native)
}

/// The policy's reason for `package` of this kind, if reviewed.
pub fn reviewed(kind: BuildKind, package: &str, policy: &Policy) -> Option<String> {
    match kind {
        BuildKind::BuildScript => policy.build_scripts.get(package).cloned(),
        BuildKind::ProcMacro => policy.proc_macros.get(package).cloned(),
        BuildKind::HostDependency => None,
    }
}

/// The violations of one piece of build-time code: unreviewed build
/// scripts (with each line that links native code) and proc-macros.
pub fn judge(entry: &BuildEntry) -> Vec<Finding> {
    let mut out = Vec::new();
    if entry.reviewed.is_some() {
        return out;
    }
    match entry.kind {
        BuildKind::BuildScript => {
            out.push(Finding {
                kind: Kind::UnreviewedBuildScript,
                file: entry.file.clone(),
                line: 1,
                detail: format!(
                    "{} {} has a build script that runs at build time and is not reviewed: review it and add it to [build-scripts] in tools/audit/trusted.toml with a reason",
                    entry.package, entry.version
                ),
            });
            if let Some(links) = &entry.links {
                out.push(Finding {
                    kind: Kind::NativeLink,
                    file: "Cargo.toml".into(),
                    line: 0,
                    detail: format!("links = \"{links}\": the package links a native library into the build"),
                });
            }
            for (line, text) in &entry.native {
                out.push(Finding {
                    kind: Kind::NativeLink,
                    file: if *line == 0 { "Cargo.toml".into() } else { entry.file.clone() },
                    line: *line,
                    detail: format!("links native code or passes linker arguments into the build: {text}"),
                });
            }
        }
        BuildKind::ProcMacro => out.push(Finding {
            kind: Kind::UnreviewedProcMacro,
            file: entry.file.clone(),
            line: 1,
            detail: format!(
                "{} {} is a proc-macro crate: the code it writes is not seen by forbid(unsafe_code) or this audit; review it and add it to [proc-macros] in tools/audit/trusted.toml with a reason",
                entry.package, entry.version
            ),
        }),
        BuildKind::HostDependency => {}
    }
    out
}
