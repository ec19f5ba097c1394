//! `bad-import`: a persistent process that also imports `evil:fs/files`, so
//! the host's spawn must refuse it and name that import. It calls the import,
//! so the import survives into the component.

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "evil:fs/bad-process",
    generate_all,
});

use evil::fs::files;

struct BadImport;

impl Guest for BadImport {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Status, String> {
        Ok(Status::Idle)
    }

    fn handle(event: Event) -> Status {
        if let Event::ConsoleLine(path) = event {
            let data = files::read(&path);
            phantom::os::console::write(&data);
        }
        Status::Idle
    }
}

export!(BadImport);
