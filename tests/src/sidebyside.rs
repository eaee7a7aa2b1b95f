//! `make bench BENCH=linux`: Debian's Linux and Tessera booted in turn in
//! the same QEMU run the same benchmark script ([`run`]); parsing the
//! benchmark lines of a boot, medians, ratios, the table, JSON and SVG are
//! pure and tested on the host.

use crate::{Boot, Machine, MachineOptions, kernel_path};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One boot's figures: (benchmark name, ns per operation), in order.
pub type Figures = Vec<(String, f64)>;

/// The name of the pure user-mode benchmark the others are normalised by.
pub const SPIN: &str = "user_spin_1m";
/// QEMU start to the first line of the benchmark script (added by the
/// harness, in ns like the others).
pub const BOOT: &str = "boot_to_init";

/// Parses `bench NAME: N ns/op (...)` lines. A benchmark that says
/// `FAILED` is returned in the second list.
pub fn parse(text: &str) -> (Figures, Vec<String>) {
    let mut figures = Vec::new();
    let mut failed = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("bench ") else { continue };
        let Some((name, value)) = rest.split_once(": ") else { continue };
        if value.starts_with("FAILED") {
            failed.push(format!("{name}: {value}"));
            continue;
        }
        let mut words = value.split_whitespace();
        if let (Some(Ok(ns)), Some("ns/op")) = (words.next().map(str::parse::<f64>), words.next()) {
            figures.push((name.to_string(), ns));
        }
    }
    (figures, failed)
}

/// The median of `values` (the upper one of an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One metric over all boots of both systems.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub linux: Vec<f64>,
    pub tessera: Vec<f64>,
    /// Each boot's value over that boot's spin figure.
    pub linux_normalised: Vec<f64>,
    pub tessera_normalised: Vec<f64>,
}

impl Row {
    /// Tessera's median over Linux's (below 1: Tessera is faster).
    pub fn ratio(&self) -> f64 {
        median(&self.tessera) / median(&self.linux)
    }

    /// The same with each boot's figures divided by its spin figure.
    pub fn normalised_ratio(&self) -> f64 {
        median(&self.tessera_normalised) / median(&self.linux_normalised)
    }
}

fn value_of(boot: &Figures, name: &str) -> Option<f64> {
    boot.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
}

/// The rows for every metric either side reported, in the order first seen.
pub fn rows(linux: &[Figures], tessera: &[Figures]) -> Vec<Row> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in linux.iter().chain(tessera).flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let series = |boots: &[Figures], name: &str, normalise: bool| -> Vec<f64> {
        boots
            .iter()
            .filter_map(|boot| {
                let value = value_of(boot, name)?;
                if !normalise {
                    return Some(value);
                }
                value_of(boot, SPIN).filter(|s| *s > 0.0).map(|spin| value / spin)
            })
            .collect()
    };
    names
        .into_iter()
        .map(|name| Row {
            linux: series(linux, &name, false),
            tessera: series(tessera, &name, false),
            linux_normalised: series(linux, &name, true),
            tessera_normalised: series(tessera, &name, true),
            name,
        })
        .collect()
}

/// A duration in ns as people read it.
pub fn human(ns: f64) -> String {
    if ns.is_nan() {
        "-".into()
    } else if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() { "-".into() } else { format!("{}–{}", human(min), human(max)) }
}

/// The table `make bench` prints.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<24} {:>11} {:>11} {:>7} {:>10}  {:<21} {:<21}",
        "metric", "Linux", "Tessera", "ratio", "norm.", "Linux spread", "Tessera spread"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "  {:<24} {:>11} {:>11} {:>7.2} {:>10.2}  {:<21} {:<21}",
            row.name,
            human(median(&row.linux)),
            human(median(&row.tessera)),
            row.ratio(),
            row.normalised_ratio(),
            spread(&row.linux),
            spread(&row.tessera)
        );
    }
    out
}

fn json_list(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| if v.is_finite() { format!("{v}") } else { "null".into() }).collect();
    format!("[{}]", items.join(", "))
}

fn json_number(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { "null".into() }
}

/// The rows as JSON (`header` names the configuration).
pub fn json(header: &str, rows: &[Row]) -> String {
    let mut out = format!("{{\n  \"configuration\": \"{}\",\n  \"metrics\": [\n", header.replace('\\', "\\\\").replace('"', "\\\""));
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"name\": \"{}\", \"unit\": \"ns\", \"linux\": {}, \"tessera\": {}, \"linux_median\": {}, \"tessera_median\": {}, \"ratio\": {}, \"normalised_ratio\": {}}}{}",
            row.name,
            json_list(&row.linux),
            json_list(&row.tessera),
            json_number(median(&row.linux)),
            json_number(median(&row.tessera)),
            json_number(row.ratio()),
            json_number(row.normalised_ratio()),
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    out.push_str("  ]\n}\n");
    out
}

