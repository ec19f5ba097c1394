//! Assembler: the text form described in [`crate::disasm`] → `.pc` bytes in
//! the exact on-disk format. Instruction encodings come from the opcode
//! table in [`crate::opcode`].

use std::collections::HashMap;

use crate::classfile::{self, ClassFile, FieldEntry, Record, SigArg, TypeDesc};
use crate::opcode::{OpInfo, Operands, by_mnemonic};

/// Why a text could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AsmError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(Vec<u8>),
    Punct(char),
}

fn lex(line: &str) -> Result<Vec<Tok>, String> {
    let bytes = line.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => break,
            b'[' | b']' | b'{' | b'}' => {
                toks.push(Tok::Punct(c as char));
                i += 1;
            }
            b'"' => {
                i += 1;
                let mut s = Vec::new();
                loop {
                    let Some(&c) = bytes.get(i) else {
                        return Err("unterminated string".into());
                    };
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let Some(&e) = bytes.get(i) else {
                                return Err("bad escape".into());
                            };
                            i += 1;
                            match e {
                                b'n' => s.push(b'\n'),
                                b'r' => s.push(b'\r'),
                                b't' => s.push(b'\t'),
                                b'"' => s.push(b'"'),
                                b'\\' => s.push(b'\\'),
                                b'x' => {
                                    let hex = bytes.get(i..i + 2).ok_or("bad \\x escape")?;
                                    let hex =
                                        std::str::from_utf8(hex).map_err(|_| "bad \\x escape")?;
                                    s.push(
                                        u8::from_str_radix(hex, 16)
                                            .map_err(|_| "bad \\x escape")?,
                                    );
                                    i += 2;
                                }
                                _ => return Err(format!("unknown escape \\{}", e as char)),
                            }
                        }
                        _ => s.push(c),
                    }
                }
                toks.push(Tok::Str(s));
            }
            _ => {
                let start = i;
                while i < bytes.len() && !b" \t\r;[]{}\"".contains(&bytes[i]) {
                    i += 1;
                }
                toks.push(Tok::Word(line[start..i].to_string()));
            }
        }
    }
    Ok(toks)
}

struct Line {
    toks: Vec<Tok>,
    pos: usize,
}

impl Line {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn done(&self) -> bool {
        self.pos >= self.toks.len()
    }
    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            other => Err(format!("expected {what}, found {other:?}")),
        }
    }
    fn keyword(&mut self, kw: &str) -> Result<(), String> {
        let w = self.word(kw)?;
        if w == kw {
            Ok(())
        } else {
            Err(format!("expected `{kw}`, found `{w}`"))
        }
    }
    fn string(&mut self) -> Result<Vec<u8>, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            other => Err(format!("expected a string, found {other:?}")),
        }
    }
    fn int(&mut self, min: i64, max: i64) -> Result<i64, String> {
        let w = self.word("a number")?;
        let v = parse_int(&w).ok_or_else(|| format!("`{w}` is not a number"))?;
        if v < min || v > max {
            return Err(format!("{v} is out of range {min}..={max}"));
        }
        Ok(v)
    }
    fn i32(&mut self) -> Result<i32, String> {
        // Accept unsigned spellings of negative values (0xFFFFFFFF).
        Ok(self.int(i32::MIN.into(), u32::MAX.into())? as u32 as i32)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.int(0, 255)? as u8)
    }
    fn ty(&mut self) -> Result<TypeDesc, String> {
        match self.next() {
            Some(Tok::Str(main)) => {
                if self.peek() == Some(&Tok::Punct('[')) {
                    self.pos += 1;
                    let contained = self.string()?;
                    self.punct(']')?;
                    Ok(TypeDesc {
                        container: 1,
                        main,
                        contained,
                    })
                } else {
                    Ok(TypeDesc {
                        container: 0,
                        main,
                        contained: Vec::new(),
                    })
                }
            }
            Some(Tok::Punct('{')) => {
                let container = self.i32()?;
                let main = self.string()?;
                let contained = self.string()?;
                self.punct('}')?;
                Ok(TypeDesc {
                    container,
                    main,
                    contained,
                })
            }
            other => Err(format!("expected a type, found {other:?}")),
        }
    }
    fn punct(&mut self, p: char) -> Result<(), String> {
        match self.next() {
            Some(Tok::Punct(c)) if c == p => Ok(()),
            other => Err(format!("expected `{p}`, found {other:?}")),
        }
    }
    fn end(&self) -> Result<(), String> {
        if self.done() {
            Ok(())
        } else {
            Err(format!("unexpected {:?}", self.toks[self.pos]))
        }
    }
}

