//! The PVM instruction set: one table (`for_each_opcode!`) is the single
//! source of truth for the opcode numbers, mnemonics and operand layouts that
//! the interpreter, the checked decoder, the disassembler and the assembler
//! all use.
//!
//! ```text
//!   for_each_opcode!  ──► op::* constants ──► interp (dispatch)
//!          │
//!          └──────────► OPCODES[256] ──► decode_at ──► disasm
//!                                   └──► by_mnemonic ──► asm
//! ```

/// The operand layout that follows an opcode byte (spec §2.2, §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// No operand.
    None,
    /// One unsigned byte.
    U8,
    /// One big-endian int32.
    I32,
    /// One big-endian int64.
    I64,
    /// A jump target: int32 relative to the operand's own position.
    Rel32,
    /// A string: int32 length then the bytes.
    Str,
    /// Two unsigned bytes (`stack_reserve o i`).
    U8U8,
    /// A byte then an int32 (`call_8bit m n`).
    U8I32,
    /// Two int32 (`call_32bit m n`, `static_invoke m n`).
    I32I32,
    /// `debug`: a flag byte, then a string if the flags have bit 0x80.
    Debug,
    /// `switch`: int32 N, int32 shift, int32 div, then N jump targets.
    Switch,
}

/// Static facts about one opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    /// The opcode byte.
    pub code: u8,
    /// The assembler/disassembler mnemonic.
    pub mnemonic: &'static str,
    /// The operand layout.
    pub operands: Operands,
}

