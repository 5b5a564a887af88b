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
    fn a_cut_block_is_corrupt_not_a_panic() {
        let mut b = Vec::new();
        push(&mut b, b"hello").unwrap();
        assert!(rows(&b[..b.len() - 1]).is_err());
        assert!(rows(&b[..2]).is_err());
    }
}
