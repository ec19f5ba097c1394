//! Method bytecode, and the same code decoded once at load time.
//!
//! ```text
//!   bytes: [op a a a a op op b ...]          the class file's code, as is
//!   insns: [Insn; bytes.len()]               one per byte offset
//!            └─ key (dispatch), len, window (budget charged on entering
//!               here), operand (native-endian, jump targets absolute)
//! ```
//!
//! The dispatch loop reads `insns[ip]` instead of decoding big-endian
//! operands with a bounds check per byte. Every byte offset has its entry,
//! decoded as if an instruction started there, so a jump into the middle of
//! an instruction behaves exactly as it does on the bytes. Only the opcodes
//! the loop runs itself get their operands decoded; the others keep just
//! their opcode and are run from `bytes` by the cold path. An instruction
//! whose operands do not decode (truncated, a negative jump target, a
//! negative argument count) becomes a fault entry carrying the exact error,
//! and the IP at which decoding the bytes would have stopped.

use crate::interp::Fault;
use crate::opcode::op;

/// One pre-decoded instruction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Insn {
    /// The opcode, or [`op::NOP`] with `len == 0` for a fault entry.
    pub key: u8,
    /// Bytes the instruction takes (0 for a fault entry).
    pub len: u8,
    /// `call_8bit`'s method ordinal.
    pub small: u8,
    /// The instructions the loop runs from here up to and including the
    /// next one that jumps or leaves the loop (1 for that one itself): what
    /// entering here charges to the budget. See [`Code::window`].
    pub window: u8,
    /// The operand: a value (an `i32` as bits), an absolute jump target, or
    /// for a fault entry an index into [`Code::faults`].
    pub arg: u32,
}

/// A method's code: its bytes and their pre-decoded form.
#[derive(Debug, Clone, Default)]
pub struct Code {
    bytes: Box<[u8]>,
    insns: Box<[Insn]>,
    faults: Box<[(Fault, usize)]>,
    /// Some window is longer than [`Insn::window`] can say (255).
    long_windows: bool,
}

impl Code {
    /// Decodes `bytes` at every offset.
    pub fn new(bytes: &[u8]) -> Self {
        let mut faults = Vec::new();
        let mut insns = (0..bytes.len())
            .map(|at| match decode(bytes, at) {
                Ok(insn) => insn,
                Err(fault) => {
                    faults.push(fault);
                    Insn {
                        key: op::NOP,
                        len: 0,
                        small: 0,
                        window: 0,
                        arg: (faults.len() - 1) as u32,
                    }
                }
            })
            .collect::<Vec<_>>();
        let long_windows = measure_windows(&mut insns);
        Self {
            bytes: bytes.into(),
            insns: insns.into(),
            faults: faults.into(),
            long_windows,
        }
    }

    /// What entering the code at `ip` charges: the instructions up to and
    /// including the next jump or exit (an IP outside the code is one
    /// instruction: the fault).
    #[inline(always)]
    pub(crate) fn window(&self, ip: usize) -> u64 {
        self.insns.get(ip).map_or(1, |i| u64::from(i.window))
    }

    /// Some window is longer than 255 instructions: the loop must count
    /// this code's instructions one by one.
    pub(crate) fn long_windows(&self) -> bool {
        self.long_windows
    }

    /// The bytecode, as loaded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The pre-decoded instructions, one per byte offset.
    pub(crate) fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The fault of a fault entry, and the IP at which it stops.
    pub(crate) fn fault(&self, index: u32) -> (Fault, usize) {
        self.faults
            .get(index as usize)
            .copied()
            .unwrap_or((Fault::Underflow, 0))
    }
}

/// Whether the dispatch loop's arm for this entry always jumps (charging
/// the window it jumps to) or leaves the loop: a window ends there.
/// Opcodes left out only make windows longer; an exit in the middle of a
/// window gives back what it did not run.
fn ends_window(insn: &Insn) -> bool {
    insn.len == 0
        || matches!(
            insn.key,
            op::JMP
                | op::JZ
                | op::DJNZ
                | op::RET
                | op::SYS
                | op::CALL_8BIT
                | op::SHORT_CALL_0..=op::SHORT_CALL_3
                | op::CALL_00..=op::CALL_1F
        )
}