fn parse_int(w: &str) -> Option<i64> {
    let (neg, digits) = match w.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, w),
    };
    // Through i128, so that -9223372036854775808 (i64::MIN, whose
    // magnitude is no i64) is a number too.
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i128>().ok()?,
    };
    if neg && digits.starts_with(['+', '-']) {
        return None;
    }
    i64::try_from(if neg { -v } else { v }).ok()
}

/// A jump operand waiting for its label.
struct Fixup {
    at: usize,
    label: String,
    line: usize,
}

/// Assembles the lines of one method body.
struct CodeBuilder {
    code: Vec<u8>,
    labels: HashMap<String, usize>,
    fixups: Vec<Fixup>,
}

impl CodeBuilder {
    fn jump(&mut self, l: &mut Line, line: usize) -> Result<(), String> {
        let w = l.word("a label")?;
        let at = self.code.len();
        if let Some(raw) = w.strip_prefix('%') {
            let v = parse_int(raw).ok_or_else(|| format!("bad relative jump `{w}`"))?;
            let v = i32::try_from(v).map_err(|_| format!("relative jump {v} out of range"))?;
            self.code.extend_from_slice(&v.to_be_bytes());
        } else {
            self.fixups.push(Fixup { at, label: w, line });
            self.code.extend_from_slice(&[0; 4]);
        }
        Ok(())
    }

    fn insn(&mut self, info: OpInfo, l: &mut Line, line: usize) -> Result<(), String> {
        self.code.push(info.code);
        match info.operands {
            Operands::None => {}
            Operands::U8 => {
                let v = l.u8()?;
                self.code.push(v);
            }
            Operands::I32 => {
                let v = l.i32()?;
                self.code.extend_from_slice(&v.to_be_bytes());
            }
            Operands::I64 => {
                let w = l.word("a number")?;
                let v = parse_int(&w)
                    .or_else(|| w.parse::<u64>().ok().map(|u| u as i64))
                    .ok_or_else(|| format!("`{w}` is not a number"))?;
                self.code.extend_from_slice(&v.to_be_bytes());
            }
            Operands::Rel32 => self.jump(l, line)?,
            Operands::Str => {
                let s = l.string()?;
                self.code.extend_from_slice(&(s.len() as i32).to_be_bytes());
                self.code.extend_from_slice(&s);
            }
            Operands::U8U8 => {
                let a = l.u8()?;
                let b = l.u8()?;
                self.code.extend([a, b]);
            }
            Operands::U8I32 => {
                let a = l.u8()?;
                let b = l.i32()?;
                self.code.push(a);
                self.code.extend_from_slice(&b.to_be_bytes());
            }
            Operands::I32I32 => {
                let a = l.i32()?;
                let b = l.i32()?;
                self.code.extend_from_slice(&a.to_be_bytes());
                self.code.extend_from_slice(&b.to_be_bytes());
            }
            Operands::Debug => {
                let flags = l.u8()?;
                self.code.push(flags);
                if flags & 0x80 != 0 {
                    let s = l.string()?;
                    self.code.extend_from_slice(&(s.len() as i32).to_be_bytes());
                    self.code.extend_from_slice(&s);
                }
            }
            Operands::Switch => {
                let shift = l.i32()?;
                let div = l.i32()?;
                let n_at = self.code.len();
                self.code.extend_from_slice(&[0; 4]);
                self.code.extend_from_slice(&shift.to_be_bytes());
                self.code.extend_from_slice(&div.to_be_bytes());
                let mut n = 0i32;
                while !l.done() {
                    self.jump(l, line)?;
                    n += 1;
                }
                self.code[n_at..n_at + 4].copy_from_slice(&n.to_be_bytes());
            }
        }
        l.end()
    }

    fn finish(mut self) -> Result<Vec<u8>, AsmError> {
        for f in &self.fixups {
            let target = *self.labels.get(&f.label).ok_or_else(|| AsmError {
                line: f.line,
                message: format!("undefined label `{}`", f.label),
            })?;
            let rel = target as i64 - f.at as i64;
            self.code[f.at..f.at + 4].copy_from_slice(&(rel as i32).to_be_bytes());
        }
        Ok(self.code)
    }
}