/// Calls `$m!` with the whole instruction table as `CONST = byte, "mnemonic", Operands;`.
macro_rules! for_each_opcode {
    ($m:ident) => {
        $m! {
            NOP = 0x00, "nop", None;
            DEBUG = 0x01, "debug", Debug;
            DJNZ = 0x04, "djnz", Rel32;
            JZ = 0x05, "jz", Rel32;
            JMP = 0x06, "jmp", Rel32;
            SWITCH = 0x07, "switch", Switch;
            RET = 0x08, "ret", None;
            SHORT_CALL_0 = 0x09, "short_call_0", None;
            SHORT_CALL_1 = 0x0A, "short_call_1", None;
            SHORT_CALL_2 = 0x0B, "short_call_2", None;
            SHORT_CALL_3 = 0x0C, "short_call_3", None;
            CALL_8BIT = 0x0D, "call_8bit", U8I32;
            CALL_32BIT = 0x0E, "call_32bit", I32I32;
            SYS = 0x0F, "sys", U8;
            IS_DUP = 0x10, "is_dup", None;
            IS_DROP = 0x11, "is_drop", None;
            OS_DUP = 0x12, "os_dup", None;
            OS_DROP = 0x13, "os_drop", None;
            OS_LOAD8 = 0x14, "os_load8", U8;
            OS_SAVE8 = 0x15, "os_save8", U8;
            OS_LOAD32 = 0x16, "os_load32", I32;
            OS_SAVE32 = 0x17, "os_save32", I32;
            NEW = 0x18, "new", None;
            OS_PULL32 = 0x1C, "os_pull32", I32;
            OS_GET32 = 0x1E, "os_get32", I32;
            OS_SET32 = 0x1F, "os_set32", I32;
            ICONST_0 = 0x20, "iconst_0", None;
            ICONST_1 = 0x21, "iconst_1", None;
            ICONST_8BIT = 0x22, "iconst_8bit", U8;
            ICONST_32BIT = 0x23, "iconst_32bit", I32;
            SCONST_BIN = 0x24, "sconst_bin", Str;
            ICONST_64BIT = 0x25, "iconst_64bit", I64;
            IS_GET32 = 0x26, "is_get32", I32;
            IS_SET32 = 0x27, "is_set32", I32;
            CONST_POOL = 0x28, "const_pool", I32;
            STACK_RESERVE = 0x29, "stack_reserve", U8U8;
            CAST = 0x2B, "cast", None;
            PUSH_CATCHER = 0x2D, "push_catcher", Rel32;
            POP_CATCHER = 0x2E, "pop_catcher", None;
            THROW = 0x2F, "throw", None;
            SUMMON_THREAD = 0x30, "summon_thread", None;
            SUMMON_THIS = 0x31, "summon_this", None;
            SUMMON_NULL = 0x37, "summon_null", None;
            SUMMON_CLASS_CLASS = 0x38, "summon_class_class", None;
            SUMMON_INT_CLASS = 0x39, "summon_int_class", None;
            SUMMON_STRING_CLASS = 0x3A, "summon_string_class", None;
            SUMMON_INTERFACE_CLASS = 0x3B, "summon_interface_class", None;
            SUMMON_CODE_CLASS = 0x3C, "summon_code_class", None;
            SUMMON_ARRAY_CLASS = 0x3D, "summon_array_class", None;
            SUMMON_BY_NAME = 0x3F, "summon_by_name", Str;
            I2O = 0x40, "i2o", None;
            O2I = 0x41, "o2i", None;
            ISUM = 0x42, "isum", None;
            IMUL = 0x43, "imul", None;
            ISUBUL = 0x44, "isubul", None;
            ISUBLU = 0x45, "isublu", None;
            IDIVUL = 0x46, "idivul", None;
            IDIVLU = 0x47, "idivlu", None;
            IOR = 0x48, "ior", None;
            IAND = 0x49, "iand", None;
            IXOR = 0x4A, "ixor", None;
            INOT = 0x4B, "inot", None;
            LOG_OR = 0x4C, "log_or", None;
            LOG_AND = 0x4D, "log_and", None;
            LOG_XOR = 0x4E, "log_xor", None;
            LOG_NOT = 0x4F, "log_not", None;
            IS_LOAD8 = 0x50, "is_load8", U8;
            IS_SAVE8 = 0x51, "is_save8", U8;
            IGE = 0x52, "ige", None;
            ILE = 0x53, "ile", None;
            IGT = 0x54, "igt", None;
            ILT = 0x55, "ilt", None;
            IREMUL = 0x56, "iremul", None;
            IREMLU = 0x57, "iremlu", None;
            OS_EQ = 0x58, "os_eq", None;
            OS_NEQ = 0x59, "os_neq", None;
            OS_ISNULL = 0x5A, "os_isnull", None;
            PREFIX_LONG = 0x5C, "prefix_long", None;
            PREFIX_FLOAT = 0x5D, "prefix_float", None;
            PREFIX_DOUBLE = 0x5E, "prefix_double", None;
            GENERAL_LOCK = 0x62, "general_lock", None;
            GENERAL_UNLOCK = 0x63, "general_unlock", None;
            STATIC_INVOKE = 0x6E, "static_invoke", I32I32;
            DYNAMIC_INVOKE = 0x6F, "dynamic_invoke", None;
            ISHL = 0x70, "ishl", None;
            ISHR = 0x71, "ishr", None;
            USHR = 0x72, "ushr", None;
            ARG_COUNT = 0x73, "arg_count", U8;
            FROMI = 0x74, "fromi", None;
            FROML = 0x75, "froml", None;
            FROMF = 0x76, "fromf", None;
            FROMD = 0x77, "fromd", None;
            CALL_00 = 0xA0, "call_00", U8;
            CALL_01 = 0xA1, "call_01", U8;
            CALL_02 = 0xA2, "call_02", U8;
            CALL_03 = 0xA3, "call_03", U8;
            CALL_04 = 0xA4, "call_04", U8;
            CALL_05 = 0xA5, "call_05", U8;
            CALL_06 = 0xA6, "call_06", U8;
            CALL_07 = 0xA7, "call_07", U8;
            CALL_08 = 0xA8, "call_08", U8;
            CALL_09 = 0xA9, "call_09", U8;
            CALL_0A = 0xAA, "call_0a", U8;
            CALL_0B = 0xAB, "call_0b", U8;
            CALL_0C = 0xAC, "call_0c", U8;
            CALL_0D = 0xAD, "call_0d", U8;
            CALL_0E = 0xAE, "call_0e", U8;
            CALL_0F = 0xAF, "call_0f", U8;
            CALL_10 = 0xB0, "call_10", U8;
            CALL_11 = 0xB1, "call_11", U8;
            CALL_12 = 0xB2, "call_12", U8;
            CALL_13 = 0xB3, "call_13", U8;
            CALL_14 = 0xB4, "call_14", U8;
            CALL_15 = 0xB5, "call_15", U8;
            CALL_16 = 0xB6, "call_16", U8;
            CALL_17 = 0xB7, "call_17", U8;
            CALL_18 = 0xB8, "call_18", U8;
            CALL_19 = 0xB9, "call_19", U8;
            CALL_1A = 0xBA, "call_1a", U8;
            CALL_1B = 0xBB, "call_1b", U8;
            CALL_1C = 0xBC, "call_1c", U8;
            CALL_1D = 0xBD, "call_1d", U8;
            CALL_1E = 0xBE, "call_1e", U8;
            CALL_1F = 0xBF, "call_1f", U8;
        }
    };
}

