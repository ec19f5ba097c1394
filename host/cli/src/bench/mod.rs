//! `phantom bench`: checkpoint pause, restore time and PVM speed, as JSON,
//! each with its baseline measured in the same run.
//!
//! ```text
//!   checkpoint.rs  capture pause vs a full copy (StandaloneMemory plays the guest)
//!   restore.rs     restore to first event, lazy vs eager (a spawned memtouch image)
//!   pvm.rs         PVM bytecodes/s natively vs inside the component (drive loop)
//!   wasi.rs        restore with 100 WASI handles vs none; println! vs console.write
//!   guest_pause.rs checkpoint pause of a C guest vs a Rust guest, same dirty pages
//!   journal.rs     durable messages/s vs Redis (appendfsync always), dispatch
//!                  journal on/off vs plain wasmtime, recovery vs journal length
//!   travel.rs      export and import throughput vs cp of the same bytes
//!   migrate.rs     live migration's downtime and bytes vs a stop-and-copy
//!   devices.rs     GPIO and I2C host calls vs the backend directly; restore
//!                  with 16 open pins vs none
//! ```

mod checkpoint;
mod devices;
mod guest_pause;
mod history;
mod journal;
mod migrate;
mod pvm;
mod restore;
mod travel;
mod wasi;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

/// `phantom bench ...`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Stop-the-world pause of an incremental checkpoint vs a full copy.
    Checkpoint(checkpoint::CheckpointBenchArgs),
    /// Restore time of a spawned image, to the first event handled.
    Restore(restore::RestoreBenchArgs),
    /// PVM bytecodes per second, natively and inside the Wasm component.
    Pvm(pvm::PvmBenchArgs),
    /// Restore with WASI handles vs none; println! vs console.write.
    Wasi(wasi::WasiBenchArgs),
    /// Checkpoint pause of a C guest vs a Rust guest, same dirty pages.
    GuestPause(guest_pause::GuestPauseBenchArgs),
    /// Durable messages/s vs Redis, dispatch cost, recovery time.
    Journal(journal::JournalBenchArgs),
    /// GPIO and I2C host calls vs the backend directly; restore with 16 open pins vs none.
    Devices(devices::DevicesBenchArgs),
    /// Export and import throughput against cp of the same bytes.
    Travel(travel::TravelBenchArgs),
    /// Bytes of 100 kept checkpoints (1% change): content addressing vs chains.
    History(history::HistoryBenchArgs),
    /// Live migration: downtime and bytes sent, against a stop-and-copy.
    Migrate(migrate::MigrateBenchArgs),
}

/// Runs a benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Checkpoint(a) => checkpoint::run(&a)?,
        BenchCommand::Restore(a) => restore::run(&a)?,
        BenchCommand::Wasi(a) => wasi::run(&a)?,
        BenchCommand::GuestPause(a) => guest_pause::run(&a)?,
        BenchCommand::Journal(a) => journal::run(&a)?,
        BenchCommand::Travel(a) => travel::run(&a)?,
        BenchCommand::Devices(a) => devices::run(&a)?,
        BenchCommand::History(a) => history::run(&a)?,
        BenchCommand::Migrate(a) => migrate::run(&a)?,
        BenchCommand::Pvm(a) => {
            let component = crate::pvm_component(a.component.clone())?;
            pvm::run(&a, &component)?
        }
    };
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn tempdir() -> anyhow::Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("phantom-bench-{}-{}", std::process::id(), nonce()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A number that differs between calls, for temporary names.
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(t) << 16 | N.fetch_add(1, Ordering::Relaxed)
}
