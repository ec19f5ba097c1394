//! Random bytes never panic the loader, the disassembler or the
//! interpreter. `PVM_FUZZ_CASES=100000` runs longer.

use pvm::VmConfig;

use crate::{REGRESSION_TESTS, file, start_method};

/// A xorshift generator: the same cases on every run.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How many cases (`PVM_FUZZ_CASES`, 1500 by default).
pub fn cases() -> u64 {
    std::env::var("PVM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500)
}

#[test]
fn loader_and_disassembler_survive_garbage() {
    let (_, valid) = file(".ru.dz.phantom.system.regression_tests", REGRESSION_TESTS);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..cases() {
        let mut bytes = valid.clone();
        match rng.below(3) {
            0 => {
                for _ in 0..=rng.below(8) {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] = rng.next() as u8;
                }
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
            _ => bytes = (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        }
        let _ = pvm::classfile::parse(&bytes);
        let _ = pvm::disasm::disassemble(&bytes);
        let _ = pvm::classfile::parse_bulk(&bytes);
    }
}

#[test]
fn interpreter_survives_random_code() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let opcodes: Vec<u8> = pvm::opcode::ALL.iter().map(|i| i.code).collect();
    for _ in 0..cases() / 3 {
        let mut code = Vec::new();
        for _ in 0..rng.below(40) {
            match rng.below(4) {
                0 => code.push(rng.next() as u8),
                1 => code.extend_from_slice(&(rng.below(8) as i32).to_be_bytes()),
                _ => code.push(opcodes[rng.below(opcodes.len() as u64) as usize]),
            }
        }
        let mut text =
            "class \".t.f\" fields 4 methods 20 base \".internal.object\"\nmethod \"m\" 16\n"
                .to_string();
        text += &format!("    raw {}\nend\n", pvm::disasm::quote(&code));
        let config = VmConfig {
            max_call_depth: 64,
            ..VmConfig::default()
        };
        let Some(mut p) = start_method(".t.f", &text, 16, config) else {
            continue;
        };
        let mut out = Vec::new();
        for _ in 0..5 {
            let _ = p.run_slice(0, 2_000, &mut out);
        }
    }
}

/// A class `.t.f` of three methods (16, 17, 18) of random but well-formed
/// instructions (operands of the right shape and small values), so calls,
/// jumps, natives and prefixes are reached. Each method ends with `ret`.
pub fn random_well_formed_class(rng: &mut Rng) -> String {
    use pvm::opcode::{ALL, Operands};
    let mut methods = Vec::new();
    for _ in 0..3 {
        let mut code = Vec::new();
        for _ in 0..rng.below(30) {
            let info = ALL[rng.below(ALL.len() as u64) as usize];
            code.push(info.code);
            let small = |rng: &mut Rng| (rng.below(10) as i32 - 2).to_be_bytes();
            match info.operands {
                Operands::None => {}
                Operands::U8 => code.push(rng.below(20) as u8),
                Operands::I32 => code.extend_from_slice(&small(rng)),
                Operands::I64 => code.extend_from_slice(&(rng.next() as i64).to_be_bytes()),
                Operands::Rel32 => {
                    code.extend_from_slice(&(rng.below(40) as i32 - 20).to_be_bytes())
                }
                Operands::Str => {
                    let s: &[u8] =
                        [&b".t.f"[..], b".internal.int", b"m", b"x"][rng.below(4) as usize];
                    code.extend_from_slice(&(s.len() as i32).to_be_bytes());
                    code.extend_from_slice(s);
                }
                Operands::U8U8 => code.extend([rng.below(3) as u8, rng.below(3) as u8]),
                Operands::U8I32 => {
                    code.push(rng.below(20) as u8);
                    code.extend_from_slice(&small(rng));
                }
                Operands::I32I32 => {
                    code.extend_from_slice(&small(rng));
                    code.extend_from_slice(&small(rng));
                }
                Operands::Debug => code.push(rng.below(3) as u8),
                Operands::Switch => {
                    code.extend_from_slice(&2i32.to_be_bytes());
                    code.extend_from_slice(&small(rng));
                    code.extend_from_slice(&small(rng));
                    code.extend_from_slice(&(rng.below(40) as i32 - 20).to_be_bytes());
                    code.extend_from_slice(&(rng.below(40) as i32 - 20).to_be_bytes());
                }
            }
        }
        code.push(0x08);
        methods.push(code);
    }
    let mut text = "class \".t.f\" fields 4 methods 20 base \".internal.object\"\n".to_string();
    for (i, code) in methods.iter().enumerate() {
        text += &format!(
            "method \"m\" {}\n    raw {}\nend\n",
            16 + i,
            pvm::disasm::quote(code)
        );
    }
    text
}

/// Random but well-formed instructions, run for a while.
#[test]
fn interpreter_survives_random_well_formed_code() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..cases() / 3 {
        let text = random_well_formed_class(&mut rng);
        let config = VmConfig {
            max_call_depth: 64,
            quantum: 500,
            ..VmConfig::default()
        };
        let Some(mut p) = start_method(".t.f", &text, 16, config) else {
            continue;
        };
        let mut out = Vec::new();
        for i in 0..4 {
            let _ = p.run_slice(i * 1_000_000, 1_000, &mut out);
        }
    }
}
