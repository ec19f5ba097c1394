//! The `.pc` class file format (spec §1): a checked record parser, a writer
//! that reproduces the exact bytes, and the bulk `classes` container.
//!
//! ```text
//!   bytes ──parse──► ClassFile { records: Vec<Record> } ──write──► bytes
//!                         │ (file order kept, so write(parse(x)) == x)
//!                         └──► vm::load (builds a class object)
//! ```
//!
//! Class files are untrusted: every length is checked against what is left,
//! and counts are capped, so garbage gives a [`LoadError`], never a panic.

/// Record marker that starts every record.
pub const RECORD_MARKER: &[u8; 5] = b"phfr:";
/// Size of a record header: marker, type byte, int32 total length.
pub const RECORD_HEADER: usize = 10;
/// The loader rejects records shorter than this (spec §1.1).
pub const MIN_RECORD_SIZE: usize = 14;
/// Largest class file accepted; the biggest real one is 2.3 MB.
pub const MAX_CLASS_FILE: usize = 64 << 20;
/// Largest method table accepted; real classes use a few dozen slots.
pub const MAX_METHOD_SLOTS: i32 = 1 << 16;
/// Largest field count accepted.
pub const MAX_OBJECT_SLOTS: i32 = 1 << 16;
/// Largest bulk `classes` container accepted (the 2010 one is under 1 MB).
pub const MAX_BULK_FILE: usize = 256 << 20;
/// Size of a bulk entry's name field.
pub const BULK_NAME_LEN: usize = 512;

/// Why a class file (or a bulk container) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A record does not start with `phfr:`.
    #[error("no record marker at offset {offset}")]
    NoRecordMarker { offset: usize },
    /// A record length is below 14 or past the end of the file.
    #[error("invalid record size {size} at offset {offset}")]
    InvalidRecordSize { offset: usize, size: i64 },
    /// A record body ends before one of its fields.
    #[error("record '{record}' at offset {offset} is truncated reading {what}")]
    Truncated {
        record: char,
        offset: usize,
        what: &'static str,
    },
    /// A record body has bytes left over after its last field.
    #[error("record '{record}' at offset {offset} has {extra} trailing bytes")]
    TrailingBytes {
        record: char,
        offset: usize,
        extra: usize,
    },
    /// A count or size is beyond the loader's caps.
    #[error("{what} {value} is out of range")]
    OutOfRange { what: &'static str, value: i64 },
    /// The file is larger than [`MAX_CLASS_FILE`].
    #[error("class file of {0} bytes is too large")]
    TooLarge(usize),
    /// No `C` record.
    #[error("class file has no class record")]
    NoClassRecord,
    /// A second `C` record.
    #[error("class file has more than one class record")]
    DuplicateClassRecord,
    /// An `M`, `l`, `f` or `c` record before the `C` record.
    #[error("record '{0}' comes before the class record")]
    RecordBeforeClass(char),
    /// A method ordinal outside the method table.
    #[error("method ordinal {ordinal} is outside the {slots}-slot method table")]
    OrdinalOutOfRange { ordinal: i32, slots: i32 },
    /// A bulk container entry is malformed.
    #[error("bulk class container is truncated at offset {0}")]
    BulkTruncated(usize),
}

/// A type descriptor (spec §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeDesc {
    /// `is_container` as written (0 or 1 in practice).
    pub container: i32,
    /// Main class name (empty for untyped or the default array class).
    pub main: Vec<u8>,
    /// Contained class name (arrays).
    pub contained: Vec<u8>,
}

impl TypeDesc {
    /// A scalar type named `main`.
    pub fn scalar(main: &str) -> TypeDesc {
        TypeDesc {
            container: 0,
            main: main.as_bytes().to_vec(),
            contained: Vec::new(),
        }
    }
}

/// One argument of a method signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigArg {
    /// Argument name.
    pub name: Vec<u8>,
    /// Argument type.
    pub ty: TypeDesc,
}

/// One `f` record entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldEntry {
    /// Field name.
    pub name: Vec<u8>,
    /// Field slot.
    pub ordinal: i32,
    /// Field type.
    pub ty: TypeDesc,
}

