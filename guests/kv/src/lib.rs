//! `kv`: a key-value store driven by console lines.
//!
//! | line        | prints                              |
//! |-------------|-------------------------------------|
//! | `set k v`   | `ok` (v is the rest of the line)    |
//! | `get k`     | the value, or `(nil)`               |
//! | `del k`     | `1` if k was there, else `0`        |
//! | `len`       | the number of keys                  |
//! | `keys`      | the keys, sorted, space separated   |
//!
//! Anything else prints `error: unknown command '<x>'`.

use phantom_sdk::{File, Process, println};
use std::collections::BTreeMap;

struct Kv {
    map: BTreeMap<String, String>,
}

impl Process for Kv {
    fn init(_args: Vec<String>, _files: Vec<File>) -> Result<Self, String> {
        Ok(Kv {
            map: BTreeMap::new(),
        })
    }

    fn on_line(&mut self, line: String) {
        let line = line.trim();
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim_start();
        match command {
            "" => {}
            "set" => match rest.split_once(' ') {
                Some((key, value)) if !key.is_empty() => {
                    self.map
                        .insert(key.to_string(), value.trim_start().to_string());
                    println!("ok");
                }
                _ => println!("error: usage: set <key> <value>"),
            },
            "get" if !rest.is_empty() => match self.map.get(rest) {
                Some(value) => println!("{value}"),
                None => println!("(nil)"),
            },
            "del" if !rest.is_empty() => {
                println!("{}", u8::from(self.map.remove(rest).is_some()))
            }
            "get" | "del" => println!("error: usage: {command} <key>"),
            "len" => println!("{}", self.map.len()),
            "keys" => {
                let keys: Vec<&str> = self.map.keys().map(String::as_str).collect();
                println!("{}", keys.join(" "));
            }
            other => println!("error: unknown command '{other}'"),
        }
    }
}

phantom_sdk::export_process!(Kv);