macro_rules! define_constants {
    ($($name:ident = $code:expr, $mn:expr, $ops:ident;)*) => {
        /// Opcode byte constants, named after the mnemonics.
        pub mod op {
            $(
                #[doc = concat!("`", $mn, "`")]
                pub const $name: u8 = $code;
            )*
        }

        /// Every defined opcode, in table order.
        pub const ALL: &[OpInfo] = &[
            $(OpInfo { code: $code, mnemonic: $mn, operands: Operands::$ops },)*
        ];
    };
}

for_each_opcode!(define_constants);

/// Opcode byte → facts, `None` for bytes the VM rejects as unknown opcodes.
pub static OPCODES: [Option<OpInfo>; 256] = {
    let mut table = [None; 256];
    let mut i = 0;
    while i < ALL.len() {
        table[ALL[i].code as usize] = Some(ALL[i]);
        i += 1;
    }
    table
};

/// Looks an opcode up by its mnemonic.
pub fn by_mnemonic(mnemonic: &str) -> Option<OpInfo> {
    ALL.iter().copied().find(|info| info.mnemonic == mnemonic)
}

/// First byte of the `call_XX` range; ordinal = opcode & 0x1F.
pub const CALL_XX_FIRST: u8 = 0xA0;
/// Last byte of the `call_XX` range.
pub const CALL_XX_LAST: u8 = 0xBF;

/// The most entries a `switch` table may have; bounds what a decoder reads.
pub const MAX_SWITCH_ENTRIES: u32 = 1 << 16;

/// One decoded operand value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// An 8-bit immediate.
    U8(u8),
    /// A 32-bit immediate.
    I32(i32),
    /// A 64-bit immediate.
    I64(i64),
    /// A jump: the operand's own position and the relative value.
    Rel { at: usize, rel: i32 },
    /// A string constant.
    Str(Vec<u8>),
}

impl Operand {
    /// The absolute target of a relative jump operand.
    pub fn target(&self) -> Option<i64> {
        match self {
            Operand::Rel { at, rel } => Some(*at as i64 + i64::from(*rel)),
            _ => None,
        }
    }
}

/// One decoded instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insn {
    /// Offset of the opcode byte.
    pub at: usize,
    /// Offset just past the instruction.
    pub next: usize,
    /// The opcode.
    pub info: OpInfo,
    /// Operand values in encoding order (`switch`: N, shift, div, then the
    /// targets; `debug`: flags, then the string if any).
    pub operands: Vec<Operand>,
}