/// One record, in the form it has on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `C`: class header.
    Class {
        name: Vec<u8>,
        n_object_slots: i32,
        n_method_slots: i32,
        base: Vec<u8>,
        /// Absent in very old files.
        version: Option<Vec<u8>>,
    },
    /// `M`: method bytecode.
    Method {
        name: Vec<u8>,
        ordinal: i32,
        code: Vec<u8>,
    },
    /// `S`: signature (informational). `is_constructor` is `None` in the
    /// old layout without that field.
    Signature {
        name: Vec<u8>,
        ordinal: i32,
        is_constructor: Option<i32>,
        returns: TypeDesc,
        args: Vec<SigArg>,
    },
    /// `l`: IP → line map.
    LineMap {
        ordinal: i32,
        entries: Vec<(i64, i32)>,
    },
    /// `f`: field names.
    Fields(Vec<FieldEntry>),
    /// `c`: constant pool entry.
    Const {
        index: i32,
        ty: TypeDesc,
        value: Vec<u8>,
    },
    /// Any other record type, kept as raw bytes.
    Other { kind: u8, body: Vec<u8> },
}

/// A parsed class file: its records in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassFile {
    /// The records, in file order.
    pub records: Vec<Record>,
}

/// The facts of the `C` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassHeader<'a> {
    /// Class name.
    pub name: &'a [u8],
    /// Number of fields.
    pub n_object_slots: usize,
    /// Size of the method table.
    pub n_method_slots: usize,
    /// Base class name.
    pub base: &'a [u8],
}

impl ClassFile {
    /// The `C` record.
    pub fn header(&self) -> Option<ClassHeader<'_>> {
        self.records.iter().find_map(|r| match r {
            Record::Class {
                name,
                n_object_slots,
                n_method_slots,
                base,
                ..
            } => Some(ClassHeader {
                name,
                n_object_slots: *n_object_slots as usize,
                n_method_slots: *n_method_slots as usize,
                base,
            }),
            _ => None,
        })
    }

    /// The number of arguments the `S` record gives for `ordinal`.
    pub fn arg_count(&self, ordinal: i32) -> Option<usize> {
        self.records.iter().find_map(|r| match r {
            Record::Signature {
                ordinal: o, args, ..
            } if *o == ordinal => Some(args.len()),
            _ => None,
        })
    }
}

struct Body<'a> {
    bytes: &'a [u8],
    pos: usize,
    record: char,
    offset: usize,
}

