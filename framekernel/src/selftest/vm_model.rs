//! Red team (nineteenth review, the page tables as the record of a
//! space): random sequences of safe `VmSpace` calls
//! checked against a model, and through the MMU (user copies into the
//! active space) after every step.

use crate::arch::usercopy::{copy_from_user, copy_to_user};
use crate::ensure;
use crate::mm::{Frame, Perms, VmError, VmSpace};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

const END: u64 = 1 << 47;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Page {
    tag: u64,
    perms: Perms,
    id: u64,
}

const CANDIDATES: &[u64] = &[
    0x0,
    0x1000,
    0x7000,
    0x8000,
    0x1f_f000,
    0x20_0000,
    0x20_1000,
    0x20_7000,
    0x20_8000,
    0x3f_f000,
    0x40_0000,
    0x4000_0000,
    0x7f_ffff_f000,
    0x80_0000_0000,
    END - 0x20_1000,
    END - 0x20_0000,
    END - 0x2000,
    END - 0x1000,
];
const BAD: &[u64] = &[END, 0xffff_8000_0000_0000, !0xfff, 0x1001, 0x0001_0000_0000_0000, u64::MAX, 0x8000_0000_0000_0000];

fn rand_perms(r: &mut Rng) -> Perms {
    [Perms::READ, Perms::READ_WRITE, Perms::READ_EXEC, Perms { write: true, exec: true }][r.below(4) as usize]
}

fn rand_bound(r: &mut Rng) -> u64 {
    match r.below(6) {
        0 => 0,
        1 => u64::MAX,
        2 => BAD[r.below(BAD.len() as u64) as usize],
        3 => CANDIDATES[r.below(CANDIDATES.len() as u64) as usize].wrapping_add(r.below(3) * 0x800),
        _ => CANDIDATES[r.below(CANDIDATES.len() as u64) as usize],
    }
}

struct World {
    spaces: [VmSpace; 2],
    model: [BTreeMap<u64, Page>; 2],
    held: Vec<(u64, Arc<Frame>)>, // id, frame
    next_id: u64,
    next_tag: u64,
}

impl World {
    fn refs(&self, id: u64) -> usize {
        self.model.iter().map(|m| m.values().filter(|p| p.id == id).count()).sum::<usize>()
            + self.held.iter().filter(|(i, _)| *i == id).count()
    }

    fn check(&mut self, s: usize, active_check: bool) -> Result<(), String> {
        let space = &self.spaces[s];
        let model = &self.model[s];
        ensure!(space.page_count() == model.len(), "space {s}: page_count {} model {}", space.page_count(), model.len());
        let listed: Vec<(u64, Perms)> = space.pages().collect();
        let wanted: Vec<(u64, Perms)> = model.iter().map(|(&v, p)| (v, p.perms)).collect();
        ensure!(listed == wanted, "space {s}: pages() {listed:x?} != model {wanted:x?}");
        for (&v, p) in model {
            let mut w = [0u8; 8];
            space.read_bytes(v, &mut w).map_err(|e| format!("read_bytes {v:#x}: {e}"))?;
            ensure!(u64::from_le_bytes(w) == p.tag, "space {s}: {v:#x} tag {:#x} want {:#x}", u64::from_le_bytes(w), p.tag);
            ensure!(space.perms(v + 0x123) == Some(p.perms), "space {s}: perms {v:#x}");
            let shared = self.refs(p.id) > 1;
            ensure!(space.is_shared(v) == shared, "space {s}: is_shared {v:#x} = {} want {shared}", space.is_shared(v));
        }
        if active_check {
            space.activate();
            for &v in CANDIDATES {
                let mut w = [0u8; 8];
                let r = copy_from_user(v, &mut w);
                match model.get(&v) {
                    Some(p) => {
                        ensure!(r.is_ok(), "space {s}: MMU read of mapped {v:#x} faulted");
                        ensure!(u64::from_le_bytes(w) == p.tag, "space {s}: MMU sees tag {:#x} at {v:#x}, want {:#x} (stale TLB / wrong PTE)", u64::from_le_bytes(w), p.tag);
                        let wr = copy_to_user(v, &w);
                        ensure!(wr.is_ok() == p.perms.write, "space {s}: MMU write to {v:#x} ok={} but perms {:?} (stale TLB?)", wr.is_ok(), p.perms);
                    }
                    None => ensure!(r.is_err(), "space {s}: MMU read of unmapped {v:#x} succeeded (stale TLB)"),
                }
            }
        }
        Ok(())
    }

    fn new_frame(&mut self) -> Result<(Frame, u64, u64), String> {
        let mut f = Frame::alloc().map_err(|e| format!("{e}"))?;
        self.next_tag += 1;
        let tag = 0x7a6_0000_0000 + self.next_tag;
        f.write_bytes(0, &tag.to_le_bytes()).map_err(|_| "fw")?;
        self.next_id += 1;
        Ok((f, tag, self.next_id))
    }