/// Fills in every entry's [`Insn::window`], from the end backwards: an
/// entry that ends a window is 1, any other is 1 more than the entry it
/// falls through to (an IP past the end counts 1). Returns whether some
/// window did not fit a `u8` (those entries then say 255).
fn measure_windows(insns: &mut [Insn]) -> bool {
    let mut long = false;
    let mut counts = vec![0u32; insns.len()];
    for at in (0..insns.len()).rev() {
        let insn = insns[at];
        let count = if ends_window(&insn) {
            1
        } else {
            1 + counts.get(at + usize::from(insn.len)).copied().unwrap_or(1)
        };
        counts[at] = count;
        long |= count > u32::from(u8::MAX);
        insns[at].window = count.min(u32::from(u8::MAX)) as u8;
    }
    long
}

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes the instruction at `at` (the opcode byte exists).
fn decode(bytes: &[u8], at: usize) -> Result<Insn, (Fault, usize)> {
    let key = bytes[at];
    let next = at + 1;
    let plain = |len: u8, arg: u32| Insn {
        key,
        len,
        small: 0,
        window: 0,
        arg,
    };
    let byte = |pos: usize| bytes.get(pos).copied().ok_or((Fault::IpOutside(pos), pos));
    let word = |pos: usize| be_i32(bytes, pos).ok_or((Fault::OperandOutside(pos), pos));
    Ok(match key {
        op::ICONST_8BIT
        | op::OS_LOAD8
        | op::OS_SAVE8
        | op::IS_LOAD8
        | op::IS_SAVE8
        | op::SYS
        | op::ARG_COUNT
        | op::CALL_00..=op::CALL_1F => plain(2, u32::from(byte(next)?)),
        op::ICONST_32BIT
        | op::IS_GET32
        | op::IS_SET32
        | op::OS_GET32
        | op::OS_SET32
        | op::OS_PULL32
        | op::OS_LOAD32
        | op::OS_SAVE32 => plain(5, word(next)? as u32),
        op::JZ | op::JMP | op::DJNZ => {
            let target = next as i64 + i64::from(word(next)?);
            // Code is shorter than 2 GiB, so every target fits in a u32.
            match u32::try_from(target) {
                Ok(t) => plain(5, t),
                Err(_) => return Err((Fault::JumpOutside(target), next + 4)),
            }
        }
        op::CALL_8BIT => {
            let m = byte(next)?;
            let n = word(next + 1)?;
            if n < 0 {
                return Err((Fault::NegativeArgCount, next + 5));
            }
            Insn {
                key,
                len: 6,
                small: m,
                window: 0,
                arg: n as u32,
            }
        }
        _ => plain(1, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offset_is_decoded() {
        // is_get32 0x00000102, then jmp back to offset 0.
        let bytes = [op::IS_GET32, 0, 0, 1, 2, op::JMP, 0xFF, 0xFF, 0xFF, 0xFA];
        let code = Code::new(&bytes);
        let i = code.insns();
        assert_eq!(i.len(), bytes.len());
        assert_eq!((i[0].key, i[0].len, i[0].arg), (op::IS_GET32, 5, 0x102));
        assert_eq!((i[5].key, i[5].len, i[5].arg), (op::JMP, 5, 0));
        // Offset 1 is the byte 0x00: a nop.
        assert_eq!((i[1].key, i[1].len), (op::NOP, 1));
        // Offset 6 decodes 0xFF as an opcode, whatever it is.
        assert_eq!(i[6].key, 0xFF);
    }

    #[test]
    fn bad_operands_become_faults() {
        let code = Code::new(&[op::IS_GET32, 0, 0]);
        let i = code.insns()[0];
        assert_eq!((i.key, i.len), (op::NOP, 0));
        let (fault, ip) = code.fault(i.arg);
        assert!(matches!(fault, Fault::OperandOutside(1)));
        assert_eq!(ip, 1);

        let code = Code::new(&[op::JMP, 0xFF, 0xFF, 0xFF, 0x00]);
        let (fault, ip) = code.fault(code.insns()[0].arg);
        assert!(matches!(fault, Fault::JumpOutside(t) if t == 1 - 256));
        assert_eq!(ip, 5);

        let code = Code::new(&[op::CALL_8BIT, 3, 0xFF, 0xFF, 0xFF, 0xFF]);
        let (fault, ip) = code.fault(code.insns()[0].arg);
        assert!(matches!(fault, Fault::NegativeArgCount));
        assert_eq!(ip, 6);

        let code = Code::new(&[op::SYS]);
        let (fault, ip) = code.fault(code.insns()[0].arg);
        assert!(matches!(fault, Fault::IpOutside(1)));
        assert_eq!(ip, 1);
    }
}
