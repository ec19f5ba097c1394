//! Disassembler: `.pc` bytes → the assembler's text form, such that
//! `asm::assemble(&disassemble(b)?) == b` for every parseable class file.
//!
//! Text form (one record per directive, in file order):
//!
//! ```text
//! class ".phantom.user" fields 0 methods 17 base ".internal.object" version "2017…"
//! method "getName" 16
//!     iconst_32bit 0
//!     isublu
//!     jz L52
//!     …
//! L52:
//!     const_pool 0
//!     ret
//! end
//! signature "getName" 16 ctor 0 returns ".internal.string" args "i" ".internal.int"
//! linemap 16 52 24 57 24
//! field "test_array" 4 ""[".internal.void"]
//! const 0 ".internal.string" "undefined.user"
//! record 0x78 "\x00\x01"
//! ```
//!
//! Types are `"main"` (scalar), `"main"["contained"]` (container) or
//! `{N "main" "contained"}` for anything else. Jump operands are labels
//! `L<offset>` when the target is an instruction boundary, otherwise `%rel`
//! (the raw relative value). Code that does not decode ends in `raw "…"`.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::classfile::{self, LoadError, Record, TypeDesc};
use crate::opcode::{Insn, Operand, Operands, decode_at};

/// Quotes bytes as an assembler string literal.
pub fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7E => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

fn ty(t: &TypeDesc) -> String {
    match t.container {
        0 if t.contained.is_empty() => quote(&t.main),
        1 => format!("{}[{}]", quote(&t.main), quote(&t.contained)),
        n => format!("{{{n} {} {}}}", quote(&t.main), quote(&t.contained)),
    }
}

/// Disassembles one method body into `out`, indented, with labels.
pub fn code(code: &[u8], out: &mut String) {
    let mut insns: Vec<Insn> = Vec::new();
    let mut pos = 0;
    while pos < code.len() {
        match decode_at(code, pos) {
            Ok(insn) => {
                pos = insn.next;
                insns.push(insn);
            }
            Err(_) => break,
        }
    }
    let raw_from = pos;
    let boundaries: BTreeSet<usize> = insns
        .iter()
        .map(|i| i.at)
        .chain(std::iter::once(raw_from))
        .collect();
    let mut labels = BTreeSet::new();
    for insn in &insns {
        for t in insn.operands.iter().filter_map(Operand::target) {
            if t >= 0 && boundaries.contains(&(t as usize)) {
                labels.insert(t as usize);
            }
        }
    }
    for insn in &insns {
        if labels.contains(&insn.at) {
            let _ = writeln!(out, "L{}:", insn.at);
        }
        out.push_str("    ");
        out.push_str(insn.info.mnemonic);
        let skip = usize::from(insn.info.operands == Operands::Switch);
        for operand in insn.operands.iter().skip(skip) {
            out.push(' ');
            match operand {
                Operand::U8(v) => {
                    let _ = write!(out, "{v}");
                }
                Operand::I32(v) => {
                    let _ = write!(out, "{v}");
                }
                Operand::I64(v) => {
                    let _ = write!(out, "{v}");
                }
                Operand::Str(s) => out.push_str(&quote(s)),
                Operand::Rel { rel, .. } => match operand.target() {
                    Some(t) if t >= 0 && labels.contains(&(t as usize)) => {
                        let _ = write!(out, "L{t}");
                    }
                    _ => {
                        let _ = write!(out, "%{rel}");
                    }
                },
            }
        }
        out.push('\n');
    }
    if labels.contains(&raw_from) {
        let _ = writeln!(out, "L{raw_from}:");
    }
    if raw_from < code.len() {
        let _ = writeln!(out, "    raw {}", quote(&code[raw_from..]));
    }
}

/// Disassembles a whole class file.
pub fn disassemble(bytes: &[u8]) -> Result<String, LoadError> {
    let class = classfile::parse(bytes)?;
    Ok(disassemble_class(&class))
}

/// Disassembles an already parsed class file.
pub fn disassemble_class(class: &classfile::ClassFile) -> String {
    let mut out = String::new();
    for r in &class.records {
        match r {
            Record::Class {
                name,
                n_object_slots,
                n_method_slots,
                base,
                version,
            } => {
                let _ = write!(
                    out,
                    "class {} fields {n_object_slots} methods {n_method_slots} base {}",
                    quote(name),
                    quote(base)
                );
                if let Some(v) = version {
                    let _ = write!(out, " version {}", quote(v));
                }
                out.push('\n');
            }
            Record::Method {
                name,
                ordinal,
                code: c,
            } => {
                let _ = writeln!(out, "method {} {ordinal}", quote(name));
                code(c, &mut out);
                out.push_str("end\n");
            }
            Record::Signature {
                name,
                ordinal,
                is_constructor,
                returns,
                args,
            } => {
                let _ = write!(out, "signature {} {ordinal}", quote(name));
                if let Some(flag) = is_constructor {
                    let _ = write!(out, " ctor {flag}");
                }
                let _ = write!(out, " returns {}", ty(returns));
                if !args.is_empty() {
                    out.push_str(" args");
                    for a in args {
                        let _ = write!(out, " {} {}", quote(&a.name), ty(&a.ty));
                    }
                }
                out.push('\n');
            }
            Record::LineMap { ordinal, entries } => {
                let _ = write!(out, "linemap {ordinal}");
                for (ip, line) in entries {
                    let _ = write!(out, " {ip} {line}");
                }
                out.push('\n');
            }
            Record::Fields(entries) => {
                out.push_str("field");
                for f in entries {
                    let _ = write!(out, " {} {} {}", quote(&f.name), f.ordinal, ty(&f.ty));
                }
                out.push('\n');
            }
            Record::Const {
                index,
                ty: t,
                value,
            } => {
                let _ = writeln!(out, "const {index} {} {}", ty(t), quote(value));
            }
            Record::Other { kind, body } => {
                let _ = writeln!(out, "record 0x{kind:02x} {}", quote(body));
            }
        }
    }
    out
}

/// Disassembles a class file, or every entry of a bulk `classes` container
/// (each preceded by a `; bulk entry NAME` comment; entries that do not
/// parse get a `; error:` comment instead).
pub fn disassemble_any(bytes: &[u8]) -> Result<String, LoadError> {
    if bytes.starts_with(classfile::RECORD_MARKER) || bytes.is_empty() {
        return disassemble(bytes);
    }
    let mut out = String::new();
    for (name, entry) in classfile::parse_bulk(bytes)? {
        let _ = writeln!(out, "; bulk entry {name}");
        match disassemble(&entry) {
            Ok(text) => out.push_str(&text),
            Err(e) => {
                let _ = writeln!(out, "; error: {e}");
            }
        }
    }
    Ok(out)
}