/// Why an instruction could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The byte is not an opcode.
    #[error("unknown opcode 0x{opcode:02X} at {at}")]
    UnknownOpcode { opcode: u8, at: usize },
    /// The operands run past the end of the code.
    #[error("truncated instruction at {at}")]
    Truncated { at: usize },
    /// A switch table claims more entries than the cap allows.
    #[error("switch at {at} has {entries} entries, more than allowed")]
    SwitchTooLarge { at: usize, entries: u32 },
}

struct Cursor<'a> {
    code: &'a [u8],
    pos: usize,
    start: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.code.len());
        let end = end.ok_or(DecodeError::Truncated { at: self.start })?;
        let bytes = &self.code[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn rel(&mut self) -> Result<Operand, DecodeError> {
        let at = self.pos;
        Ok(Operand::Rel {
            at,
            rel: self.i32()?,
        })
    }
    fn string(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.i32()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated { at: self.start })?;
        Ok(self.take(len)?.to_vec())
    }
}

/// Decodes the instruction at `at`, checking every bound.
pub fn decode_at(code: &[u8], at: usize) -> Result<Insn, DecodeError> {
    let mut c = Cursor {
        code,
        pos: at,
        start: at,
    };
    let opcode = c.u8()?;
    let info = OPCODES[opcode as usize].ok_or(DecodeError::UnknownOpcode { opcode, at })?;
    let mut operands = Vec::new();
    match info.operands {
        Operands::None => {}
        Operands::U8 => operands.push(Operand::U8(c.u8()?)),
        Operands::I32 => operands.push(Operand::I32(c.i32()?)),
        Operands::I64 => operands.push(Operand::I64(c.i64()?)),
        Operands::Rel32 => operands.push(c.rel()?),
        Operands::Str => operands.push(Operand::Str(c.string()?)),
        Operands::U8U8 => {
            operands.push(Operand::U8(c.u8()?));
            operands.push(Operand::U8(c.u8()?));
        }
        Operands::U8I32 => {
            operands.push(Operand::U8(c.u8()?));
            operands.push(Operand::I32(c.i32()?));
        }
        Operands::I32I32 => {
            operands.push(Operand::I32(c.i32()?));
            operands.push(Operand::I32(c.i32()?));
        }
        Operands::Debug => {
            let flags = c.u8()?;
            operands.push(Operand::U8(flags));
            if flags & 0x80 != 0 {
                operands.push(Operand::Str(c.string()?));
            }
        }
        Operands::Switch => {
            let n = c.i32()?;
            let entries = n as u32;
            if entries > MAX_SWITCH_ENTRIES {
                return Err(DecodeError::SwitchTooLarge { at, entries });
            }
            operands.push(Operand::I32(n));
            operands.push(Operand::I32(c.i32()?));
            operands.push(Operand::I32(c.i32()?));
            for _ in 0..entries {
                operands.push(c.rel()?);
            }
        }
    }
    Ok(Insn {
        at,
        next: c.pos,
        info,
        operands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.code, b.code, "{} / {}", a.mnemonic, b.mnemonic);
                assert_ne!(a.mnemonic, b.mnemonic);
            }
        }
        assert_eq!(ALL.len(), 92 + 32);
    }

    #[test]
    fn decodes_the_spec_example_jump() {
        // @6 jz with operand at @7 and value 0x2d targets @52.
        let mut code = vec![0u8; 6];
        code.extend([op::JZ, 0, 0, 0, 0x2d]);
        let insn = decode_at(&code, 6).unwrap();
        assert_eq!(insn.operands[0].target(), Some(52));
        assert_eq!(insn.next, 11);
    }

    #[test]
    fn truncated_and_unknown_are_errors() {
        assert!(matches!(
            decode_at(&[op::JZ, 0, 0], 0),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode_at(&[0x9F], 0),
            Err(DecodeError::UnknownOpcode { .. })
        ));
        assert!(decode_at(&[], 0).is_err());
    }
}
