//! `make audit`: what must be trusted in Tessera.
//!
//! The crates compiled into the kernel and its cells come from `cargo
//! metadata` for the kernel target (the resolved graph from
//! `tessera-kernel` and the cell crates, normal dependencies only). Every
//! workspace crate and every such dependency is read with `syn` ([`scan`]),
//! with `cfg` evaluated as the kernel build sees it ([`cfg`]). The policy
//! (`tools/audit/trusted.toml`) names the trusted workspace crates, the
//! reviewed third-party crates with unsafe code, the safe crates the base's
//! soundness depends on, and the reviewed build scripts, proc-macros and
//! unsafe-writing macros, each with a reason; anything else that contains
//! unsafe code, lacks `#![forbid(unsafe_code)]`, leaves an unsafe block
//! without `// SAFETY:` or an unsafe fn/trait without `# Safety` in a
//! trusted workspace crate, is an unreviewed build script or proc-macro
//! ([`buildtime`]), or invokes another crate's unsafe-writing macro from a
//! crate that must be safe ([`macros`]) is a violation, named by file and
//! line. [`cells`] lists each built cell's imports from the kernel.
#![forbid(unsafe_code)]

pub mod buildtime;
pub mod cells;
pub mod cfg;
pub mod macros;
pub mod scan;

