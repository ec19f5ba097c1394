//! Version 2 page tables: per memory, the content hash of every non-zero
//! page, as runs of consecutive pages.
//!
//! ```text
//!  table = run*        run = first page u64 | count u32 | count × hash (16 B)
//!  runs strictly increasing, not touching (consecutive runs are merged),
//!  within the memory; the pages of all runs add up to the TOC's count
//! ```

use crate::pages::PageHash;

/// One memory's pages: (page number, hash), sorted by page, no repeats.
pub type PageTable = Vec<(u64, PageHash)>;

/// Bytes of a run's header.
const RUN_HEADER: usize = 12;

/// Encodes a sorted table.
pub fn encode_table(table: &[(u64, PageHash)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() * 16 + RUN_HEADER);
    let mut i = 0;
    while i < table.len() {
        let first = table[i].0;
        let mut j = i + 1;
        while j < table.len() && table[j].0 == table[j - 1].0 + 1 && j - i < u32::MAX as usize {
            j += 1;
        }
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&((j - i) as u32).to_le_bytes());
        for (_, h) in &table[i..j] {
            out.extend_from_slice(h);
        }
        i = j;
    }
    out
}

/// Decodes and checks a table of a memory of `pages` pages that must name
/// exactly `expected` pages. Returns what is wrong as a phrase.
pub fn decode_table(bytes: &[u8], pages: u64, expected: u64) -> Result<PageTable, String> {
    let mut table = Vec::with_capacity(expected.min(pages) as usize);
    let mut pos = 0usize;
    let mut next = 0u64;
    while pos < bytes.len() {
        if bytes.len() - pos < RUN_HEADER {
            return Err("its page table ends inside a run".into());
        }
        let first = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap());
        let count = u64::from(u32::from_le_bytes(
            bytes[pos + 8..pos + 12].try_into().unwrap(),
        ));
        pos += RUN_HEADER;
        if count == 0 {
            return Err(format!("its page table has an empty run at page {first}"));
        }
        if first < next || (first == next && next > 0) {
            return Err(format!(
                "its page table repeats, reorders or splits pages at page {first}"
            ));
        }
        match first.checked_add(count) {
            Some(end) if end <= pages => next = end,
            _ => {
                return Err(format!(
                    "its page table names pages beyond the memory's {pages}"
                ));
            }
        }
        if (bytes.len() - pos) as u64 / 16 < count {
            return Err("its page table ends inside a run".into());
        }
        for k in 0..count {
            let h: PageHash = bytes[pos..pos + 16].try_into().unwrap();
            table.push((first + k, h));
            pos += 16;
        }
    }
    if table.len() as u64 != expected {
        return Err(format!(
            "its page table names {} pages, its table of contents {expected}",
            table.len()
        ));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_and_refuse_bad_runs() {
        let t: PageTable = [0u64, 1, 2, 7, 9, 10]
            .iter()
            .map(|&p| (p, [p as u8; 16]))
            .collect();
        let b = encode_table(&t);
        assert_eq!(b.len(), 3 * RUN_HEADER + 6 * 16);
        assert_eq!(decode_table(&b, 11, 6).unwrap(), t);
        assert!(decode_table(&b, 10, 6).unwrap_err().contains("beyond"));
        assert!(decode_table(&b, 11, 5).unwrap_err().contains("names 6"));
        assert!(decode_table(&b[..b.len() - 1], 11, 6).is_err());
        // Two runs that touch must have been one.
        let mut split = encode_table(&t[..1]);
        split.extend(encode_table(&t[1..3]));
        assert!(decode_table(&split, 11, 3).unwrap_err().contains("splits"));
        assert_eq!(decode_table(&[], 5, 0).unwrap(), vec![]);
    }
}
