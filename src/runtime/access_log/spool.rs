//! The node's local spool: where batches go while their store (Redis, or MySQL without
//! Redis) cannot take them, bounded in bytes for the whole directory. Each worker appends
//! to `spool-<pid>.log`; replaying, a worker first renames a file to
//! `replay-<its pid>-<n>.log` (its own spool, or any file of a process that is gone), so
//! two workers never replay the same file, and a replay cut short by a crash is taken up
//! again by another worker (records sent twice are skipped by request id when ingested).
//! Blocking file IO: called through `spawn_blocking`, never on nginx's thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Spool {
    dir: PathBuf,
    max: u64,
    pid: u32,
    seq: AtomicU64,
}

/// A claimed file being replayed, and how far.
pub struct Claimed {
    pub path: PathBuf,
    pub offset: u64,
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in `spool-<pid>.log` or `replay-<pid>-<n>.log`.
fn owner(name: &str) -> Option<(bool, u32)> {
    let stem = name.strip_suffix(".log")?;
    if let Some(pid) = stem.strip_prefix("spool-") {
        return Some((false, pid.parse().ok()?));
    }
    let rest = stem.strip_prefix("replay-")?;
    let (pid, _) = rest.split_once('-')?;
    Some((true, pid.parse().ok()?))
}

impl Spool {
    pub fn new(dir: PathBuf, max: u64) -> Spool {
        Spool {
            dir,
            max,
            pid: std::process::id(),
            seq: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn prepare(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)
    }

    fn files(&self) -> Vec<(String, u64)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            owner(&name)?;
            Some((name, e.metadata().ok()?.len()))
        })
        .collect()
    }

    /// Bytes waiting in the directory.
    pub fn size(&self) -> u64 {
        self.files().iter().map(|(_, n)| n).sum()
    }

    /// Appends record lines; `Ok(false)` when the directory would exceed its bound.
    pub fn append(&self, lines: &[u8]) -> io::Result<bool> {
        if self.size() + lines.len() as u64 > self.max {
            return Ok(false);
        }
        let path = self.dir.join(format!("spool-{}.log", self.pid));
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(lines)?;
        Ok(true)
    }

    /// A file to replay: one this worker claimed before, else its own spool, else one
    /// whose process is gone.
    pub fn claim(&self) -> Option<Claimed> {
        let files = self.files();
        let mine = files
            .iter()
            .find(|(name, _)| owner(name) == Some((true, self.pid)));
        if let Some((name, _)) = mine {
            return Some(Claimed {
                path: self.dir.join(name),
                offset: 0,
            });
        }
        let candidates = files.iter().filter(|(name, size)| {
            *size > 0 && owner(name).is_some_and(|(_, pid)| pid == self.pid || !alive(pid))
        });
        for (name, _) in candidates {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let to = self.dir.join(format!("replay-{}-{n}.log", self.pid));
            // another worker may have renamed it first: then it is theirs
            if fs::rename(self.dir.join(name), &to).is_ok() {
                return Some(Claimed {
                    path: to,
                    offset: 0,
                });
            }
        }
        // empty files of gone processes
        for (name, size) in &files {
            if *size == 0 && owner(name).is_some_and(|(_, pid)| !alive(pid)) {
                let _ = fs::remove_file(self.dir.join(name));
            }
        }
        None
    }
}

/// Up to `max_lines` lines from `c.offset` (whole lines only), and their count; `None` at
/// the end of the file.
pub fn read_chunk(c: &Claimed, max_lines: usize) -> io::Result<Option<(Vec<u8>, u32, u64)>> {
    let mut f = File::open(&c.path)?;
    f.seek(SeekFrom::Start(c.offset))?;
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut lines = 0;
    let mut offset = c.offset;
    while lines < max_lines {
        let before = out.len();
        let n = r.read_until(b'\n', &mut out)?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        if out.last() != Some(&b'\n') {
            // a line cut short (a crash while it was written): kept, and refused when read
            out.push(b'\n');
        }
        if out[before..].iter().all(u8::is_ascii_whitespace) {
            out.truncate(before);
            continue;
        }
        lines += 1;
    }
    Ok((lines > 0).then_some((out, lines as u32, offset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aigw-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn appends_are_bounded_and_replayed_in_chunks() {
        let d = dir("bounded");
        let s = Spool::new(d.clone(), 100);
        s.prepare().unwrap();
        assert!(s.append(b"one\ntwo\nthree\n").unwrap());
        assert!(s.append(&[b'x'; 90]).is_ok_and(|ok| !ok), "over the bound");
        assert_eq!(s.size(), 14);
        let mut c = s.claim().unwrap();
        assert!(c
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("replay-"));
        let (bytes, n, next) = read_chunk(&c, 2).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), n), (&b"one\ntwo\n"[..], 2));
        c.offset = next;
        let (bytes, n, next) = read_chunk(&c, 2).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), n), (&b"three\n"[..], 1));
        c.offset = next;
        assert!(read_chunk(&c, 2).unwrap().is_none());
        // claimed again (this worker's own replay file) until it is removed
        assert_eq!(s.claim().unwrap().path, c.path);
        fs::remove_file(&c.path).unwrap();
        assert!(s.claim().is_none());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn files_of_gone_processes_are_taken_over_and_cut_lines_kept_apart() {
        let d = dir("gone");
        fs::create_dir_all(&d).unwrap();
        // pid 4194304 is above Linux's largest: never alive
        fs::write(d.join("spool-4194304.log"), b"a\nb-cut").unwrap();
        fs::write(d.join("replay-1-0.log"), b"").unwrap();
        let s = Spool::new(d.clone(), 1 << 20);
        let c = s.claim().unwrap();
        let (bytes, n, _) = read_chunk(&c, 10).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), n), (&b"a\nb-cut\n"[..], 2));
        // the file of a live process (pid 1) is not taken
        fs::write(d.join("spool-1.log"), b"x\n").unwrap();
        fs::remove_file(&c.path).unwrap();
        assert!(s.claim().is_none());
        fs::remove_dir_all(d).unwrap();
    }
}
