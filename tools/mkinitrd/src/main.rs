//! `tessera-mkinitrd OUT DEST=SRC...` writes a cpio newc archive: each SRC
//! file is stored at DEST; a SRC directory is stored recursively under DEST
//! (symbolic links kept as links). Parent directories are created.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use tessera_cpio::{S_IFDIR, S_IFLNK, S_IFREG, Writer};

struct Packer {
    writer: Writer,
    dirs: BTreeSet<String>,
}

impl Packer {
    fn parents(&mut self, dest: &str) {
        let mut path = String::new();
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if self.dirs.insert(path.clone()) {
                self.writer.add(&path, S_IFDIR | 0o755, 0, &[]);
            }
        }
    }

    fn add(&mut self, dest: &str, src: &Path) -> Result<(), String> {
        let dest = dest.trim_matches('/');
        let meta = std::fs::symlink_metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
        let perm = meta.permissions().mode() & 0o7777;
        let mtime = meta.mtime().clamp(0, i64::from(u32::MAX)) as u32;
        self.parents(dest);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(src).map_err(|e| format!("{}: {e}", src.display()))?;
            self.writer.add(dest, S_IFLNK | 0o777, mtime, target.to_string_lossy().as_bytes());
        } else if meta.is_dir() {
            if !dest.is_empty() && self.dirs.insert(dest.to_string()) {
                self.writer.add(dest, S_IFDIR | perm, mtime, &[]);
            }
            let mut children: Vec<_> = std::fs::read_dir(src)
                .map_err(|e| format!("{}: {e}", src.display()))?
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
            children.sort();
            for child in children {
                let name = child.to_string_lossy();
                if name == ".made" {
                    continue; // build stamp, not content
                }
                let child_dest = if dest.is_empty() { name.to_string() } else { format!("{dest}/{name}") };
                self.add(&child_dest, &src.join(&child))?;
            }
        } else {
            let data = std::fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
            self.writer.add(dest, S_IFREG | perm, mtime, &data);
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, specs)) = args.split_first() else {
        eprintln!("usage: tessera-mkinitrd OUT DEST=SRC...");
        return ExitCode::from(2);
    };
    let mut packer = Packer { writer: Writer::new(), dirs: BTreeSet::new() };
    for spec in specs {
        let Some((dest, src)) = spec.split_once('=') else {
            eprintln!("tessera-mkinitrd: '{spec}' is not DEST=SRC");
            return ExitCode::from(2);
        };
        if let Err(e) = packer.add(dest, Path::new(src)) {
            eprintln!("tessera-mkinitrd: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = std::fs::write(out, packer.writer.finish()) {
        eprintln!("tessera-mkinitrd: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