    fn step(&mut self, r: &mut Rng) -> Result<(), String> {
        let s = r.below(2) as usize;
        let o = 1 - s;
        let v = if r.below(10) == 0 { BAD[r.below(BAD.len() as u64) as usize] } else { CANDIDATES[r.below(CANDIDATES.len() as u64) as usize] };
        let good = v < END && v % 4096 == 0;
        match r.below(11) {
            0 | 1 => {
                let (f, tag, id) = self.new_frame()?;
                let perms = rand_perms(r);
                match self.spaces[s].map(v, f, perms) {
                    Ok(()) => {
                        ensure!(good && !self.model[s].contains_key(&v), "map {v:#x} accepted");
                        self.model[s].insert(v, Page { tag, perms, id });
                    }
                    Err((VmError::BadAddress(_), _)) => ensure!(!good, "map {v:#x} BadAddress"),
                    Err((VmError::AlreadyMapped(_), _)) => ensure!(self.model[s].contains_key(&v), "map {v:#x} AlreadyMapped"),
                    Err((e, _)) => return Err(format!("map {v:#x}: {e}")),
                }
            }
            2 => {
                // map_shared a held frame or the other space's frame.
                let perms = rand_perms(r);
                let pick = if r.below(2) == 0 && !self.held.is_empty() {
                    let (id, f) = &self.held[r.below(self.held.len() as u64) as usize];
                    Some((*id, f.clone()))
                } else {
                    let keys: Vec<u64> = self.model[o].keys().copied().collect();
                    if keys.is_empty() {
                        None
                    } else {
                        let k = keys[r.below(keys.len() as u64) as usize];
                        self.spaces[o].share(k).map(|f| (self.model[o][&k].id, f))
                    }
                };
                if let Some((id, f)) = pick {
                    let mut tag = [0u8; 8];
                    f.read_bytes(0, &mut tag).map_err(|_| "fr")?;
                    match self.spaces[s].map_shared(v, f, perms) {
                        Ok(()) => {
                            ensure!(good && !self.model[s].contains_key(&v), "map_shared {v:#x} accepted");
                            self.model[s].insert(v, Page { tag: u64::from_le_bytes(tag), perms, id });
                        }
                        Err((VmError::BadAddress(_), _)) => ensure!(!good, "map_shared {v:#x} BadAddress"),
                        Err((VmError::AlreadyMapped(_), _)) => ensure!(self.model[s].contains_key(&v), "map_shared AlreadyMapped"),
                        Err((e, _)) => return Err(format!("map_shared {v:#x}: {e}")),
                    }
                }
            }
            3 | 4 => match self.spaces[s].unmap(v) {
                Ok(f) => {
                    let p = self.model[s].remove(&v).ok_or("unmap of unmodelled page")?;
                    let mut tag = [0u8; 8];
                    f.read_bytes(0, &mut tag).map_err(|_| "fr")?;
                    ensure!(u64::from_le_bytes(tag) == p.tag, "unmap {v:#x} gave tag {:#x}", u64::from_le_bytes(tag));
                    if r.below(3) == 0 && self.held.len() < 8 {
                        self.held.push((p.id, f));
                    }
                }
                Err(VmError::BadAddress(_)) => ensure!(!good, "unmap {v:#x} BadAddress"),
                Err(VmError::NotMapped(_)) => ensure!(good && !self.model[s].contains_key(&v), "unmap NotMapped {v:#x}"),
                Err(e) => return Err(format!("unmap {v:#x}: {e}")),
            },
            5 => {
                let perms = rand_perms(r);
                match self.spaces[s].protect(v, perms) {
                    Ok(()) => {
                        let p = self.model[s].get_mut(&v).ok_or("protect of unmapped accepted")?;
                        p.perms = perms;
                    }
                    Err(VmError::BadAddress(_)) => ensure!(!good, "protect BadAddress"),
                    Err(VmError::NotMapped(_)) => ensure!(good && !self.model[s].contains_key(&v), "protect NotMapped"),
                    Err(e) => return Err(format!("protect: {e}")),
                }
            }
            6 => {
                let vv = v.wrapping_add(r.below(2) * 0x10);
                let v = vv & !0xfff;
                match self.spaces[s].make_private(vv) {
                    Ok(()) => {
                        let shared = self.model[s].get(&v).map(|p| self.refs(p.id) > 1).ok_or("make_private of unmapped ok")?;
                        if shared {
                            self.next_id += 1;
                            let id = self.next_id;
                            if let Some(p) = self.model[s].get_mut(&v) {
                                p.id = id;
                            }
                        }
                    }
                    Err(VmError::NotMapped(_)) => ensure!(!self.model[s].contains_key(&(vv & !0xfff)), "make_private NotMapped"),
                    Err(e) => return Err(format!("make_private: {e}")),
                }
            }
            7 => {
                let (a, b) = (rand_bound(r), rand_bound(r));
                let got: Vec<u64> = self.spaces[s].pages_in(a, b).map(|(p, _)| p).collect();
                let want: Vec<u64> = self.model[s].keys().copied().filter(|&p| p >= a && p < b).collect();
                ensure!(got == want, "pages_in({a:#x},{b:#x}) = {got:x?} want {want:x?}");
            }
            8 => {
                let (a, b) = (rand_bound(r), rand_bound(r));
                let cow = r.below(2) == 0;
                let (left, right) = self.spaces.split_at_mut(1);
                let (from, to) = if s == 0 { (&mut left[0], &mut right[0]) } else { (&mut right[0], &mut left[0]) };
                from.share_into(to, a, b, cow).map_err(|e| format!("share_into: {e}"))?;
                let pages: Vec<(u64, Page)> = self.model[s].iter().filter(|&(&p, _)| p >= a && p < b).map(|(&p, &pg)| (p, pg)).collect();
                for (p, pg) in pages {
                    let perms = if cow { Perms { write: false, ..pg.perms } } else { pg.perms };
                    self.model[o].entry(p).or_insert(Page { perms, ..pg });
                    if cow
                        && pg.perms.write
                        && let Some(x) = self.model[s].get_mut(&p)
                    {
                        x.perms.write = false;
                    }
                }
            }
            9 => {
                self.next_tag += 1;
                let tag = 0x5ee_0000_0000 + self.next_tag;
                let off = r.below(2) * 4092; // sometimes across into the next page
                let at = v.wrapping_add(off);
                let res = self.spaces[s].write_bytes(at, &tag.to_le_bytes());
                let mut touched = alloc::vec![at & !0xfff];
                match at.checked_add(7) {
                    Some(last) if last & !0xfff != at & !0xfff => touched.push(last & !0xfff),
                    Some(_) => {}
                    None => touched.push(u64::MAX), // overflow: never mapped
                }
                let all_mapped = touched.iter().all(|p| self.model[s].contains_key(p));
                ensure!(res.is_ok() == all_mapped, "write_bytes({at:#x}) = {res:?} but all_mapped {all_mapped}");
                for page in touched {
                    if let Some(p) = self.model[s].get(&page).copied() {
                        let mut w = [0u8; 8];
                        self.spaces[s].read_bytes(page, &mut w).map_err(|e| format!("rb: {e}"))?;
                        let nt = u64::from_le_bytes(w);
                        let now_shared = self.spaces[s].is_shared(page);
                        let id = if self.refs(p.id) > 1 && !now_shared {
                            self.next_id += 1;
                            self.next_id
                        } else {
                            p.id
                        };
                        if now_shared {
                            ensure!(nt == p.tag, "write_bytes changed a still-shared page {page:#x}");
                        }
                        self.model[s].insert(page, Page { tag: nt, id, ..p });
                    }
                }
                if res.is_ok() && at % 4096 == 0 {
                    ensure!(self.model[s].get(&at).map(|p| p.tag) == Some(tag), "write_bytes tag not written");
                }
            }
            _ => {
                if r.below(40) == 0 {
                    // Drop one space and start it again.
                    self.spaces[s] = VmSpace::new().map_err(|e| format!("{e}"))?;
                    self.model[s].clear();
                } else if !self.held.is_empty() {
                    let i = r.below(self.held.len() as u64) as usize;
                    self.held.swap_remove(i);
                }
                let mut b = [0u8; 8];
                let _ = self.spaces[s].read_bytes(u64::MAX - 3, &mut b);
                let _ = self.spaces[s].write_bytes(u64::MAX - 3, &b);
                let _ = self.spaces[s].read_bytes(END - 4, &mut b);
            }
        }
        Ok(())
    }
}

