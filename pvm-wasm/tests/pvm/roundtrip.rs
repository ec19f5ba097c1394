//! One opcode table drives assembler and disassembler: `disasm(asm(x)) == x`
//! for a corpus that covers every opcode and every record type.

use pvm::asm::assemble;
use pvm::disasm::disassemble;
use pvm::opcode::{ALL, Operands};

use crate::{BOOT, REGRESSION_TESTS, class_text};

/// Every opcode with sample operands, every record type and both `S` layouts.
fn corpus() -> String {
    let mut t = String::from(
        "class \".t.all\" fields 3 methods 20 base \".internal.object\" version \"20170915052644241\"\nmethod \"all\" 16\nLstart:\n",
    );
    for info in ALL {
        let operands = match info.operands {
            Operands::None => String::new(),
            Operands::U8 => " 200".into(),
            Operands::I32 => " -123456".into(),
            Operands::I64 => " -9000000000".into(),
            Operands::Rel32 => " Lstart".into(),
            Operands::Str => " \"a \\\"quoted\\\" \\x00\\xff string\\n\"".into(),
            Operands::U8U8 => " 3 4".into(),
            Operands::U8I32 => " 7 2".into(),
            Operands::I32I32 => " 40 3".into(),
            Operands::Debug => " 129 \"dbg\"".into(),
            Operands::Switch => " 1 2 Lstart Lend %3".into(),
        };
        t += &format!("    {}{operands}\n", info.mnemonic);
    }
    t += "    debug 1\n    jmp %-1\nLend:\n    raw \"\\x9f\\x01\"\nend\n";
    t += "method \"empty\" 17\nend\n";
    t += "signature \"all\" 16 ctor 1 returns \".internal.string\" args \"a\" \".internal.int\" \"b\" \"\"[\".internal.void\"]\n";
    t += "signature \"old\" 17 returns {2 \"x\" \"y\"}\n";
    t += "linemap 16 52 24 57 24\nlinemap 17\n";
    t += "field \"boot_object\" 0 \"\" \"test_array\" 4 \"\"[\".internal.void\"]\n";
    t += "const 0 \".internal.string\" \"undefined.user\"\nconst 1 \".internal.int\" \"\\x00\\x01\"\n";
    t += "record 0x78 \"anything\"\n";
    t
}

#[test]
fn corpus_round_trips_exactly() {
    let bytes = assemble(&corpus()).unwrap();
    let canonical = disassemble(&bytes).unwrap();
    // The canonical text is a fixed point: disasm(asm(x)) == x.
    assert_eq!(
        disassemble(&assemble(&canonical).unwrap()).unwrap(),
        canonical
    );
    assert_eq!(assemble(&canonical).unwrap(), bytes);
    for info in ALL {
        assert!(
            canonical.contains(&format!("    {}", info.mnemonic)),
            "{} missing",
            info.mnemonic
        );
    }
    for directive in [
        "class",
        "method",
        "signature",
        "linemap",
        "field",
        "const",
        "record",
        "raw",
        "ctor",
    ] {
        assert!(canonical.contains(directive), "{directive} missing");
    }
}

#[test]
fn test_classes_round_trip() {
    for text in [REGRESSION_TESTS, BOOT, &pvm::bench::bench_class_text(10)] {
        let bytes = assemble(text).unwrap();
        let canonical = disassemble(&bytes).unwrap();
        assert_eq!(
            assemble(&canonical).unwrap(),
            bytes,
            "{}",
            class_text(&bytes)
        );
        assert_eq!(
            disassemble(&assemble(&canonical).unwrap()).unwrap(),
            canonical
        );
    }
}

#[test]
fn spec_sample_disassembly() {
    // Spec §1.7: getName's bytecode.
    let text = "class \".phantom.user\" fields 0 methods 17 base \".internal.object\" version \"20170915052644241\"\n\
                method \"getName\" 16\n    iconst_32bit 0\n    isublu\n    jz L52\n    \
                sconst_bin \"arg count: getName in .phantom.user\"\n    throw\nL52:\n    const_pool 0\n    ret\n    ret\nend\n\
                signature \"getName\" 16 ctor 0 returns \".internal.string\"\nlinemap 16 52 24 57 24\n\
                const 0 \".internal.string\" \"undefined.user\"\n";
    let bytes = assemble(text).unwrap();
    assert_eq!(bytes.len(), 319);
    assert_eq!(
        &bytes[0x65..0x70],
        &[0x23, 0, 0, 0, 0, 0x45, 0x05, 0, 0, 0, 0x2d]
    );
    assert_eq!(disassemble(&bytes).unwrap(), text);
    // And it runs: getName returns the pooled constant.
    let files = vec![("phantom.user.pc".to_string(), bytes)];
    let caller = "class \".t.c\" fields 1 methods 9 base \".internal.object\"\nmethod \"main\" 8\n    \
                  os_get32 0\n    summon_by_name \".phantom.user\"\n    new\n    call_10 0\n    call_10 1\n    ret\nend\n\
                  signature \"main\" 8 returns \"\" args \"b\" \"\"\n";
    let mut files = files;
    files.push(crate::file(".t.c", caller));
    let (o, out) = crate::run(
        &["--class", ".t.c", "--method", "8"],
        files,
        pvm::VmConfig::default(),
    );
    assert_eq!(out, "undefined.user");
    assert_eq!(o, pvm::SliceOutcome::Finished { exit_code: 0 });
}

#[test]
fn bulk_containers_disassemble_entry_by_entry() {
    let boot = assemble(BOOT).unwrap();
    let bulk = pvm::classfile::write_bulk(&[("ru.dz.phantom.system.boot", &boot), ("junk", b"xx")]);
    let text = pvm::disasm::disassemble_any(&bulk).unwrap();
    assert!(text.starts_with(
        "; bulk entry ru.dz.phantom.system.boot\nclass \".ru.dz.phantom.system.boot\""
    ));
    assert!(
        text.ends_with("; bulk entry junk\n; error: no record marker at offset 0\n"),
        "{text}"
    );
    assert_eq!(
        pvm::disasm::disassemble_any(&boot).unwrap(),
        disassemble(&boot).unwrap()
    );
}
