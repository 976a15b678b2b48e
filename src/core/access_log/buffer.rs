//! The worker's bounded buffer of record lines: a fixed set of byte buffers, one being
//! filled by the log phase (no lock, no allocation once warm) while the others are out
//! being shipped. A batch hands its buffer back when it is dropped, whatever became of it
//! (shipped, spooled, refused). When no buffer is free and the one being filled is full,
//! records are dropped and the caller counts them: memory never grows with load.

use std::sync::{Arc, Mutex};

use super::record::Record;

/// Bytes set aside per record of a batch (a record is about 200).
pub const BYTES_PER_RECORD: usize = 320;

#[derive(Default)]
struct FreeList(Mutex<Vec<Vec<u8>>>);

impl FreeList {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.pop()
    }

    fn give(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        if let Ok(mut l) = self.0.lock() {
            l.push(bytes);
        }
    }
}

/// Record lines handed over for shipping; its buffer goes back when it is dropped.
pub struct Batch {
    pub bytes: Vec<u8>,
    pub records: u32,
    free: Option<Arc<FreeList>>,
}

impl Batch {
    /// A batch of lines read from elsewhere (the spool): its memory is its own.
    pub fn detached(bytes: Vec<u8>, records: u32) -> Batch {
        Batch {
            bytes,
            records,
            free: None,
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            free.give(std::mem::take(&mut self.bytes));
        }
    }
}

/// What became of a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queued, and the batch being filled is full: take it.
    Ready,
    /// No room: not kept.
    Dropped,
}

pub struct Buffer {
    current: Option<Vec<u8>>,
    records: u32,
    batch: u32,
    bytes_max: usize,
    free: Arc<FreeList>,
}

impl Buffer {
    /// Room for `buffered` records at most, in batches of `batch` (at least two buffers:
    /// one filled while another ships).
    pub fn new(batch: u32, buffered: u32) -> Buffer {
        let batch = batch.max(1);
        let buffers = buffered.div_ceil(batch).max(2);
        let bytes_max = batch as usize * BYTES_PER_RECORD;
        let free = Arc::new(FreeList::default());
        for _ in 1..buffers {
            free.give(Vec::with_capacity(bytes_max));
        }
        Buffer {
            current: Some(Vec::with_capacity(bytes_max)),
            records: 0,
            batch,
            bytes_max,
            free,
        }
    }

    /// Records in the batch being filled.
    pub fn pending(&self) -> u32 {
        self.records
    }

    pub fn push(&mut self, r: &Record) -> Push {
        if self.current.is_none() {
            self.current = self.free.take();
        }
        let Some(bytes) = self.current.as_mut() else {
            return Push::Dropped;
        };
        if self.records >= self.batch {
            return Push::Dropped;
        }
        let before = bytes.len();
        r.write_line(bytes);
        if bytes.len() > self.bytes_max {
            // a batch of long lines: this one waits for the next batch's room
            bytes.truncate(before);
            return Push::Dropped;
        }
        self.records += 1;
        if self.records >= self.batch || bytes.len() + BYTES_PER_RECORD > self.bytes_max {
            // full by count, or too close to the byte bound for another long line
            return Push::Ready;
        }
        Push::Queued
    }

    /// The batch being filled, if it holds records; a free buffer takes its place when
    /// there is one (else the next push looks again).
    pub fn take(&mut self) -> Option<Batch> {
        if self.records == 0 {
            return None;
        }
        let bytes = self.current.take()?;
        let records = std::mem::take(&mut self.records);
        self.current = self.free.take();
        Some(Batch {
            bytes,
            records,
            free: Some(self.free.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{parse_lines, Record};
    use super::*;

    fn record(i: u32) -> Record<'static> {
        Record {
            request_id: format!("r{i}").into(),
            ts_ms: 1_796_000_000_000,
            node: "n".into(),
            ..Default::default()
        }
    }

    #[test]
    fn batches_fill_ship_and_come_back() {
        let mut b = Buffer::new(3, 6);
        assert_eq!(b.push(&record(1)), Push::Queued);
        assert_eq!(b.push(&record(2)), Push::Queued);
        assert_eq!(b.push(&record(3)), Push::Ready);
        // the full batch is not taken: nothing more fits in it
        assert_eq!(b.push(&record(4)), Push::Dropped);
        let first = b.take().unwrap();
        assert_eq!(first.records, 3);
        let (recs, bad) = parse_lines(&first.bytes);
        assert_eq!((recs.len(), bad), (3, 0));
        assert_eq!(recs[2].request_id, "r3");
        // two buffers in all: the second fills while the first is out
        for i in 5..=7 {
            assert_ne!(b.push(&record(i)), Push::Dropped);
        }
        let second = b.take().unwrap();
        assert_eq!(b.push(&record(8)), Push::Dropped, "both buffers are out");
        assert!(b.take().is_none());
        drop(first);
        assert_eq!(
            b.push(&record(9)),
            Push::Queued,
            "a shipped batch gave its buffer back"
        );
        let third = b.take().unwrap();
        assert_eq!(third.records, 1);
        assert_eq!(parse_lines(&third.bytes).0[0].request_id, "r9");
        drop(second);
        drop(third);
    }

    #[test]
    fn memory_stays_what_was_set_aside() {
        let mut b = Buffer::new(10, 20);
        let mut out = Vec::new();
        let mut dropped = 0;
        for i in 0..10_000 {
            match b.push(&record(i)) {
                Push::Dropped => dropped += 1,
                Push::Ready => {
                    if let Some(batch) = b.take() {
                        out.push(batch);
                    }
                }
                Push::Queued => {}
            }
            if out.len() > 3 {
                out.remove(0);
            }
        }
        assert!(dropped > 9_000);
        for batch in &out {
            assert!(batch.bytes.capacity() <= 10 * BYTES_PER_RECORD);
        }
    }

    #[test]
    fn long_lines_fill_a_batch_by_bytes() {
        let model = "m".repeat(128);
        let mut b = Buffer::new(1000, 1000);
        let mut n = 0;
        loop {
            let r = Record {
                model: model.as_str().into(),
                namespace: model[..64].into(),
                route: model[..64].into(),
                target: model[..64].into(),
                ..record(n)
            };
            n += 1;
            if b.push(&r) == Push::Ready {
                break;
            }
        }
        let batch = b.take().unwrap();
        assert!(
            batch.records > 100 && batch.records < 1000,
            "{}",
            batch.records
        );
        assert!(batch.bytes.len() <= 1000 * BYTES_PER_RECORD);
    }
}
