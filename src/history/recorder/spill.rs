//! Batches InfluxDB could not take yet, oldest first, bounded in bytes: in memory, or one
//! file per batch in a directory (kept across restarts and written in order when InfluxDB
//! returns). A batch that does not fit is handed back for the caller to count as dropped.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

/// A batch of line protocol and how many point values it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub points: u64,
}

enum Held {
    Memory(Batch),
    /// A file `{seq:020}-{points}.lp` and its size.
    File(PathBuf, u64, u64),
}

impl Held {
    fn bytes(&self) -> u64 {
        match self {
            Held::Memory(b) => b.body.len() as u64,
            Held::File(_, bytes, _) => *bytes,
        }
    }

    fn points(&self) -> u64 {
        match self {
            Held::Memory(b) => b.points,
            Held::File(_, _, points) => *points,
        }
    }
}

pub struct Spill {
    dir: Option<PathBuf>,
    held: VecDeque<Held>,
    bytes: u64,
    points: u64,
    max_bytes: u64,
    next_seq: u64,
}

impl Spill {
    /// `dir`: `None` holds batches in memory; a directory is created if missing and the
    /// batches a previous run left there are taken up, oldest first.
    pub fn open(dir: Option<&Path>, max_bytes: u64) -> io::Result<Spill> {
        let mut spill = Spill {
            dir: dir.map(Path::to_path_buf),
            held: VecDeque::new(),
            bytes: 0,
            points: 0,
            max_bytes,
            next_seq: 0,
        };
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)?;
            let mut found = Vec::new();
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let Some((seq, points)) = parse_name(&name) else {
                    continue;
                };
                found.push((seq, points, e.path(), e.metadata()?.len()));
            }
            found.sort_unstable_by_key(|f| f.0);
            for (seq, points, path, len) in found {
                spill.next_seq = seq + 1;
                spill.bytes += len;
                spill.points += points;
                spill.held.push_back(Held::File(path, len, points));
            }
        }
        Ok(spill)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Point values held.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// Keeps `batch` after the others; hands it back when it does not fit (or cannot be
    /// stored).
    pub fn push(&mut self, batch: Batch) -> Result<(), (Batch, String)> {
        let len = batch.body.len() as u64;
        if self.bytes + len > self.max_bytes {
            return Err((
                batch,
                format!(
                    "the buffer is full ({} of {} bytes)",
                    self.bytes, self.max_bytes
                ),
            ));
        }
        let held = match &self.dir {
            None => Held::Memory(batch),
            Some(dir) => {
                let name = format!("{:020}-{}.lp", self.next_seq, batch.points);
                let path = dir.join(&name);
                let tmp = dir.join(format!("{name}.tmp"));
                // Written whole, then renamed: a crash never leaves half a batch to replay.
                if let Err(e) =
                    std::fs::write(&tmp, &batch.body).and_then(|()| std::fs::rename(&tmp, &path))
                {
                    let _ = std::fs::remove_file(&tmp);
                    return Err((batch, format!("cannot write {}: {e}", path.display())));
                }
                Held::File(path, len, batch.points)
            }
        };
        self.next_seq += 1;
        self.bytes += len;
        self.points += held.points();
        self.held.push_back(held);
        Ok(())
    }

    /// The oldest batch (read from its file when on disk). A file that cannot be read is
    /// skipped and reported as lost: `Err(points)`.
    pub fn front(&mut self) -> Option<Result<Batch, u64>> {
        let read = match self.held.front()? {
            Held::Memory(b) => Ok(b.clone()),
            Held::File(path, _, points) => std::fs::read(path)
                .map(|body| Batch {
                    body,
                    points: *points,
                })
                .map_err(|_| *points),
        };
        if read.is_err() {
            self.pop();
        }
        Some(read)
    }

    /// Forgets the oldest batch (written).
    pub fn pop(&mut self) {
        if let Some(h) = self.held.pop_front() {
            self.bytes -= h.bytes();
            self.points -= h.points();
            if let Held::File(path, ..) = h {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".lp")?;
    let (seq, points) = stem.split_once('-')?;
    Some((seq.parse().ok()?, points.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(s: &str, points: u64) -> Batch {
        Batch {
            body: s.as_bytes().to_vec(),
            points,
        }
    }

    fn drain(s: &mut Spill) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(b) = s.front() {
            out.push(String::from_utf8(b.unwrap().body).unwrap());
            s.pop();
        }
        out
    }

    #[test]
    fn memory_keeps_order_and_bound() {
        let mut s = Spill::open(None, 10).unwrap();
        s.push(batch("aaaa", 1)).unwrap();
        s.push(batch("bbbb", 2)).unwrap();
        let (back, why) = s.push(batch("cccc", 3)).unwrap_err();
        assert_eq!(back.points, 3);
        assert!(why.contains("full"));
        assert_eq!((s.len(), s.bytes(), s.points()), (2, 8, 3));
        assert_eq!(drain(&mut s), ["aaaa", "bbbb"]);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn a_directory_survives_a_restart_in_order() {
        let dir = std::env::temp_dir().join(format!("voltage-spill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut s = Spill::open(Some(&dir), 1 << 20).unwrap();
            for i in 0..12 {
                s.push(batch(&format!("line {i}\n"), 1)).unwrap();
            }
            s.pop();
        }
        std::fs::write(dir.join("junk.txt"), "x").unwrap();
        let mut s = Spill::open(Some(&dir), 1 << 20).unwrap();
        assert_eq!((s.len(), s.points()), (11, 11));
        s.push(batch("line 12\n", 1)).unwrap();
        let got = drain(&mut s);
        let want: Vec<String> = (1..=12).map(|i| format!("line {i}\n")).collect();
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