/// A bar chart of the ratios (log scale, 1 = Linux; bars right of the
/// line: Tessera slower).
pub fn svg(title: &str, rows: &[Row]) -> String {
    let (label_w, chart_w, bar_h, top) = (200.0, 500.0, 18.0, 40.0);
    let height = top + bar_h * rows.len() as f64 + 40.0;
    // log10 ratio from -1.5 (31x faster) to 1.5 (31x slower).
    let x = |ratio: f64| label_w + chart_w / 2.0 + ratio.log10().clamp(-1.5, 1.5) / 1.5 * chart_w / 2.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        label_w + chart_w + 80.0
    );
    let _ = writeln!(out, "<text x=\"10\" y=\"20\" font-size=\"14\">{}</text>", title.replace('&', "&amp;").replace('<', "&lt;"));
    for (i, row) in rows.iter().enumerate() {
        let y = top + bar_h * i as f64;
        let ratio = row.ratio();
        let _ = writeln!(out, "<text x=\"10\" y=\"{}\">{}</text>", y + 13.0, row.name);
        if ratio.is_finite() && ratio > 0.0 {
            let (a, b) = (x(1.0), x(ratio));
            let colour = if ratio <= 1.0 { "#3a7" } else { "#c54" };
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\">{ratio:.2}</text>",
                a.min(b),
                y + 3.0,
                (b - a).abs().max(1.0),
                bar_h - 6.0,
                a.max(b) + 4.0,
                y + 13.0
            );
        }
    }
    let _ = writeln!(out, "<line x1=\"{0}\" y1=\"{top}\" x2=\"{0}\" y2=\"{1}\" stroke=\"black\"/>", x(1.0), height - 40.0);
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\">Tessera/Linux, log scale: left faster, right slower</text>",
        label_w,
        height - 15.0
    );
    out.push_str("</svg>\n");
    out
}

/// What [`run`] measured.
pub struct Report {
    /// The configuration, in words.
    pub header: String,
    pub rows: Vec<Row>,
    /// Benchmarks that said FAILED, with the system's name.
    pub failures: Vec<String>,
    /// The JSON and SVG files written.
    pub written: Vec<PathBuf>,
}

impl Report {
    /// For `BENCH_QUICK=1` (make test): no benchmark failed, each was
    /// reported by both systems, and there are as many as the script runs.
    pub fn check(&self) -> Result<(), String> {
        if !self.failures.is_empty() {
            return Err(format!("benchmarks failed: {:?}", self.failures));
        }
        let missing: Vec<&str> = self.rows.iter().filter(|r| r.linux.is_empty() || r.tessera.is_empty()).map(|r| r.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(format!("reported by one system only: {missing:?}"));
        }
        if self.rows.len() < 20 {
            return Err(format!("only {} metrics parsed", self.rows.len()));
        }
        Ok(())
    }
}

/// Boots of each system (`BENCH_RUNS`, default 5; one when `quick`).
fn runs(quick: bool) -> usize {
    if quick {
        return 1;
    }
    std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(5)
}

/// One boot: QEMU start to the script's first line (as [`BOOT`]), then
/// every `bench` line until the script is done.
fn bench_boot(label: &str, boot: Boot) -> (Figures, Vec<String>) {
    let options = MachineOptions { boot, memory: "512M".into(), cpus: 1, wall_clock: Duration::from_secs(1200), ..MachineOptions::kernel("") };
    let started = Instant::now();
    let mut m = Machine::start(label, &options);
    m.expect("bench-run: started", Duration::from_secs(300));
    let boot_ns = started.elapsed().as_secs_f64() * 1e9;
    let text = m.expect("bench-run: done", Duration::from_secs(1100));
    let _ = m.wait_exit(Duration::from_secs(60));
    let (mut figures, failed) = parse(&text);
    figures.insert(0, (BOOT.to_string(), boot_ns));
    (figures, failed)
}