pub(super) fn address_space_model_fuzz() -> Result<(), String> {
    fn run(seed: u64, steps: usize) -> Result<(), String> {
        let mut r = Rng(seed);
        let mut w = World {
            spaces: [VmSpace::new().map_err(|e| format!("{e}"))?, VmSpace::new().map_err(|e| format!("{e}"))?],
            model: [BTreeMap::new(), BTreeMap::new()],
            held: Vec::new(),
            next_id: 0,
            next_tag: 0,
        };
        for i in 0..steps {
            w.step(&mut r).map_err(|e| format!("seed {seed:#x} step {i}: {e}"))?;
            let s = r.below(2) as usize;
            let hw = i % 4 == 0;
            w.check(s, hw).map_err(|e| format!("seed {seed:#x} step {i}: {e}"))?;
        }
        crate::mm::leave_user_space();
        Ok(())
    }
    // Once first: the kernel heap grows for the models and keeps it.
    run(0x1234_5678_9abc_def1, 2500)?;
    let before = crate::mm::frame_stats().free;
    for k in 0..20u64 {
        run(0x9e37_79b9_7f4a_7c15 ^ (k * 0x1000_0001), 2500)?;
    }
    let after = crate::mm::frame_stats().free;
    ensure!(after == before, "leaked {} frames", before as i64 - after as i64);
    Ok(())
}
