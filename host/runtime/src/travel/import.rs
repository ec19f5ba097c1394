//! `phantom import`: a bundle becomes a process of a data directory, and
//! only once everything in it has been checked.
//!
//! The records stream into `DATA/.import.spawning-PID/NAME`, a private data
//! directory of their own (so the trial restore's compile cache lands
//! there too); a crash leaves only that hidden directory, which the next
//! spawn, import or run removes. Nothing under DATA changes before the
//! final rename, and a refused bundle leaves DATA as it was.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use phantom_snapshots::CheckpointStore;
use phantom_snapshots::bundle::{BundleReader, RecordKind};
use serde::Serialize;

use super::{COMPONENT, FAILURE, JOURNAL, METADATA, TravelError, io, newer_version};
use crate::component::cache_dir;
use crate::datadir::{DataDir, HandOver, hand_over};
use crate::journal::log::{Log, LogConfig, MAX_ENTRY_BYTES};
use crate::journal::{Entry, journal_dir};
use crate::process::{Process, ProcessMeta, spawning_dir, valid_name};
use crate::runtime::Runtime;

/// What an import did.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    /// The process's name in the target.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The checkpoint it restores from, and every checkpoint it brought.
    pub checkpoint: u64,
    pub checkpoints: Vec<u64>,
    /// Journal entries after the checkpoint (replayed by the trial restore
    /// and again when it runs).
    pub journal_entries: u64,
    /// Bytes of the bundle.
    pub bytes: u64,
    /// The `phantom` version that wrote the bundle.
    pub producer: String,
    /// The process came marked failed (it is imported so, not restored).
    pub failed: bool,
    /// A host was running the data directory: what became of the hand-over.
    #[serde(skip)]
    pub handed_over: Option<HandOver>,
    /// Its grants of this host's own hardware (`linux:` devices), as
    /// `kind.name.field = linux:...`.
    pub host_devices: Vec<String>,
}