/// Assembles a text class into a parsed class file.
pub fn assemble_class(text: &str) -> Result<ClassFile, AsmError> {
    let mut records = Vec::new();
    let mut method: Option<(Vec<u8>, i32, CodeBuilder)> = None;
    for (n, raw_line) in text.lines().enumerate() {
        let line = n + 1;
        let err = |message: String| AsmError { line, message };
        let toks = lex(raw_line).map_err(err)?;
        if toks.is_empty() {
            continue;
        }
        let mut l = Line { toks, pos: 0 };
        if let Some((name, ordinal, mut b)) = method.take() {
            let head = l.word("an instruction").map_err(err)?;
            if head == "end" {
                l.end().map_err(err)?;
                records.push(Record::Method {
                    name,
                    ordinal,
                    code: b.finish()?,
                });
                continue;
            }
            if let Some(label) = head.strip_suffix(':') {
                if b.labels.insert(label.to_string(), b.code.len()).is_some() {
                    return Err(err(format!("duplicate label `{label}`")));
                }
                l.end().map_err(err)?;
            } else if head == "raw" {
                let s = l.string().map_err(err)?;
                b.code.extend_from_slice(&s);
                l.end().map_err(err)?;
            } else {
                let info =
                    by_mnemonic(&head).ok_or_else(|| err(format!("unknown mnemonic `{head}`")))?;
                b.insn(info, &mut l, line).map_err(err)?;
            }
            method = Some((name, ordinal, b));
            continue;
        }
        let directive = l.word("a directive").map_err(err)?;
        let record = (|| -> Result<Option<Record>, String> {
            Ok(Some(match directive.as_str() {
                "class" => {
                    let name = l.string()?;
                    l.keyword("fields")?;
                    let n_object_slots = l.i32()?;
                    l.keyword("methods")?;
                    let n_method_slots = l.i32()?;
                    l.keyword("base")?;
                    let base = l.string()?;
                    let version = if l.done() {
                        None
                    } else {
                        l.keyword("version")?;
                        Some(l.string()?)
                    };
                    Record::Class {
                        name,
                        n_object_slots,
                        n_method_slots,
                        base,
                        version,
                    }
                }
                "method" => {
                    let name = l.string()?;
                    let ordinal = l.i32()?;
                    l.end()?;
                    let b = CodeBuilder {
                        code: Vec::new(),
                        labels: HashMap::new(),
                        fixups: Vec::new(),
                    };
                    method = Some((name, ordinal, b));
                    return Ok(None);
                }
                "signature" => {
                    let name = l.string()?;
                    let ordinal = l.i32()?;
                    let mut is_constructor = None;
                    let mut kw = l.word("`ctor` or `returns`")?;
                    if kw == "ctor" {
                        is_constructor = Some(l.i32()?);
                        kw = l.word("`returns`")?;
                    }
                    if kw != "returns" {
                        return Err(format!("expected `returns`, found `{kw}`"));
                    }
                    let returns = l.ty()?;
                    let mut args = Vec::new();
                    if !l.done() {
                        l.keyword("args")?;
                        while !l.done() {
                            let name = l.string()?;
                            args.push(SigArg { name, ty: l.ty()? });
                        }
                    }
                    Record::Signature {
                        name,
                        ordinal,
                        is_constructor,
                        returns,
                        args,
                    }
                }
                "linemap" => {
                    let ordinal = l.i32()?;
                    let mut entries = Vec::new();
                    while !l.done() {
                        let ip = l.int(i64::MIN, i64::MAX)?;
                        entries.push((ip, l.i32()?));
                    }
                    Record::LineMap { ordinal, entries }
                }
                "field" => {
                    let mut entries = Vec::new();
                    while !l.done() {
                        let name = l.string()?;
                        let ordinal = l.i32()?;
                        entries.push(FieldEntry {
                            name,
                            ordinal,
                            ty: l.ty()?,
                        });
                    }
                    Record::Fields(entries)
                }
                "const" => {
                    let index = l.i32()?;
                    let ty = l.ty()?;
                    Record::Const {
                        index,
                        ty,
                        value: l.string()?,
                    }
                }
                "record" => {
                    let kind = l.u8()?;
                    Record::Other {
                        kind,
                        body: l.string()?,
                    }
                }
                other => return Err(format!("unknown directive `{other}`")),
            }))
        })()
        .map_err(err)?;
        l.end().map_err(err)?;
        if let Some(r) = record {
            records.push(r);
        }
    }
    if method.is_some() {
        return Err(AsmError {
            line: text.lines().count(),
            message: "method without `end`".into(),
        });
    }
    Ok(ClassFile { records })
}

/// Assembles a text class into `.pc` bytes.
pub fn assemble(text: &str) -> Result<Vec<u8>, AsmError> {
    Ok(classfile::write(&assemble_class(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line() {
        let e = assemble("class \".a\" fields 0 methods 17 base \".internal.object\"\nmethod \"m\" 16\n  bogus\nend\n")
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(assemble("method \"m\" 16\n jz nowhere\nend\n").is_err());
        assert!(assemble("class \"x").is_err());
    }

    #[test]
    fn integers_reach_both_ends_of_i64() {
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int("-0x8000000000000000"), Some(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_int("-9223372036854775809"), None);
        assert_eq!(parse_int("--5"), None);
        assert_eq!(parse_int("+5"), Some(5));
        assert_eq!(parse_int("-0x10"), Some(-16));
    }
}