/// Boots Debian's Linux and Tessera in turn (Linux first; [`runs`] each)
/// in the same QEMU (q35, TCG, `-cpu max`, 512 MiB, one processor): both
/// run userspace/bench/bench-run.sh with the same busybox and benchmark
/// programs (Linux from an archive of the same files,
/// userspace/bench/linux-bench-initrd.sh; its kernel uncompressed, through
/// PVH). Fetches the kernel with tests/ltp/fetch-linux.sh into
/// `LINUX_REF` (default /work/linux-ref) when it is missing. Writes JSON
/// and an SVG chart to build/bench-results (not committed).
pub fn run(quick: bool) -> Report {
    let repo = crate::workspace();
    let linux_dir = PathBuf::from(std::env::var("LINUX_REF").unwrap_or_else(|_| "/work/linux-ref".into()));
    if !linux_dir.join("vmlinuz").exists() {
        let fetched = std::process::Command::new("sh").arg(repo.join("tests/ltp/fetch-linux.sh")).arg(&linux_dir).status();
        assert!(
            matches!(fetched, Ok(s) if s.success()),
            "could not fetch Debian's kernel into {} (tests/ltp/fetch-linux.sh)",
            linux_dir.display()
        );
    }
    let archive = std::env::temp_dir().join(format!("tessera-linux-bench-{}.cpio", std::process::id()));
    let made = std::process::Command::new("sh").arg(repo.join("userspace/bench/linux-bench-initrd.sh")).arg(&archive).arg(&linux_dir).status();
    assert!(matches!(made, Ok(s) if s.success()), "userspace/bench/linux-bench-initrd.sh failed");
    let release = std::fs::read_to_string(linux_dir.join("release")).unwrap_or_default();
    let runs = runs(quick);
    let (mut linux, mut tessera, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let boot = Boot::Kernel { kernel: linux_dir.join("vmlinux"), initrd: Some(archive.clone()), cmdline: "console=ttyS0 quiet".into() };
        let (figures, failed) = bench_boot(&format!("bench-linux-{run}"), boot);
        failures.extend(failed.into_iter().map(|f| format!("Linux: {f}")));
        linux.push(figures);
        let boot = Boot::Kernel { kernel: kernel_path(), initrd: None, cmdline: "tessera.quiet tessera.exec=/opt/tessera/bench/bench-run.sh".into() };
        let (figures, failed) = bench_boot(&format!("bench-tessera-{run}"), boot);
        failures.extend(failed.into_iter().map(|f| format!("Tessera: {f}")));
        tessera.push(figures);
    }
    let _ = std::fs::remove_file(&archive);
    let rows = rows(&linux, &tessera);
    let header = format!(
        "QEMU -machine q35 -cpu max -accel tcg -m 512M -smp 1; Linux {} (PVH, uncompressed) vs Tessera; {runs} boot(s) each, interleaved; host {} cores",
        release.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let results = repo.join("build/bench-results");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut written = Vec::new();
    if std::fs::create_dir_all(&results).is_ok() {
        let json_path = results.join(format!("linux-{stamp}.json"));
        let svg_path = results.join(format!("linux-{stamp}.svg"));
        if std::fs::write(&json_path, json(&header, &rows)).is_ok() {
            written.push(json_path);
        }
        if std::fs::write(&svg_path, svg(&format!("Tessera / Linux {} (medians of {runs})", release.trim()), &rows)).is_ok() {
            written.push(svg_path);
        }
    }
    Report { header, rows, failures, written }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT_TEXT: &str = "noise\nbench user_spin_1m: 2000 ns/op (20 iterations)\r\nbench null_syscall: 500 ns/op (20000 iterations)\nbench stat: FAILED (stat)\nbench broken: lots\nbench: done\n";

    #[test]
    fn parses_figures_and_failures() {
        let (figures, failed) = parse(BOOT_TEXT);
        assert_eq!(figures, vec![("user_spin_1m".to_string(), 2000.0), ("null_syscall".to_string(), 500.0)]);
        assert_eq!(failed, vec!["stat: FAILED (stat)".to_string()]);
    }

    #[test]
    fn medians_ignore_missing_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 3.0);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    #[test]
    fn rows_pair_the_systems_and_normalise_by_each_boots_spin() {
        let boot = |spin: f64, call: f64| vec![(SPIN.to_string(), spin), ("null_syscall".to_string(), call)];
        let linux = vec![boot(1000.0, 500.0), boot(2000.0, 1000.0)];
        let tessera = vec![boot(1000.0, 1500.0), boot(1000.0, 1500.0), vec![(SPIN.to_string(), 1000.0), ("tessera_only".to_string(), 7.0)]];
        let rows = rows(&linux, &tessera);
        assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), [SPIN, "null_syscall", "tessera_only"]);
        let call = &rows[1];
        assert_eq!(call.ratio(), 1500.0 / 1000.0);
        // Linux's boots both give 0.5 spins per call; Tessera's 1.5.
        assert_eq!(call.normalised_ratio(), 3.0);
        assert!(rows[2].ratio().is_nan(), "no Linux figure: no ratio");
        let text = table(&rows);
        assert!(text.contains("null_syscall") && text.contains("1.50") && text.contains("3.00"), "{text}");
    }

    #[test]
    fn json_and_svg_name_every_metric() {
        let rows = rows(&[vec![("a".into(), 10.0)]], &[vec![("a".into(), 5.0)], vec![("b".into(), 1.0)]]);
        let json = json("q35 \"tcg\"", &rows);
        assert!(json.contains("\"name\": \"a\"") && json.contains("\"ratio\": 0.5") && json.contains("\"ratio\": null"), "{json}");
        assert!(json.contains("q35 \\\"tcg\\\""), "{json}");
        let svg = svg("t < u", &rows);
        assert!(svg.starts_with("<svg") && svg.contains(">a<") && svg.contains(">b<") && svg.contains("t &lt; u"), "{svg}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(950.0), "950 ns");
        assert_eq!(human(1500.0), "1.5 µs");
        assert_eq!(human(2_500_000.0), "2.50 ms");
        assert_eq!(human(3_000_000_000.0), "3.00 s");
        assert_eq!(human(f64::NAN), "-");
    }
}