/// Imports the bundle read from `input` into data directory `data` (made if
/// missing), as `as_name` or under the name it carries. `progress` sees the
/// bundle's bytes read so far. A bundle whose device manifest grants this
/// host's hardware (`linux:` devices) is refused unless
/// `allow_host_devices`: a bundle from elsewhere does not give itself the
/// machine's pins, buses and ports.
pub fn import(
    rt: &Runtime,
    data: &Path,
    input: &mut dyn Read,
    as_name: Option<&str>,
    allow_host_devices: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, TravelError> {
    if let Some(name) = as_name
        && !valid_name(name)
    {
        return Err(TravelError::InvalidName(name.into()));
    }
    let created = !data.exists();
    let data_dir = DataDir::create(data)?;
    if data_dir.lock_holder().is_none() {
        data_dir.clean_stale_spawns();
    }
    let tmp = spawning_dir(data, "import", std::process::id());
    let _ = fs::remove_dir_all(&tmp);
    let result = fs::create_dir(&tmp)
        .map_err(io(format!("cannot create {}", tmp.display())))
        .and_then(|()| {
            import_into(
                rt,
                &data_dir,
                &tmp,
                input,
                as_name,
                allow_host_devices,
                progress,
            )
        });
    let _ = fs::remove_dir_all(&tmp);
    match result {
        Ok(mut report) => {
            report.handed_over = hand_over(&data_dir, &report.name);
            Ok(report)
        }
        Err(e) => {
            if created {
                // Only if still empty: nothing of anyone else is removed.
                let _ = fs::remove_dir(data);
            }
            Err(e)
        }
    }
}

/// Streams one record's payload into a new file and makes it durable.
fn write_file<R: Read>(
    reader: &mut BundleReader<R>,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), TravelError> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(format!("cannot create {}", path.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    reader.copy_payload(&mut out, progress)?;
    let file = out
        .into_inner()
        .map_err(|e| io(format!("cannot write {}", path.display()))(e.into_error()))?;
    file.sync_all()
        .map_err(io(format!("cannot sync {}", path.display())))
}

fn read_small<R: Read>(
    reader: &mut BundleReader<R>,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<u8>, TravelError> {
    let mut bytes = Vec::new();
    reader.copy_payload(&mut bytes, progress)?;
    Ok(bytes)
}

fn import_into(
    rt: &Runtime,
    data: &DataDir,
    tmp: &Path,
    input: &mut dyn Read,
    as_name: Option<&str>,
    allow_host_devices: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, TravelError> {
    let invalid = |why: String| TravelError::Invalid(why);
    let mut reader = BundleReader::new(input)?;
    let producer = reader.header().producer.clone();
    let ours = env!("CARGO_PKG_VERSION");
    if super::version_parts(&producer).is_none() {
        return Err(invalid(format!(
            "its producer field {producer:?} is not a phantom version (like {ours})"
        )));
    }
    if newer_version(&producer, ours) {
        return Err(TravelError::Newer { producer, ours });
    }
    let exists = |name: &str| -> Result<(), TravelError> {
        if data.path().join(name).exists() {
            return Err(TravelError::Exists {
                name: name.into(),
                data: data.path().to_path_buf(),
            });
        }
        Ok(())
    };
    if let Some(name) = as_name {
        exists(name)?;
    }

    // The records, each checked as it arrives.
    let mut meta: Option<(ProcessMeta, PathBuf)> = None;
    let mut component = false;
    let mut checkpoints: Vec<u64> = Vec::new();
    let mut packs = std::collections::BTreeSet::new();
    let mut journal: Option<PathBuf> = None;
    let mut failed = false;
    let mut settings = std::collections::BTreeSet::new();
    while let Some(head) = reader.next_record()? {
        let expected_name = match head.kind {
            RecordKind::Metadata => Some(METADATA),
            RecordKind::Component => Some(COMPONENT),
            RecordKind::Journal => Some(JOURNAL),
            RecordKind::Failure => Some(FAILURE),
            RecordKind::Checkpoint | RecordKind::Pages | RecordKind::Setting => None,
        };
        if let Some(n) = expected_name
            && head.name != n
        {
            return Err(invalid(format!(
                "record {} is a {} record named '{}' (it must be named '{n}')",
                head.index,
                head.kind.as_str(),
                head.name
            )));
        }
        let Some((_, stage)) = &meta else {
            if head.kind != RecordKind::Metadata {
                return Err(invalid(format!(
                    "its first record is {} '{}', not the process metadata",
                    head.kind.as_str(),
                    head.name
                )));
            }
            let bytes = read_small(&mut reader, progress)?;
            let mut m: ProcessMeta = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("its process.json cannot be read: {e}")))?;
            let name = as_name.map(String::from).unwrap_or_else(|| m.name.clone());
            if !valid_name(&name) {
                return Err(TravelError::InvalidName(name));
            }
            exists(&name)?;
            m.name = name;
            let stage = tmp.join(&m.name);
            fs::create_dir(&stage).map_err(io(format!("cannot create {}", stage.display())))?;
            meta = Some((m, stage));
            continue;
        };
        let stage = stage.clone();
        let once = |seen: bool| -> Result<(), TravelError> {
            if seen {
                return Err(TravelError::Invalid(format!(
                    "it has a second {} record (record {})",
                    head.kind.as_str(),
                    head.index
                )));
            }
            Ok(())
        };
        match head.kind {
            RecordKind::Metadata => once(true)?,
            RecordKind::Component => {
                once(component)?;
                write_file(&mut reader, &stage.join(COMPONENT), progress)?;
                component = true;
            }
            RecordKind::Checkpoint => {
                let id = CheckpointStore::id_of_name(&head.name)
                    .filter(|&id| CheckpointStore::file_name(id) == head.name)
                    .ok_or_else(|| {
                        invalid(format!(
                            "record {} is a checkpoint named '{}', which is not a checkpoint file name",
                            head.index, head.name
                        ))
                    })?;
                if checkpoints.contains(&id) {
                    return Err(invalid(format!(
                        "it holds checkpoint {id} twice (record {})",
                        head.index
                    )));
                }
                write_file(&mut reader, &stage.join(&head.name), progress)?;
                checkpoints.push(id);
            }
            RecordKind::Pages => {
                let seq = phantom_snapshots::pages::parse_pack_name(&head.name)
                    .filter(|&s| phantom_snapshots::pages::pack_name(s) == head.name)
                    .ok_or_else(|| {
                        invalid(format!(
                            "record {} is a page pack named '{}', which is not a pack file name",
                            head.index, head.name
                        ))
                    })?;
                if !packs.insert(seq) {
                    return Err(invalid(format!(
                        "it holds page pack {seq} twice (record {})",
                        head.index
                    )));
                }
                write_file(&mut reader, &stage.join(&head.name), progress)?;
            }
            RecordKind::Journal => {
                once(journal.is_some())?;
                let path = tmp.join("journal.bundle");
                write_file(&mut reader, &path, progress)?;
                journal = Some(path);
            }
            RecordKind::Setting => {
                if !super::BUNDLE_SETTINGS.contains(&head.name.as_str()) {
                    return Err(invalid(format!(
                        "record {} is a settings record named '{}' (one of {} expected)",
                        head.index,
                        head.name,
                        super::BUNDLE_SETTINGS.join(", ")
                    )));
                }
                once(!settings.insert(head.name.clone()))?;
                let bytes = read_small(&mut reader, progress)?;
                super::check_setting(&head.name, &bytes).map_err(invalid)?;
                let path = stage.join(&head.name);
                fs::write(&path, &bytes).map_err(io(format!("cannot write {}", path.display())))?;
            }
            RecordKind::Failure => {
                once(failed)?;
                let bytes = read_small(&mut reader, progress)?;
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map_err(|e| invalid(format!("its failed.json cannot be read: {e}")))?;
                let path = stage.join(FAILURE);
                fs::write(&path, &bytes).map_err(io(format!("cannot write {}", path.display())))?;
                failed = true;
            }
        }
    }
    let bytes = reader.offset();
    let Some((meta, stage)) = meta else {
        return Err(invalid("it holds no records".into()));
    };
    if !component {
        return Err(invalid("it holds no component".into()));
    }
    if checkpoints.is_empty() {
        return Err(invalid("it holds no checkpoint".into()));
    }
    // This host's hardware: only when the importer says so.
    let host_devices = match fs::read_to_string(stage.join(crate::process::DEVICES_FILE)) {
        Ok(text) => phantom_devices::DeviceManifest::parse(&text)
            .map(|m| m.host_devices())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    if !host_devices.is_empty() && !allow_host_devices {
        return Err(TravelError::Refused(format!(
            "'{}' would be granted this host's own devices ({}): import it with --allow-host-devices if it should have them",
            meta.name,
            host_devices.join(", ")
        )));
    }

    // The component: a persistent-process component this host can compile
    // (compiled into the private cache, moved along on success).
    let component_path = stage.join(COMPONENT);
    let component_bytes = fs::read(&component_path)
        .map_err(io(format!("cannot read {}", component_path.display())))?;
    if component_bytes.len() as u64 != meta.component_bytes {
        return Err(invalid(format!(
            "its process.json says the component has {} bytes, and it has {}",
            meta.component_bytes,
            component_bytes.len()
        )));
    }
    seed_cache(&cache_dir(data.path()), &cache_dir(tmp));
    rt.load_component(&component_bytes, Some(&cache_dir(tmp)))
        .map_err(|e| invalid(format!("its component cannot be used: {e}")))?;
    drop(component_bytes);
    let meta_path = stage.join(METADATA);
    let meta_json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
    fs::write(&meta_path, meta_json)
        .map_err(io(format!("cannot write {}", meta_path.display())))?;

    // The images: every file deep (checksums and decompression), and the
    // newest one's chain whole.
    let store = CheckpointStore::open(&stage).map_err(|e| invalid(e.to_string()))?;
    let report = store.fsck().map_err(|e| invalid(e.to_string()))?;
    if !report.is_clean() {
        let problems: Vec<String> = report.problems().iter().map(|p| p.to_string()).collect();
        return Err(invalid(format!(
            "its checkpoints are damaged: {}",
            problems.join("; ")
        )));
    }
    // Every page pack it holds is one a checkpoint names (an export
    // writes no other; stored, one would only take space).
    let used = store
        .files_for(&checkpoints)
        .map_err(|e| invalid(format!("its checkpoints cannot be read: {e}")))?;
    let unused: Vec<String> = packs
        .iter()
        .map(|&seq| phantom_snapshots::pages::pack_name(seq))
        .filter(|name| !used.contains(name))
        .collect();
    if !unused.is_empty() {
        return Err(invalid(format!(
            "it holds page packs no checkpoint of it uses: {}",
            unused.join(", ")
        )));
    }
    // Every checkpoint's contents fit the component (older ones too: a
    // fork, rollback or export may use them later).
    let facts = fs::read(stage.join("component.wasm"))
        .map_err(|e| invalid(format!("cannot read its component: {e}")))
        .and_then(|b| {
            crate::inspect::inspect_component(&b)
                .map_err(|e| invalid(format!("its component cannot be used: {e}")))
        })?;
    let mut refused = Vec::new();
    let _ = store.restore_newest(|c| {
        if let Err(why) =
            crate::process::check_image_contents(&facts, rt.config.max_memory_bytes as u64, c)
        {
            refused.push(format!("checkpoint {}: {why}", c.info.id));
        }
        // Refused, so every checkpoint is looked at.
        Err::<(), String>("looked at".into())
    });
    if !refused.is_empty() {
        return Err(invalid(format!(
            "its checkpoints do not fit its component: {}",
            refused.join("; ")
        )));
    }
    checkpoints.sort_unstable();
    let newest = *checkpoints.last().expect("one checkpoint at least");
    store
        .usable_chain(Some(newest))
        .map_err(|e| invalid(format!("its newest checkpoint cannot be restored: {e}")))?;

    // The journal tail: it starts where the newest checkpoint ends.
    let mut journal_entries = 0;
    if let Some(path) = &journal {
        let position = super::journal_position(&store, newest)?;
        journal_entries = write_journal(path, &journal_dir(&stage), position)?;
    }

    // A trial restore: the image fits the component and the journal
    // replays without diverging.
    if !failed {
        let (process, _warnings) = Process::restore(rt, &stage)
            .map_err(|e| invalid(format!("it does not restore: {e}")))?;
        let restored = process.last_committed().map(|c| c.id);
        drop(process);
        if restored != Some(newest) {
            return Err(invalid(format!(
                "its newest checkpoint {newest} does not fit its component (checkpoint {} was restored instead)",
                restored.map_or("none".into(), |id| id.to_string())
            )));
        }
    }

    // Into place: the rename is the moment it exists.
    let dest = data.path().join(&meta.name);
    if dest.exists() {
        return Err(TravelError::Exists {
            name: meta.name,
            data: data.path().to_path_buf(),
        });
    }
    crate::datadir::move_into_place(&stage, &dest).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TravelError::Exists {
                name: meta.name.clone(),
                data: data.path().to_path_buf(),
            }
        } else {
            io(format!(
                "cannot move the imported process into {}",
                dest.display()
            ))(e)
        }
    })?;
    File::open(data.path())
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", data.path().display())))?;
    adopt_cache(&cache_dir(tmp), &cache_dir(data.path()));
    Ok(ImportReport {
        name: meta.name,
        dir: dest,
        checkpoint: newest,
        checkpoints,
        journal_entries,
        bytes,
        producer: reader.header().producer.clone(),
        failed,
        handed_over: None,
        host_devices,
    })
}

