# Phantom's task runner. Everything builds in release mode, once, into target/.

set shell := ["bash", "-euo", "pipefail", "-c"]

phantom := "target/release/phantom"
guests := "target/guests/components"

# List the recipes.
default:
    @just --list

# Build the host, the tests and the guest components (tests/build.rs builds
# the guests). --all-targets resolves features exactly as `cargo test` does,
# so wasmtime is compiled once for both.
build:
    cargo build --release --workspace --all-targets

# The demo: spawn `counter`, run it, kill -9 the host, run again: it goes on counting.
demo: build
    bash scripts/demo.sh

# The thermostat demo: a BME280, a relay, a chart; kill -9 loses nothing
# (`./dev thermostat`; writes thermostat.png).
thermostat: build
    bash scripts/thermostat.sh

# The whole test suite (unit, integration, PVM).
test: build
    cargo test --release --workspace

# Formatting and lints, as CI should see them.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# Benchmarks, printing JSON (ratios against baselines measured in the same run).
bench: build
    {{phantom}} bench checkpoint --memory-mib 64,256,1024 --dirty-pages 655 --tracker pagemap-scan,pagemap --json
    {{phantom}} bench restore --component {{guests}}/memtouch.wasm --memory-mib 256 --touched-pages 0 --restore lazy,eager --rounds 5 --json
    {{phantom}} bench restore --component {{guests}}/memtouch.wasm --memory-mib 256 --touched-pages 655 --restore lazy,eager --json
    {{phantom}} bench pvm --iterations 1000000 --rounds 11 --json
    {{phantom}} bench pvm --iterations 2000000 --rounds 11 --workload spin --json
    {{phantom}} bench pvm --iterations 1000000 --rounds 11 --workload run --json
    {{phantom}} bench wasi --component {{guests}}/wasi-handles.wasm --json
    {{phantom}} bench devices --component {{guests}}/relay-sensor.wasm --json
    {{phantom}} build guests/c-memtouch -o target/c-memtouch.wasm
    {{phantom}} bench guest-pause --rust {{guests}}/memtouch.wasm --c target/c-memtouch.wasm --memory-mib 64 --dirty-pages 655 --json
    command -v redis-server >/dev/null || { echo "bench journal compares with Redis: installing redis-server (apt-get)"; apt-get install -y redis-server >/dev/null || echo "redis-server could not be installed: the comparison is skipped"; }
    {{phantom}} bench journal --component {{guests}}/mailbox.wasm --json
    {{phantom}} bench travel --component {{guests}}/memtouch.wasm --memory-mib 256 --json
    {{phantom}} bench history --memory-mib 64 --checkpoints 100 --json
    {{phantom}} bench migrate --component {{guests}}/memtouch.wasm --memory-mib 256 --json

# Regenerates the C SDK's phantom:os bindings after wit/ changed (needs
# `cargo install wit-bindgen-cli --version 0.63.0`).
c-sdk:
    wit-bindgen c wit --world phantom:devices/device-process --out-dir guests/c-sdk
    rm -f guests/c-sdk/device_process_component_type.o

# Regenerates the C bindings of the interop demos (guests/interop/stats.wit).
interop-bindings:
    wit-bindgen c guests/interop --world provider --out-dir guests/c-stats
    wit-bindgen c guests/interop --world user --out-dir guests/c-stats-app

# Long runs kept out of `just test`: 1,000 kills, the image fuzzer for an
# hour (each prints its case count), a longer PVM fuzz, 300 kills each of
# the WASI and C guests and of the interop compositions, 50,000 mutated
# components (a composition among them) through the
# instrumentation, 500 random handle sequences.
soak: build
    PHANTOM_KILLS=1000 cargo test --release -p phantom-tests --test integration kill_loop -- --nocapture
    PHANTOM_KILLS=300 cargo test --release -p phantom-tests --test integration journal:: -- --nocapture
    PHANTOM_FUZZ_SECS=3600 cargo test --release -p phantom-tests --test integration image_fuzz -- --nocapture
    PVM_FUZZ_CASES=200000 cargo test --release -p pvm-wasm --test pvm fuzz -- --nocapture
    PHANTOM_KILLS=300 cargo test --release -p phantom-tests --test integration -- --nocapture wasi::a_rust_std c_guests::a_c_guest
    PHANTOM_KILLS=300 cargo test --release -p phantom-tests --test integration -- --nocapture interop::
    PHANTOM_FUZZ_CASES=50000 cargo test --release -p phantom-tests --test integration instrument_fuzz -- --nocapture
    PHANTOM_HANDLE_CASES=500 cargo test --release -p phantom-tests --test integration wasi::handles -- --nocapture