use scan::{CrateScan, Finding, Kind, Stats};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The reviewed trust decisions, from `tools/audit/trusted.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Policy {
    /// Workspace crates allowed to contain unsafe code, with why.
    #[serde(default)]
    pub workspace: BTreeMap<String, String>,
    /// Third-party crates with unsafe code that were reviewed, with why.
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    /// Safe crates (no unsafe code) the base's soundness depends on: the
    /// base writes what they compute. Counted in the trusted share.
    #[serde(default, rename = "trusted-safe")]
    pub trusted_safe: BTreeMap<String, String>,
    /// Packages whose build script was reviewed, with why.
    #[serde(default, rename = "build-scripts")]
    pub build_scripts: BTreeMap<String, String>,
    /// Proc-macro crates that were reviewed, with why.
    #[serde(default, rename = "proc-macros")]
    pub proc_macros: BTreeMap<String, String>,
    /// Macros that emit unsafe code, reviewed for use from crates that
    /// must be safe: `"crate::macro" = "reason"`.
    #[serde(default)]
    pub macros: BTreeMap<String, String>,
    /// Reviewed macros that only some crates may invoke (their safety
    /// contract names the caller): `"crate::macro" = ["package", ...]`.
    #[serde(default, rename = "macro-callers")]
    pub macro_callers: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// Reads the policy file.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where a crate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Origin {
    /// This repository.
    Workspace,
    /// A third-party crate.
    Dependency,
}

/// One audited crate.
#[derive(Debug, Clone, Serialize)]
pub struct CrateEntry {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Ours or third-party.
    pub origin: Origin,
    /// Compiled into the kernel or a cell (else a host tool or test).
    pub in_kernel: bool,
    /// Trusted: the base, or a third-party crate with unsafe code.
    pub trusted: bool,
    /// The policy's reason, for trusted crates.
    pub reason: Option<String>,
    /// What the scan found.
    pub scan: CrateScan,
}

/// Lines of code and how much of it is trusted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Our code compiled into the kernel and cells.
    pub own_lines: usize,
    /// Of that, in trusted crates (the base).
    pub own_trusted_lines: usize,
    /// All code compiled into the kernel and cells, with dependencies.
    pub all_lines: usize,
    /// Of that, in trusted crates.
    pub all_trusted_lines: usize,
    /// Code lines inside unsafe blocks and functions, all kernel crates.
    pub unsafe_lines: usize,
    /// Trusted crates.
    pub trusted_crates: usize,
    /// Crates compiled into the kernel and cells.
    pub kernel_crates: usize,
    /// Of our safe code (outside the base), lines in cells
    /// (`tessera-cell-*` crates other than `tessera-cell-api`).
    #[serde(default)]
    pub cell_lines: usize,
}

impl Totals {
    /// Trusted share of our own code, in percent.
    pub fn own_share(&self) -> f64 {
        percent(self.own_trusted_lines, self.own_lines)
    }

    /// Share of our code outside the base that lives in cells, in percent.
    pub fn cell_share(&self) -> f64 {
        percent(self.cell_lines, self.own_lines - self.own_trusted_lines)
    }

    /// Trusted share with dependencies, in percent.
    pub fn all_share(&self) -> f64 {
        percent(self.all_trusted_lines, self.all_lines)
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// Every crate, workspace first, then dependencies, by name.
    pub crates: Vec<CrateEntry>,
    /// Totals.
    pub totals: Totals,
    /// What fails the audit.
    pub violations: Vec<(String, Finding)>,
    /// What the reader should know (unparsed macros, unfollowed files,
    /// stale policy entries).
    pub notes: Vec<(String, Finding)>,
    /// Build scripts, proc-macros and host crates of the build.
    pub build_time: Vec<buildtime::BuildEntry>,
    /// Exported macros of kernel crates that write unsafe code.
    pub unsafe_macros: Vec<macros::UnsafeMacro>,
    /// Each built cell's imports from the kernel (see [`Audit::read_cells`]).
    pub cells: Vec<cells::CellSurface>,
}

impl Audit {
    /// Adds the capability surface of the cell files in `dir`; a cell file
    /// that cannot be read is noted (with why).
    pub fn read_cells(&mut self, dir: &Path) -> Result<(), String> {
        self.cells = cells::read_dir(dir)?;
        for c in &self.cells {
            if let Some(e) = &c.error {
                self.notes.push((c.file.clone(), Finding { kind: Kind::Unfollowed, file: c.file.clone(), line: 0, detail: format!("cell file not read: {e}") }));
            }
        }
        Ok(())
    }
}

struct Package {
    name: String,
    version: String,
    roots: Vec<PathBuf>,
    dir: PathBuf,
    proc_macro: bool,
    build_script: Option<PathBuf>,
    links: Option<String>,
}

/// Runs `cargo metadata` in `workspace` for the kernel target.
pub fn metadata(workspace: &Path) -> Result<Value, String> {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--filter-platform", "x86_64-unknown-none"])
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))
}

fn packages(meta: &Value) -> BTreeMap<String, Package> {
    let mut out = BTreeMap::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or_default().to_string();
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        let mut roots = Vec::new();
        let mut proc_macro = false;
        let mut build_script = None;
        for t in p["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = t["kind"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
            proc_macro |= kinds.contains(&"proc-macro");
            if kinds.contains(&"custom-build") {
                build_script = t["src_path"].as_str().map(PathBuf::from);
            }
            if kinds.iter().any(|k| matches!(*k, "lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "bin" | "proc-macro")) {
                roots.push(PathBuf::from(t["src_path"].as_str().unwrap_or_default()));
            }
        }
        out.insert(
            id,
            Package {
                name: p["name"].as_str().unwrap_or_default().into(),
                version: p["version"].as_str().unwrap_or_default().into(),
                roots,
                dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
                proc_macro,
                build_script,
                links: p["links"].as_str().map(String::from),
            },
        );
    }
    out
}

/// The dependencies of package `id`: (kinds — `None` normal, `Some("build")`,
/// `Some("dev")` — extern crate name, package id).
fn deps_of<'m>(meta: &'m Value, id: &str) -> Vec<(Vec<Option<&'m str>>, &'m str, &'m str)> {
    meta["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"].as_str() == Some(id))
        .and_then(|n| n["deps"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let kinds = d["dep_kinds"].as_array().into_iter().flatten().map(|k| k["kind"].as_str()).collect();
            Some((kinds, d["name"].as_str()?, d["pkg"].as_str()?))
        })
        .collect()
}

/// Package ids compiled into the kernel and its cells: reachable from
/// `tessera-kernel` and `tessera-cell-*` through normal dependencies.
fn kernel_set(meta: &Value, pkgs: &BTreeMap<String, Package>) -> BTreeSet<String> {
    let mut queue: VecDeque<String> = pkgs
        .iter()
        .filter(|(_, p)| p.name == "tessera-kernel" || p.name.starts_with("tessera-cell-"))
        .map(|(id, _)| id.clone())
        .collect();
    let mut set = BTreeSet::new();
    while let Some(id) = queue.pop_front() {
        if pkgs.get(&id).is_some_and(|p| p.proc_macro) || !set.insert(id.clone()) {
            continue;
        }
        for (kinds, _, pkg) in deps_of(meta, &id) {
            if kinds.contains(&None) {
                queue.push_back(pkg.to_string());
            }
        }
    }
    set
}

/// Package ids built for the host to build the kernel and cells: the
/// proc-macros and build-dependencies of kernel crates, and everything
/// they depend on (normal and build dependencies).
fn build_time_set(meta: &Value, pkgs: &BTreeMap<String, Package>, kernel: &BTreeSet<String>) -> BTreeSet<String> {
    let mut queue = VecDeque::new();
    for id in kernel {
        for (kinds, _, pkg) in deps_of(meta, id) {
            if kinds.contains(&Some("build")) || (kinds.contains(&None) && pkgs.get(pkg).is_some_and(|p| p.proc_macro)) {
                queue.push_back(pkg.to_string());
            }
        }
    }
    let mut set = BTreeSet::new();
    while let Some(id) = queue.pop_front() {
        if !set.insert(id.clone()) {
            continue;
        }
        for (kinds, _, pkg) in deps_of(meta, &id) {
            if kinds.iter().any(|k| *k != Some("dev")) {
                queue.push_back(pkg.to_string());
            }
        }
    }
    set
}

/// The build scripts, proc-macros and host crates of the kernel's build.
fn build_time(meta: &Value, pkgs: &BTreeMap<String, Package>, members: &BTreeSet<String>, kernel: &BTreeSet<String>, policy: &Policy) -> Vec<buildtime::BuildEntry> {
    use buildtime::BuildKind;
    let host = build_time_set(meta, pkgs, kernel);
    let mut out = Vec::new();
    for (id, pkg) in pkgs {
        if !kernel.contains(id) && !host.contains(id) {
            continue;
        }
        let origin = if members.contains(id) { Origin::Workspace } else { Origin::Dependency };
        let cfg = cfg::Cfg { features: features(meta, id), host: true };
        let mut add = |kind: BuildKind, root: &Path| {
            let (stats, unsafe_sites, mut native) = buildtime::read(kind, root, &pkg.dir, &cfg);
            if kind == BuildKind::BuildScript {
                for (kinds, name, dep) in deps_of(meta, id) {
                    let dep_name = pkgs.get(dep).map_or(name, |p| p.name.as_str());
                    if kinds.contains(&Some("build")) && buildtime::NATIVE_BUILD_DEPS.contains(&dep_name) {
                        native.push((0, format!("build-dependency {dep_name} (compiles native code)")));
                    }
                }
            }
            out.push(buildtime::BuildEntry {
                package: pkg.name.clone(),
                version: pkg.version.clone(),
                origin,
                kind,
                file: root.strip_prefix(&pkg.dir).unwrap_or(root).display().to_string(),
                links: if kind == BuildKind::BuildScript { pkg.links.clone() } else { None },
                native,
                reviewed: buildtime::reviewed(kind, &pkg.name, policy),
                stats,
                unsafe_sites,
            });
        };
        if let Some(script) = &pkg.build_script {
            add(BuildKind::BuildScript, script);
        }
        if host.contains(id) && !kernel.contains(id) {
            let kind = if pkg.proc_macro { BuildKind::ProcMacro } else { BuildKind::HostDependency };
            if let Some(root) = pkg.roots.first() {
                add(kind, root);
            }
        }
    }
    out.sort_by(|a, b| (a.kind, a.origin, &a.package).cmp(&(b.kind, b.origin, &b.package)));
    out
}

/// Features of each package (name, version) as the kernel and cells are
/// built: `cargo tree` for the kernel target from those roots, normal
/// dependencies only (cargo metadata's features also include what
/// dev-dependencies and host tools switch on).
fn build_features(workspace: &Path, roots: &[String]) -> Result<BTreeMap<(String, String), BTreeSet<String>>, String> {
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["tree", "--target", "x86_64-unknown-none", "-e", "normal", "--prefix", "none", "--format", "{p}|{f}"]);
    for root in roots {
        cmd.args(["-p", root]);
    }
    let out = cmd.current_dir(workspace).output().map_err(|e| format!("cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let mut features: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, list)) = line.split_once('|') else { continue };
        let mut words = package.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else { continue };
        let set = features.entry((name.to_string(), version.trim_start_matches('v').to_string())).or_default();
        set.extend(list.trim_end_matches(" (*)").split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from));
    }
    Ok(features)
}

fn features(meta: &Value, id: &str) -> BTreeSet<String> {
    meta["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"].as_str() == Some(id))
        .and_then(|n| n["features"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

fn scan_package(pkg: &Package, features: BTreeSet<String>, host: bool) -> CrateScan {
    let cfg = cfg::Cfg { features, host };
    let mut merged: Option<CrateScan> = None;
    for root in &pkg.roots {
        let scan = scan::scan_crate(root, &pkg.dir, &cfg);
        merged = Some(match merged {
            None => scan,
            Some(mut m) => {
                // A package with a library and binaries: one crate each;
                // files shared by both count once.
                for file in scan.files {
                    if !m.files.iter().any(|f| f.path == file.path) {
                        m.total.add(&file.stats);
                        m.files.push(file);
                    }
                }
                m.forbids_unsafe &= scan.forbids_unsafe;
                m.roots_without_forbid.extend(scan.roots_without_forbid);
                m.findings.extend(scan.findings);
                m.sites.extend(scan.sites);
                m.findings.sort();
                m.findings.dedup();
                m.sites.sort();
                m.sites.dedup();
                m.macro_defs.extend(scan.macro_defs);
                m.macro_defs.sort();
                m.macro_defs.dedup();
                m.macro_uses.extend(scan.macro_uses);
                m.macro_uses.sort();
                m.macro_uses.dedup();
                m.imports.extend(scan.imports);
                m.imports.sort();
                m.imports.dedup();
                m
            }
        });
    }
    merged.unwrap_or(CrateScan {
        files: Vec::new(),
        total: Stats::default(),
        forbids_unsafe: false,
        roots_without_forbid: Vec::new(),
        findings: Vec::new(),
        sites: Vec::new(),
        macro_defs: Vec::new(),
        macro_uses: Vec::new(),
        imports: Vec::new(),
    })
}

/// Judges one crate against the policy: its violations and notes.
pub fn judge(entry: &CrateEntry, policy: &Policy) -> (Vec<Finding>, Vec<Finding>) {
    let mut violations = Vec::new();
    // Code the scan could not read may hide unsafe code: that fails the
    // audit for our crates and for dependencies not reviewed as trusted.
    let reviewed = entry.origin == Origin::Dependency && policy.dependencies.contains_key(&entry.name);
    let (unread, mut notes): (Vec<Finding>, Vec<Finding>) = entry
        .scan
        .findings
        .iter()
        .filter(|f| !f.kind.is_violation())
        .cloned()
        .partition(|f| f.kind == Kind::Unfollowed && !reviewed);
    violations.extend(unread.into_iter().map(|mut f| {
        f.detail = format!("{} (code the audit cannot read may hide unsafe code)", f.detail);
        f
    }));
    let documentation = entry.scan.findings.iter().filter(|f| f.kind.is_violation()).cloned();
    // A trusted-safe crate is trusted for the TCB but must stay safe.
    let only_trusted_safe = policy.trusted_safe.contains_key(&entry.name) && !policy.workspace.contains_key(&entry.name);
    let unsafe_allowed = entry.trusted && !only_trusted_safe;
    match (entry.origin, unsafe_allowed) {
        (Origin::Workspace, true) => violations.extend(documentation),
        (Origin::Workspace, false) => {
            for root in &entry.scan.roots_without_forbid {
                violations.push(Finding {
                    kind: Kind::MissingForbidUnsafe,
                    file: root.clone(),
                    line: 1,
                    detail: format!("{} is not on the trusted list and this crate root lacks #![forbid(unsafe_code)]", entry.name),
                });
            }
            violations.extend(entry.scan.sites.iter().cloned().map(|mut s| {
                s.detail = format!("{} in {}, which is not on the trusted list", s.detail, entry.name);
                s
            }));
        }
        (Origin::Dependency, _) => {
            if entry.scan.total.has_unsafe() && !policy.dependencies.contains_key(&entry.name) {
                let first = entry.scan.sites.first();
                violations.push(Finding {
                    kind: Kind::UnreviewedDependency,
                    file: first.map(|s| s.file.clone()).unwrap_or_default(),
                    line: first.map_or(0, |s| s.line),
                    detail: format!(
                        "{} {} contains unsafe code ({} sites) and is not reviewed: review it and add it to tools/audit/trusted.toml with a reason",
                        entry.name,
                        entry.version,
                        entry.scan.sites.len()
                    ),
                });
            }
            if !entry.scan.total.has_unsafe() && policy.dependencies.contains_key(&entry.name) {
                notes.push(Finding {
                    kind: Kind::Unfollowed,
                    file: String::new(),
                    line: 0,
                    detail: format!("{} is reviewed in trusted.toml but has no unsafe code in this build", entry.name),
                });
            }
        }
    }
    (violations, notes)
}

/// Audits the workspace at `workspace` under `policy`.
pub fn audit(workspace: &Path, policy: &Policy) -> Result<Audit, String> {
    let meta = metadata(workspace)?;
    let pkgs = packages(&meta);
    let members: BTreeSet<String> =
        meta["workspace_members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(String::from)).collect();
    let roots: Vec<String> = pkgs
        .values()
        .filter(|p| p.name == "tessera-kernel" || p.name.starts_with("tessera-cell-"))
        .map(|p| p.name.clone())
        .collect();
    let kernel_features = build_features(workspace, &roots)?;
    // cargo metadata's graph also holds optional dependencies no feature
    // of the kernel build turns on (smoltcp's defmt): only what cargo tree
    // builds for the kernel target is in it.
    let mut in_kernel = kernel_set(&meta, &pkgs);
    in_kernel.retain(|id| pkgs.get(id).is_some_and(|p| kernel_features.contains_key(&(p.name.clone(), p.version.clone()))));
    let mut crates = Vec::new();
    let mut externs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (id, pkg) in &pkgs {
        let origin = if members.contains(id) { Origin::Workspace } else { Origin::Dependency };
        let kernel = in_kernel.contains(id);
        if origin == Origin::Dependency && !kernel {
            continue; // host-only dependencies (tools, tests, build scripts)
        }
        if kernel {
            let names = deps_of(&meta, id)
                .into_iter()
                .filter(|(kinds, _, _)| kinds.contains(&None))
                .filter_map(|(_, name, dep)| Some((name.to_string(), pkgs.get(dep)?.name.clone())))
                .collect();
            externs.insert(pkg.name.clone(), names);
        }
        // Kernel crates with the features of the kernel build; host tools
        // and tests with theirs, on the host's cfg.
        let scan = match kernel_features.get(&(pkg.name.clone(), pkg.version.clone())) {
            Some(f) if kernel => scan_package(pkg, f.clone(), false),
            _ => scan_package(pkg, features(&meta, id), !kernel),
        };
        let (trusted, reason) = match origin {
            Origin::Workspace => (policy.workspace.contains_key(&pkg.name), policy.workspace.get(&pkg.name).cloned()),
            Origin::Dependency => (scan.total.has_unsafe(), policy.dependencies.get(&pkg.name).cloned()),
        };
        // A safe crate the base's soundness depends on is trusted too.
        let (trusted, reason) = match policy.trusted_safe.get(&pkg.name) {
            Some(why) if !trusted => (true, Some(format!("trusted-safe: {why}"))),
            _ => (trusted, reason),
        };
        crates.push(CrateEntry { name: pkg.name.clone(), version: pkg.version.clone(), origin, in_kernel: kernel, trusted, reason, scan });
    }
    crates.sort_by(|a, b| (a.origin, &a.name).cmp(&(b.origin, &b.name)));
    let mut violations = Vec::new();
    let mut notes = Vec::new();
    for entry in &crates {
        let (v, n) = judge(entry, policy);
        violations.extend(v.into_iter().map(|f| (entry.name.clone(), f)));
        notes.extend(n.into_iter().map(|f| (entry.name.clone(), f)));
    }
    let resolvable: Vec<macros::CrateMacros<'_>> = crates
        .iter()
        .filter(|c| c.in_kernel)
        .map(|c| macros::CrateMacros {
            package: &c.name,
            externs: externs.get(&c.name).cloned().unwrap_or_default(),
            scan: &c.scan,
            checked: match c.origin {
                Origin::Workspace => !policy.workspace.contains_key(&c.name),
                Origin::Dependency => !policy.dependencies.contains_key(&c.name),
            },
        })
        .collect();
    let (unsafe_macros, macro_violations) = macros::check(&resolvable, policy);
    violations.extend(macro_violations);
    for key in policy.macros.keys() {
        if !unsafe_macros.iter().any(|m| &m.key == key) {
            notes.push((
                key.clone(),
                Finding { kind: Kind::Unfollowed, file: String::new(), line: 0, detail: format!("{key} is reviewed in [macros] but no kernel crate exports a macro by that name that writes unsafe code") },
            ));
        }
    }
    let build_time = build_time(&meta, &pkgs, &members, &in_kernel, policy);
    for entry in &build_time {
        violations.extend(buildtime::judge(entry).into_iter().map(|f| (entry.package.clone(), f)));
    }
    for (name, kind) in policy
        .build_scripts
        .keys()
        .map(|n| (n, buildtime::BuildKind::BuildScript))
        .chain(policy.proc_macros.keys().map(|n| (n, buildtime::BuildKind::ProcMacro)))
    {
        if !build_time.iter().any(|b| &b.package == name && b.kind == kind) {
            notes.push((
                name.clone(),
                Finding { kind: Kind::Unfollowed, file: String::new(), line: 0, detail: format!("{name} is reviewed in trusted.toml as {kind:?} but is not one in the build") },
            ));
        }
    }
    for name in policy.workspace.keys().chain(policy.dependencies.keys()).chain(policy.trusted_safe.keys()) {
        if !crates.iter().any(|c| &c.name == name) {
            notes.push((
                name.clone(),
                Finding { kind: Kind::Unfollowed, file: String::new(), line: 0, detail: format!("{name} is in trusted.toml but not in the build") },
            ));
        }
    }
    let mut totals = Totals::default();
    for c in crates.iter().filter(|c| c.in_kernel) {
        let lines = c.scan.total.code_lines;
        totals.kernel_crates += 1;
        totals.all_lines += lines;
        totals.unsafe_lines += c.scan.total.unsafe_lines;
        if c.trusted {
            totals.trusted_crates += 1;
            totals.all_trusted_lines += lines;
        }
        if c.origin == Origin::Workspace {
            totals.own_lines += lines;
            if c.trusted {
                totals.own_trusted_lines += lines;
            } else if c.name.starts_with("tessera-cell-") && c.name != "tessera-cell-api" {
                totals.cell_lines += lines;
            }
        }
    }
    Ok(Audit { crates, totals, violations, notes, build_time, unsafe_macros, cells: Vec::new() })
}

fn place(f: &Finding) -> String {
    match (f.file.is_empty(), f.line) {
        (true, _) => String::new(),
        (false, 0) => format!("{}: ", f.file),
        (false, line) => format!("{}:{line}: ", f.file),
    }
}

fn coverage(done: usize, of: usize) -> String {
    if of == 0 { "-".into() } else { format!("{done}/{of}") }
}

/// The figures of a row, in column order (see [`HEADER`]).
fn columns(s: &Stats) -> [String; 10] {
    [
        s.code_lines.to_string(),
        s.unsafe_lines.to_string(),
        s.unsafe_blocks.to_string(),
        coverage(s.blocks_with_safety, s.unsafe_blocks),
        s.unsafe_fns.to_string(),
        coverage(s.fns_with_safety_doc + s.traits_with_safety_doc, s.unsafe_fns - s.unsafe_fns_in_trait_impls + s.unsafe_traits),
        s.unsafe_impls.to_string(),
        s.unsafe_traits.to_string(),
        (s.unsafe_externs + s.unsafe_attributes).to_string(),
        s.asm_sites.to_string(),
    ]
}

fn row(s: &Stats) -> String {
    const WIDTHS: [usize; 10] = [6, 6, 6, 7, 5, 5, 5, 5, 5, 4];
    columns(s).iter().zip(WIDTHS).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join(" ")
}

fn place_label(c: &CrateEntry) -> &'static str {
    match (c.origin, c.in_kernel) {
        (Origin::Workspace, true) => "kernel",
        (Origin::Workspace, false) => "host",
        (Origin::Dependency, _) => "dependency",
    }
}

const HEADER: &str = " lines unsafe blocks SAFETY:   fns Safety impls trait ext/@  asm";

/// The report for the terminal.
pub fn render_text(audit: &Audit, previous: Option<&Totals>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Crates (lines = code lines as the kernel build compiles them; unsafe = lines inside unsafe blocks/fns)");
    let _ = writeln!(out, "{:<34} {:<10} {:<8}{HEADER}", "crate", "where", "trust");
    for c in &audit.crates {
        let place = place_label(c);
        let trust = if c.trusted { "TRUSTED" } else { "safe" };
        let _ = writeln!(out, "{:<34} {place:<10} {trust:<8}{}", format!("{} {}", c.name, c.version), row(&c.scan.total));
    }
    render_build_time(&mut out, audit);
    render_unsafe_macros(&mut out, audit);
    render_cells(&mut out, audit);
    let _ = writeln!(out, "\nTrusted crates, by file (files without unsafe code summed):");
    for c in audit.crates.iter().filter(|c| c.trusted) {
        let _ = writeln!(out, "{} {} — {}", c.name, c.version, c.reason.as_deref().unwrap_or("NOT REVIEWED"));
        let mut rest = Stats::default();
        let mut rest_files = 0;
        for f in &c.scan.files {
            if f.stats.has_unsafe() {
                let _ = writeln!(out, "  {:<48} {}", f.path, row(&f.stats));
            } else {
                rest.add(&f.stats);
                rest_files += 1;
            }
        }
        if rest_files > 0 {
            let _ = writeln!(out, "  {:<48} {}", format!("({rest_files} files without unsafe code)"), row(&rest));
        }
        let macros = c.scan.total.unsafe_in_macro_definitions;
        if macros > 0 {
            let _ = writeln!(out, "  `unsafe` tokens in macro_rules! bodies: {macros} (their unsafe blocks are checked for SAFETY comments where written)");
        }
    }
    let t = &audit.totals;
    let _ = writeln!(out, "\nTotals for the kernel and its cells ({} crates, {} trusted):", t.kernel_crates, t.trusted_crates);
    let delta = |now: f64, before: Option<f64>| match before {
        Some(b) => format!(" (last recorded {b:.1}%, {:+.1})", now - b),
        None => " (no recorded audit)".into(),
    };
    let _ = writeln!(
        out,
        "  our code:          {} trusted of {} lines = {:.1}%{}",
        t.own_trusted_lines,
        t.own_lines,
        t.own_share(),
        delta(t.own_share(), previous.map(Totals::own_share))
    );
    let _ = writeln!(
        out,
        "  with dependencies: {} trusted of {} lines = {:.1}%{}",
        t.all_trusted_lines,
        t.all_lines,
        t.all_share(),
        delta(t.all_share(), previous.map(Totals::all_share))
    );
    let _ = writeln!(out, "  lines inside unsafe blocks and functions: {}", t.unsafe_lines);
    let _ = writeln!(
        out,
        "  our code outside the base: {} lines, {} of them in cells = {:.1}%",
        t.own_lines - t.own_trusted_lines,
        t.cell_lines,
        t.cell_share()
    );
    if !audit.notes.is_empty() {
        let _ = writeln!(out, "\nNotes ({}):", audit.notes.len());
        for (krate, f) in &audit.notes {
            let _ = writeln!(out, "  {krate}: {}{}", place(f), f.detail);
        }
    }
    if audit.violations.is_empty() {
        let _ = writeln!(out, "\naudit: no violations");
    } else {
        let _ = writeln!(out, "\nViolations ({}):", audit.violations.len());
        for (krate, f) in &audit.violations {
            let _ = writeln!(out, "  {krate}: {}{:?}: {}", place(f), f.kind, f.detail);
        }
    }
    out
}

fn build_kind_label(kind: buildtime::BuildKind) -> &'static str {
    match kind {
        buildtime::BuildKind::BuildScript => "build script",
        buildtime::BuildKind::ProcMacro => "proc-macro",
        buildtime::BuildKind::HostDependency => "host crate",
    }
}

/// What runs at build time, one line each (with its native linking).
fn render_build_time(out: &mut String, audit: &Audit) {
    let _ = writeln!(out, "\nBuild-time code (runs on the host while the kernel and cells are built; not in the line counts):");
    if audit.build_time.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for b in &audit.build_time {
        let review = match (&b.reviewed, b.kind) {
            (_, buildtime::BuildKind::HostDependency) => "used by the above".to_string(),
            (Some(why), _) => format!("reviewed: {why}"),
            (None, _) => "NOT REVIEWED".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<28} {:<22} {:>5} lines {:>3} unsafe  {review}",
            build_kind_label(b.kind),
            format!("{} {}", b.package, b.version),
            b.file,
            b.stats.code_lines,
            b.unsafe_sites
        );
        if let Some(links) = &b.links {
            let _ = writeln!(out, "    links = \"{links}\" (links a native library)");
        }
        for (line, text) in &b.native {
            let _ = writeln!(out, "    links into the build: {}{text}", if *line == 0 { String::new() } else { format!("{}:{line}: ", b.file) });
        }
    }
}

/// Exported macros that write unsafe code, and who (of the crates that
/// must be safe) invokes them.
fn render_unsafe_macros(out: &mut String, audit: &Audit) {
    let _ = writeln!(out, "\nExported macros that write unsafe code (forbid(unsafe_code) does not see it where they expand):");
    if audit.unsafe_macros.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for m in &audit.unsafe_macros {
        let review = match &m.reviewed {
            Some(why) => format!("reviewed: {why}"),
            None if m.uses.is_empty() => "not used by crates that must be safe".into(),
            None => "NOT REVIEWED".into(),
        };
        let _ = writeln!(out, "  {}! ({} {}:{}) writes {} — {review}", m.key, m.package, m.file, m.line, m.emits.join(", "));
        for (package, file, line) in &m.uses {
            let _ = writeln!(out, "    invoked by {package} at {file}:{line}");
        }
    }
}

/// Each cell's imports from the kernel, by crate.
fn render_cells(out: &mut String, audit: &Audit) {
    if audit.cells.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nCell capability surface (kernel symbols each cell imports, by crate):");
    for c in &audit.cells {
        if let Some(e) = &c.error {
            let _ = writeln!(out, "  {}: NOT READ: {e}", c.file);
            continue;
        }
        let total: usize = c.imports.values().map(Vec::len).sum();
        let _ = writeln!(out, "  {}: {total} imports", c.file);
        for (krate, names) in &c.imports {
            let _ = writeln!(out, "    {krate} ({}):", names.len());
            for name in names {
                let _ = writeln!(out, "      {name}");
            }
        }
    }
}

/// The report as Markdown, for a review.
pub fn render_markdown(audit: &Audit, previous: Option<&Totals>) -> String {
    let mut out = String::from("# Tessera unsafe-code audit\n\n");
    let t = &audit.totals;
    let _ = writeln!(
        out,
        "Trusted share of the code compiled into the kernel and its cells: **{:.1}%** of our own ({} of {} lines), **{:.1}%** with dependencies ({} of {}).{}\n",
        t.own_share(),
        t.own_trusted_lines,
        t.own_lines,
        t.all_share(),
        t.all_trusted_lines,
        t.all_lines,
        previous.map(|p| format!(" Last recorded: {:.1}% / {:.1}%.", p.own_share(), p.all_share())).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Of our code outside the base ({} lines), **{:.1}%** lives in cells ({} lines).\n",
        t.own_lines - t.own_trusted_lines,
        t.cell_share(),
        t.cell_lines
    );
    out.push_str("| crate | where | trust | lines | unsafe lines | blocks | SAFETY | unsafe fn | # Safety | impls | traits | extern/attr | asm |\n");
    out.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let md_row = |s: &Stats| format!("{} |", columns(s).join(" | "));
    for c in &audit.crates {
        let place = place_label(c);
        let _ = writeln!(out, "| {} {} | {place} | {} | {}", c.name, c.version, if c.trusted { "**trusted**" } else { "safe" }, md_row(&c.scan.total));
    }
    let _ = writeln!(out, "\n## Build-time code\n\nBuild scripts, proc-macros and the host crates they use: not compiled into the kernel, but they decide what is.\n");
    out.push_str("| what | crate | file | lines | unsafe sites | links native code | review |\n|---|---|---|--:|--:|---|---|\n");
    for b in &audit.build_time {
        let native: Vec<String> = b.links.iter().map(|l| format!("links = {l}")).chain(b.native.iter().map(|(_, t)| format!("`{t}`"))).collect();
        let review = match (&b.reviewed, b.kind) {
            (_, buildtime::BuildKind::HostDependency) => "-".to_string(),
            (Some(why), _) => why.clone(),
            (None, _) => "**not reviewed**".to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} {} | `{}` | {} | {} | {} | {review} |",
            build_kind_label(b.kind),
            b.package,
            b.version,
            b.file,
            b.stats.code_lines,
            b.unsafe_sites,
            native.join("<br>")
        );
    }
    for c in audit.crates.iter().filter(|c| c.trusted) {
        let _ = writeln!(out, "\n## {} {}\n\n{}\n", c.name, c.version, c.reason.as_deref().unwrap_or("**Not reviewed.**"));
        out.push_str("| file | lines | unsafe lines | blocks | SAFETY | unsafe fn | # Safety | impls | traits | extern/attr | asm |\n");
        out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for f in c.scan.files.iter().filter(|f| f.stats.has_unsafe()) {
            let _ = writeln!(out, "| `{}` | {}", f.path, md_row(&f.stats));
        }
    }
    let _ = writeln!(out, "\n## Macros that write unsafe code\n\nExported `macro_rules!` whose expansion holds unsafe code or unsafe attributes (`forbid(unsafe_code)` does not see it in the invoking crate).\n");
    if audit.unsafe_macros.is_empty() {
        out.push_str("None.\n");
    }
    for m in &audit.unsafe_macros {
        let uses: Vec<String> = m.uses.iter().map(|(p, f, l)| format!("{p} `{f}:{l}`")).collect();
        let _ = writeln!(
            out,
            "- `{}!` (`{}:{}`): writes {}; {}; invoked by crates that must be safe: {}",
            m.key,
            m.file,
            m.line,
            m.emits.join(", "),
            m.reviewed.as_deref().unwrap_or("**not reviewed**"),
            if uses.is_empty() { "none".to_string() } else { uses.join(", ") }
        );
    }
    if !audit.cells.is_empty() {
        let _ = writeln!(out, "\n## Cell capability surface\n\nThe kernel symbols each cell imports: all it can reach of the base.\n");
        for c in &audit.cells {
            match &c.error {
                Some(e) => {
                    let _ = writeln!(out, "- `{}`: **not read**: {e}", c.file);
                }
                None => {
                    let _ = writeln!(out, "### {}\n", c.file);
                    for (krate, names) in &c.imports {
                        let _ = writeln!(out, "- **{krate}** ({}): {}", names.len(), names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "));
                    }
                    out.push('\n');
                }
            }
        }
    }
    let _ = writeln!(out, "\n## Violations\n");
    if audit.violations.is_empty() {
        out.push_str("None.\n");
    }
    for (krate, f) in &audit.violations {
        let _ = writeln!(out, "- {krate}: `{}:{}`: {}", f.file, f.line, f.detail);
    }
    let _ = writeln!(out, "\n## Notes\n");
    for (krate, f) in &audit.notes {
        let _ = writeln!(out, "- {krate}: `{}:{}`: {}", f.file, f.line, f.detail);
    }
    out
}

/// A bar chart of the code compiled into the kernel and its cells, one bar
/// per crate (its lines), trusted crates in red, safe ones in green.
pub fn render_svg(audit: &Audit) -> String {
    let crates: Vec<&CrateEntry> = audit.crates.iter().filter(|c| c.in_kernel).collect();
    let max = crates.iter().map(|c| c.scan.total.code_lines).max().unwrap_or(1).max(1);
    let (label_w, bar_w, row_h) = (230.0, 520.0, 20.0);
    let height = 60.0 + row_h * crates.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n",
        label_w + bar_w + 90.0
    );
    let t = &audit.totals;
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"20\">Tessera TCB: {:.1}% of our code, {:.1}% with dependencies (red: trusted)</text>",
        t.own_share(),
        t.all_share()
    );
    for (i, c) in crates.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let w = bar_w * c.scan.total.code_lines as f64 / max as f64;
        let color = if c.trusted { "#c0392b" } else { "#27ae60" };
        let _ = writeln!(out, "<text x=\"8\" y=\"{}\">{}</text>", y + 13.0, c.name);
        let _ = writeln!(out, "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"/>", row_h - 4.0);
        let _ = writeln!(out, "<text x=\"{:.1}\" y=\"{}\">{}</text>", label_w + w + 6.0, y + 13.0, c.scan.total.code_lines);
    }
    out.push_str("</svg>\n");
    out
}
