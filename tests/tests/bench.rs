//! `make bench BENCH=linux` in its quick form (one boot of Debian's Linux
//! and one of Tessera in the same QEMU): it runs, and every benchmark of
//! the script is reported by both systems. Asserts nothing about speed.

#[test]
fn the_side_by_side_benchmark_runs_on_linux_and_tessera() {
    let report = tessera_tests::sidebyside::run(true);
    let table = tessera_tests::sidebyside::table(&report.rows);
    report.check().unwrap_or_else(|why| panic!("{why}\n{table}"));
}