impl<'a> Body<'a> {
    fn truncated(&self, what: &'static str) -> LoadError {
        LoadError::Truncated {
            record: self.record,
            offset: self.offset,
            what,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LoadError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.truncated(what))?;
        let b = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(b)
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, LoadError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, LoadError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn string(&mut self, what: &'static str) -> Result<Vec<u8>, LoadError> {
        let len = self.i32(what)?;
        let len = usize::try_from(len).map_err(|_| self.truncated(what))?;
        Ok(self.take(len, what)?.to_vec())
    }
    fn ty(&mut self) -> Result<TypeDesc, LoadError> {
        Ok(TypeDesc {
            container: self.i32("type")?,
            main: self.string("type name")?,
            contained: self.string("contained type name")?,
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        let b = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        b
    }
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn finish(&self) -> Result<(), LoadError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(LoadError::TrailingBytes {
                record: self.record,
                offset: self.offset,
                extra,
            }),
        }
    }
}

fn parse_signature(body: &mut Body<'_>, with_flag: bool) -> Result<Record, LoadError> {
    let name = body.string("method name")?;
    let ordinal = body.i32("ordinal")?;
    let n_args = body.i32("argument count")?;
    // Each argument needs at least 16 bytes, which bounds the count.
    if n_args < 0 || n_args as usize > body.remaining() / 16 {
        return Err(LoadError::OutOfRange {
            what: "argument count",
            value: n_args.into(),
        });
    }
    let is_constructor = if with_flag {
        Some(body.i32("constructor flag")?)
    } else {
        None
    };
    let returns = body.ty()?;
    let mut args = Vec::with_capacity(n_args as usize);
    for _ in 0..n_args {
        let name = body.string("argument name")?;
        args.push(SigArg {
            name,
            ty: body.ty()?,
        });
    }
    body.finish()?;
    Ok(Record::Signature {
        name,
        ordinal,
        is_constructor,
        returns,
        args,
    })
}

fn parse_record(kind: u8, mut body: Body<'_>) -> Result<Record, LoadError> {
    Ok(match kind {
        b'C' => {
            let name = body.string("class name")?;
            let n_object_slots = body.i32("field count")?;
            let n_method_slots = body.i32("method count")?;
            let base = body.string("base class name")?;
            let version = if body.remaining() > 0 {
                Some(body.string("version")?)
            } else {
                None
            };
            body.finish()?;
            if !(0..=MAX_OBJECT_SLOTS).contains(&n_object_slots) {
                return Err(LoadError::OutOfRange {
                    what: "field count",
                    value: n_object_slots.into(),
                });
            }
            if !(0..=MAX_METHOD_SLOTS).contains(&n_method_slots) {
                return Err(LoadError::OutOfRange {
                    what: "method count",
                    value: n_method_slots.into(),
                });
            }
            Record::Class {
                name,
                n_object_slots,
                n_method_slots,
                base,
                version,
            }
        }
        b'M' => {
            let name = body.string("method name")?;
            let ordinal = body.i32("ordinal")?;
            Record::Method {
                name,
                ordinal,
                code: body.rest().to_vec(),
            }
        }
        b'S' => {
            // Two dialects (spec §1.3): try the newer layout with the
            // constructor flag, and accept it only if it consumes the whole
            // body with a flag of 0 or 1.
            let start = body.pos;
            match parse_signature(&mut body, true) {
                Ok(
                    r @ Record::Signature {
                        is_constructor: Some(0 | 1),
                        ..
                    },
                ) => r,
                _ => {
                    body.pos = start;
                    parse_signature(&mut body, false)?
                }
            }
        }
        b'l' => {
            let ordinal = body.i32("ordinal")?;
            let count = body.i32("line count")?;
            if count < 0 || count as usize > body.remaining() / 12 {
                return Err(LoadError::OutOfRange {
                    what: "line count",
                    value: count.into(),
                });
            }
            let mut entries = Vec::with_capacity(count as usize);
            for _ in 0..count {
                entries.push((body.i64("ip")?, body.i32("line")?));
            }
            body.finish()?;
            Record::LineMap { ordinal, entries }
        }
        b'f' => {
            let mut entries = Vec::new();
            while body.remaining() > 0 {
                let name = body.string("field name")?;
                let ordinal = body.i32("field ordinal")?;
                entries.push(FieldEntry {
                    name,
                    ordinal,
                    ty: body.ty()?,
                });
            }
            Record::Fields(entries)
        }
        b'c' => {
            let index = body.i32("pool index")?;
            let ty = body.ty()?;
            Record::Const {
                index,
                ty,
                value: body.rest().to_vec(),
            }
        }
        other => Record::Other {
            kind: other,
            body: body.rest().to_vec(),
        },
    })
}

/// Parses a class file, checking every length and the record order rules of
/// spec §1.4 that the VM depends on.
pub fn parse(bytes: &[u8]) -> Result<ClassFile, LoadError> {
    if bytes.len() > MAX_CLASS_FILE {
        return Err(LoadError::TooLarge(bytes.len()));
    }
    let mut records = Vec::new();
    let mut offset = 0;
    let mut slots: Option<i32> = None;
    while offset < bytes.len() {
        if bytes.len() - offset < RECORD_HEADER || &bytes[offset..offset + 5] != RECORD_MARKER {
            return Err(LoadError::NoRecordMarker { offset });
        }
        let kind = bytes[offset + 5];
        let l = &bytes[offset + 6..offset + 10];
        let size = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
        if size < MIN_RECORD_SIZE as i32 || size as usize > bytes.len() - offset {
            return Err(LoadError::InvalidRecordSize {
                offset,
                size: size.into(),
            });
        }
        let end = offset + size as usize;
        let body = Body {
            bytes: &bytes[offset + RECORD_HEADER..end],
            pos: 0,
            record: kind as char,
            offset,
        };
        let record = parse_record(kind, body)?;
        match &record {
            Record::Class { n_method_slots, .. } => {
                if slots.is_some() {
                    return Err(LoadError::DuplicateClassRecord);
                }
                slots = Some(*n_method_slots);
            }
            Record::Method { ordinal, .. } => match slots {
                None => return Err(LoadError::RecordBeforeClass('M')),
                Some(s) if *ordinal < 0 || *ordinal >= s => {
                    return Err(LoadError::OrdinalOutOfRange {
                        ordinal: *ordinal,
                        slots: s,
                    });
                }
                Some(_) => {}
            },
            Record::LineMap { .. } | Record::Fields(_) | Record::Const { .. }
                if slots.is_none() =>
            {
                return Err(LoadError::RecordBeforeClass(kind as char));
            }
            _ => {}
        }
        records.push(record);
        offset = end;
    }
    if slots.is_none() {
        return Err(LoadError::NoClassRecord);
    }
    Ok(ClassFile { records })
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_i32(out, s.len() as i32);
    out.extend_from_slice(s);
}

fn put_ty(out: &mut Vec<u8>, t: &TypeDesc) {
    put_i32(out, t.container);
    put_str(out, &t.main);
    put_str(out, &t.contained);
}

/// Writes one record (header included).
pub fn write_record(out: &mut Vec<u8>, record: &Record) {
    let start = out.len();
    let kind = match record {
        Record::Class { .. } => b'C',
        Record::Method { .. } => b'M',
        Record::Signature { .. } => b'S',
        Record::LineMap { .. } => b'l',
        Record::Fields(_) => b'f',
        Record::Const { .. } => b'c',
        Record::Other { kind, .. } => *kind,
    };
    out.extend_from_slice(RECORD_MARKER);
    out.push(kind);
    put_i32(out, 0);
    match record {
        Record::Class {
            name,
            n_object_slots,
            n_method_slots,
            base,
            version,
        } => {
            put_str(out, name);
            put_i32(out, *n_object_slots);
            put_i32(out, *n_method_slots);
            put_str(out, base);
            if let Some(v) = version {
                put_str(out, v);
            }
        }
        Record::Method {
            name,
            ordinal,
            code,
        } => {
            put_str(out, name);
            put_i32(out, *ordinal);
            out.extend_from_slice(code);
        }
        Record::Signature {
            name,
            ordinal,
            is_constructor,
            returns,
            args,
        } => {
            put_str(out, name);
            put_i32(out, *ordinal);
            put_i32(out, args.len() as i32);
            if let Some(flag) = is_constructor {
                put_i32(out, *flag);
            }
            put_ty(out, returns);
            for a in args {
                put_str(out, &a.name);
                put_ty(out, &a.ty);
            }
        }
        Record::LineMap { ordinal, entries } => {
            put_i32(out, *ordinal);
            put_i32(out, entries.len() as i32);
            for (ip, line) in entries {
                out.extend_from_slice(&ip.to_be_bytes());
                put_i32(out, *line);
            }
        }
        Record::Fields(entries) => {
            for f in entries {
                put_str(out, &f.name);
                put_i32(out, f.ordinal);
                put_ty(out, &f.ty);
            }
        }
        Record::Const { index, ty, value } => {
            put_i32(out, *index);
            put_ty(out, ty);
            out.extend_from_slice(value);
        }
        Record::Other { body, .. } => out.extend_from_slice(body),
    }
    let len = (out.len() - start) as i32;
    out[start + 6..start + 10].copy_from_slice(&len.to_be_bytes());
}

/// Writes a whole class file.
pub fn write(class: &ClassFile) -> Vec<u8> {
    let mut out = Vec::new();
    for r in &class.records {
        write_record(&mut out, r);
    }
    out
}

/// Splits a bulk `classes` container (spec §1.6) into (name, bytes) pairs.
/// Names are as stored: without the leading dot.
pub fn parse_bulk(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, LoadError> {
    if bytes.len() > MAX_BULK_FILE {
        return Err(LoadError::TooLarge(bytes.len()));
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes.len() - pos < BULK_NAME_LEN + 4 {
            return Err(LoadError::BulkTruncated(pos));
        }
        let raw = &bytes[pos..pos + BULK_NAME_LEN];
        let name_len = raw.iter().position(|&b| b == 0).unwrap_or(BULK_NAME_LEN);
        let name = String::from_utf8_lossy(&raw[..name_len]).into_owned();
        let l = &bytes[pos + BULK_NAME_LEN..pos + BULK_NAME_LEN + 4];
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let start = pos + BULK_NAME_LEN + 4;
        if len > bytes.len() - start {
            return Err(LoadError::BulkTruncated(pos));
        }
        out.push((name, bytes[start..start + len].to_vec()));
        pos = start + len;
    }
    Ok(out)
}

/// Builds a bulk container from (name, bytes) pairs (the mkbulk layout).
pub fn write_bulk(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in entries {
        let mut field = [0u8; BULK_NAME_LEN];
        let n = name.trim_start_matches(['.', '/']).as_bytes();
        let n = &n[..n.len().min(BULK_NAME_LEN - 1)];
        field[..n.len()].copy_from_slice(n);
        out.extend_from_slice(&field);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Compares class names the way the bulk loader does (spec §1.6): a leading
/// `.` or `/` is ignored and `.` equals `/`; optionally ignoring ASCII case.
pub fn names_match(a: &str, b: &str, ignore_case: bool) -> bool {
    let norm = |s: &str| {
        let s = s.strip_prefix(['.', '/']).unwrap_or(s);
        let s = s.strip_suffix(".pc").unwrap_or(s);
        s.bytes()
            .map(|c| if c == b'/' { b'.' } else { c })
            .collect::<Vec<u8>>()
    };
    let (a, b) = (norm(a), norm(b));
    if ignore_case {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 319-byte `phantom.user.pc` of spec §1.7, rebuilt from its fields.
    fn phantom_user() -> Vec<u8> {
        let mut code = vec![
            0x23, 0, 0, 0, 0, 0x45, 0x05, 0, 0, 0, 0x2d, 0x24, 0, 0, 0, 35,
        ];
        code.extend_from_slice(b"arg count: getName in .phantom.user");
        code.extend([0x2f, 0x28, 0, 0, 0, 0, 0x08, 0x08]);
        let class = ClassFile {
            records: vec![
                Record::Class {
                    name: b".phantom.user".to_vec(),
                    n_object_slots: 0,
                    n_method_slots: 17,
                    base: b".internal.object".to_vec(),
                    version: Some(b"20170915052644241".to_vec()),
                },
                Record::Method {
                    name: b"getName".to_vec(),
                    ordinal: 16,
                    code,
                },
                Record::Signature {
                    name: b"getName".to_vec(),
                    ordinal: 16,
                    is_constructor: Some(0),
                    returns: TypeDesc::scalar(".internal.string"),
                    args: vec![],
                },
                Record::LineMap {
                    ordinal: 16,
                    entries: vec![(52, 24), (57, 24)],
                },
                Record::Const {
                    index: 0,
                    ty: TypeDesc::scalar(".internal.string"),
                    value: b"undefined.user".to_vec(),
                },
            ],
        };
        write(&class)
    }

    #[test]
    fn spec_worked_example_layout() {
        let bytes = phantom_user();
        assert_eq!(bytes.len(), 319);
        assert_eq!(&bytes[0x006..0x00A], &[0, 0, 0, 0x4c]);
        assert_eq!(&bytes[0x052..0x056], &[0, 0, 0, 0x54]);
        assert_eq!(&bytes[0x0A6..0x0AA], &[0, 0, 0, 0x3d]);
        assert_eq!(&bytes[0x0E3..0x0E7], &[0, 0, 0, 0x2a]);
        assert_eq!(&bytes[0x10D..0x111], &[0, 0, 0, 0x38]);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(write(&parsed), bytes);
        assert_eq!(parsed.header().unwrap().n_method_slots, 17);
    }

    #[test]
    fn old_signature_layout_is_recognised() {
        // Spec §1.7: Loops.runTest has no constructor flag; length 54.
        let r = Record::Signature {
            name: b"runTest".to_vec(),
            ordinal: 16,
            is_constructor: None,
            returns: TypeDesc::scalar(".internal.int"),
            args: vec![],
        };
        let mut bytes = Vec::new();
        write_record(
            &mut bytes,
            &Record::Class {
                name: b".a".to_vec(),
                n_object_slots: 0,
                n_method_slots: 17,
                base: b".internal.object".to_vec(),
                version: None,
            },
        );
        let at = bytes.len();
        write_record(&mut bytes, &r);
        assert_eq!(bytes.len() - at, 54);
        assert_eq!(parse(&bytes).unwrap().records[1], r);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = phantom_user();
        // Cuts at record boundaries after the class record are valid files.
        let boundaries = [0x4C, 0xA0, 0xDD, 0x107];
        for n in 0..bytes.len() {
            let parsed = parse(&bytes[..n]);
            assert_eq!(
                parsed.is_ok(),
                boundaries.contains(&n),
                "prefix {n}: {parsed:?}"
            );
        }
    }

    #[test]
    fn bulk_round_trip_and_lookup() {
        let a = phantom_user();
        let bulk = write_bulk(&[(".phantom.user", &a)]);
        let entries = parse_bulk(&bulk).unwrap();
        assert_eq!(entries, vec![("phantom.user".to_string(), a)]);
        assert!(names_match(".phantom.user", "phantom/user", false));
        assert!(names_match(".Phantom.User", "phantom.user.pc", true));
        assert!(!names_match(".Phantom.User", "phantom.user", false));
        assert!(parse_bulk(&bulk[..bulk.len() - 1]).is_err());
    }
}