/// Writes the journal record at `record` as a journal in `dir` starting at
/// `position`, checking every entry; returns the entry count.
pub(crate) fn write_journal(record: &Path, dir: &Path, position: u64) -> Result<u64, TravelError> {
    let invalid = |why: String| TravelError::Invalid(format!("its journal: {why}"));
    let file = File::open(record).map_err(io(format!("cannot read {}", record.display())))?;
    let mut left = file
        .metadata()
        .map_err(io(format!("cannot read {}", record.display())))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut take = |buf: &mut [u8], what: &str| -> Result<(), TravelError> {
        if (buf.len() as u64) > left {
            return Err(invalid(format!("it ends inside {what}")));
        }
        r.read_exact(buf)
            .map_err(io(format!("cannot read {}", record.display())))?;
        left -= buf.len() as u64;
        Ok(())
    };
    let mut word = [0u8; 8];
    take(&mut word, "its head")?;
    let first = u64::from_le_bytes(word);
    take(&mut word, "its head")?;
    let count = u64::from_le_bytes(word);
    if first != position {
        return Err(invalid(format!(
            "it starts at entry {first}, and the newest checkpoint covers the journal up to entry {position}"
        )));
    }
    let (log, opened) = Log::open(dir, LogConfig::default(), first)
        .map_err(|e| invalid(format!("cannot be written: {e}")))?;
    if opened.next_seq != first {
        return Err(invalid(format!(
            "a new journal starts at {}, not {first}",
            opened.next_seq
        )));
    }
    let mut payload = Vec::new();
    for i in 0..count {
        let seq = first + i;
        let mut len = [0u8; 4];
        take(&mut len, &format!("entry {seq}"))?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_ENTRY_BYTES {
            return Err(invalid(format!(
                "entry {seq} has {len} bytes (1 to {MAX_ENTRY_BYTES})"
            )));
        }
        payload.resize(len, 0);
        take(&mut payload, &format!("entry {seq}"))?;
        Entry::decode(&payload).map_err(|why| invalid(format!("entry {seq}: {why}")))?;
        log.append(&payload)
            .map_err(|e| invalid(format!("entry {seq} cannot be written: {e}")))?;
    }
    if left != 0 {
        return Err(invalid(format!("{left} bytes follow its {count} entries")));
    }
    log.sync()
        .map_err(|e| invalid(format!("cannot be made durable: {e}")))?;
    Ok(count)
}

/// Hard-links the data directory's compiled components into the import's
/// private cache, so a component the target already ran is not compiled
/// again (cache entries are replaced by rename, never written in place, so
/// a link never sees a change).
pub(crate) fn seed_cache(from: &Path, to: &Path) {
    each_cached(from, to, |from, to| fs::hard_link(from, to));
}

/// Moves compiled components from the import's private cache into the
/// data directory's (best effort: a missing entry is only recompiled).
pub(crate) fn adopt_cache(from: &Path, to: &Path) {
    each_cached(from, to, |from, to| fs::rename(from, to));
}

/// Applies `op` to each compiled component in cache `from` that cache `to`
/// lacks (best effort: errors are ignored).
fn each_cached(from: &Path, to: &Path, op: impl Fn(&Path, &Path) -> std::io::Result<()>) {
    let Ok(entries) = fs::read_dir(from) else {
        return;
    };
    if fs::create_dir_all(to).is_err() {
        return;
    }
    for e in entries.flatten() {
        let dest = to.join(e.file_name());
        if e.file_name().to_string_lossy().ends_with(".cwasm") && !dest.exists() {
            let _ = op(&e.path(), &dest);
        }
    }
}
