#!/bin/sh
# Cross-checks tessera-audit against cargo-geiger on real third-party
# crates as the kernel builds them (same versions and features), printing
# both tools' counts side by side. Not part of `make test` (installing
# cargo-geiger compiles ~300 crates); run with `make audit-crosscheck`.
# The differences are explained in docs/architecture.md ("Audit").
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
geiger_root=$root/build/tools
PATH=$geiger_root/bin:$PATH
if ! command -v cargo-geiger >/dev/null 2>&1; then
    echo "installing cargo-geiger 0.13.0 (the last release for rustc 1.95) into $geiger_root ..."
    cargo install cargo-geiger --version 0.13.0 --locked --root "$geiger_root" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "geiger-probe"
version = "0.0.0"
edition = "2021"

[dependencies]
spin = { version = "=0.9.9", default-features = false, features = ["spin_mutex", "once"] }
talc = { version = "=4.4.3", default-features = false, features = ["counters"] }
log = { version = "=0.4.35", default-features = false }

[workspace]
TOML
echo '#![no_std]' > "$work/src/lib.rs"
(cd "$work" && cargo geiger --output-format Json >"$work/geiger.json" 2>"$work/geiger.log") \
    || { cat "$work/geiger.log"; exit 1; }
"$root/target/release/tessera-audit" --json "$root" >"$work/audit.json" || true
python3 - "$work/geiger.json" "$work/audit.json" <<'PY'
import json, sys
geiger = json.load(open(sys.argv[1]))
audit = json.load(open(sys.argv[2]))
ours = {c["name"]: c["scan"]["total"] for c in audit["crates"]}
print(f"{'crate':<8} {'tool':<15} {'unsafe fn':>9} {'blocks':>7} {'impls':>6} {'traits':>7} {'methods':>8}")
for pkg in geiger["packages"]:
    name = pkg["package"]["id"]["name"]
    if name not in ("spin", "talc", "log"):
        continue
    used, unused = pkg["unsafety"]["used"], pkg["unsafety"]["unused"]
    for label, c in (("geiger used", used), ("geiger unused", unused)):
        print(f"{name:<8} {label:<15} {c['functions']['unsafe_']:>9} {c['exprs']['unsafe_']:>7} "
              f"{c['item_impls']['unsafe_']:>6} {c['item_traits']['unsafe_']:>7} {c['methods']['unsafe_']:>8}")
    t = ours.get(name, {})
    print(f"{name:<8} {'tessera-audit':<15} {t.get('unsafe_fns', '-'):>9} {t.get('unsafe_blocks', '-'):>7} "
          f"{t.get('unsafe_impls', '-'):>6} {t.get('unsafe_traits', '-'):>7} {'(in fn)':>8}")
PY
