//! The spend log's storage form: rows with consecutive sequence numbers packed into one
//! redb value (a block), keyed by the first row's sequence. One insert per block instead
//! of one per row halves redb's work per row (B-tree inserts and the pages a commit
//! writes; bench/RESULTS.md), which is CPU the writer takes from the request core.
//!
//! A block is the rows one after the other, each as a little-endian `u32` length and its
//! bytes.

use super::{Error, Result};

/// Rows per block as written. Small enough that a reader paging through recent rows
/// decodes little it does not return, and that one insert is a short piece of work.
pub const BLOCK_ROWS: usize = 64;

/// Appends `row` to `block`.
pub fn push(block: &mut Vec<u8>, row: &[u8]) -> Result<()> {
    let len = u32::try_from(row.len()).map_err(|_| corrupt("a spend row over 4 GiB"))?;
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(row);
    Ok(())
}

/// The rows of `block`, in order.
pub fn rows(block: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("a spend block ends inside a row length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err(corrupt("a spend block ends inside a row"));
        }
        let (row, tail) = tail.split_at(len);
        out.push(row);
        rest = tail;
    }
    Ok(out)
}

/// Rows encoded straight into block form as they are recorded: one buffer, a new block
/// every `BLOCK_ROWS` rows. The spend writer then inserts finished blocks; it neither
/// copies each row into a block nor frees the rows at commit time (freeing 2,000
/// recorded rows, a dozen allocations each made on another thread, was 0.4–0.8 ms of
/// the writer's work in one piece: bench/RESULTS.md, fifth session).
#[derive(Debug, Default)]
pub struct PackedRows {
    bytes: Vec<u8>,
    /// Where each block begins in `bytes`.
    starts: Vec<usize>,
    rows: usize,
}

impl PackedRows {
    /// Room for `rows` rows of about `row_bytes` each, so filling it does not reallocate.
    pub fn with_capacity(rows: usize, row_bytes: usize) -> PackedRows {
        PackedRows {
            bytes: Vec::with_capacity(rows * (row_bytes + 4)),
            starts: Vec::with_capacity(rows.div_ceil(BLOCK_ROWS)),
            rows: 0,
        }
    }

    /// Appends the row `encode` writes. A row over 4 GiB is refused and leaves nothing.
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        encode(&mut self.bytes);
        let written = self.bytes.len() - at - 4;
        let (Ok(len), Some(slot)) = (u32::try_from(written), self.bytes.get_mut(at..at + 4)) else {
            self.bytes.truncate(at);
            return Err(corrupt("a spend row over 4 GiB"));
        };
        slot.copy_from_slice(&len.to_le_bytes());
        if self.rows % BLOCK_ROWS == 0 {
            self.starts.push(at);
        }
        self.rows += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    /// Bytes allocated for rows (grows past `with_capacity` when rows are larger).
    pub fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The blocks in order: each holds `BLOCK_ROWS` rows but the last, which may hold
    /// fewer.
    pub fn blocks(&self) -> impl Iterator<Item = &[u8]> {
        let ends = self
            .starts
            .iter()
            .skip(1)
            .copied()
            .chain([self.bytes.len()]);
        self.starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| self.bytes.get(start..end).unwrap_or_default())
    }

    /// Empties it, keeping the memory for the next rows.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.starts.clear();
        self.rows = 0;
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(<serde_json::Error as serde::de::Error>::custom(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_including_empty_ones() {
        let mut b = Vec::new();
        for r in [&b"abc"[..], b"", b"\x00\xff"] {
            push(&mut b, r).unwrap();
        }
        assert_eq!(rows(&b).unwrap(), vec![&b"abc"[..], b"", b"\x00\xff"]);
        assert!(rows(&[]).unwrap().is_empty());
    }

    #[test]
    fn packed_rows_start_a_block_every_block_rows_and_read_back_in_order() {
        let mut p = PackedRows::with_capacity(4, 8);
        let want: Vec<Vec<u8>> = (0..2 * BLOCK_ROWS + 3)
            .map(|i| format!("row-{i}").into_bytes())
            .collect();
        for r in &want {
            p.push_with(|b| b.extend_from_slice(r)).unwrap();
        }
        assert_eq!(p.len(), want.len());
        let blocks: Vec<&[u8]> = p.blocks().collect();
        let sizes: Vec<usize> = blocks.iter().map(|b| rows(b).unwrap().len()).collect();
        assert_eq!(sizes, vec![BLOCK_ROWS, BLOCK_ROWS, 3]);
        let got: Vec<&[u8]> = blocks.iter().flat_map(|b| rows(b).unwrap()).collect();
        assert_eq!(got, want.iter().map(Vec::as_slice).collect::<Vec<_>>());
        p.clear();
        assert!(p.is_empty() && p.blocks().next().is_none());
        p.push_with(|b| b.push(7)).unwrap();
        assert_eq!(p.blocks().collect::<Vec<_>>(), vec![&[1, 0, 0, 0, 7][..]]);
    }

    #[test]
    fn a_cut_block_is_corrupt_not_a_panic() {
        let mut b = Vec::new();
        push(&mut b, b"hello").unwrap();
        assert!(rows(&b[..b.len() - 1]).is_err());
        assert!(rows(&b[..2]).is_err());
    }
}
