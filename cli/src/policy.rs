//! What ramstream refuses as a QEMU migration destination (`receive --extract` and `proxy`),
//! each with one clear message.

use anyhow::{bail, Result};
use ramstream_codec::Event;
use ramstream_spec::stream::Command;

/// Machine types whose streams the conformance vectors cover, and the reference machine
/// that `ramstream send` migrates (SPEC.md §13.6).
pub const TESTED_MACHINE_TYPES: &[&str] = &[
    "pc-i440fx-7.2",
    "pc-q35-7.2",
    "pc-i440fx-10.0",
    "pc-q35-10.0",
    "pc-i440fx-11.1",
    "pc-q35-11.1",
    ramstream_spec::extension::reference::MACHINE_TYPE,
];

/// Refuses what ramstream cannot honour as a destination, with one clear message.
pub fn check_policy(event: &Event<'_>, offset: u64, allow_untested: bool) -> Result<()> {
    match event {
        Event::Configuration(c)
            if !allow_untested && !TESTED_MACHINE_TYPES.contains(&c.machine_type) =>
        {
            bail!(
                "at offset {offset:#x}: machine type {:?} has not been tested with ramstream (tested: {}); pass --allow-untested-machine to try anyway",
                c.machine_type,
                TESTED_MACHINE_TYPES.join(", ")
            );
        }
        Event::Command(c)
            if [
                Command::POSTCOPY_LISTEN,
                Command::POSTCOPY_RUN,
                Command::POSTCOPY_RAM_DISCARD,
                Command::PACKAGED,
            ]
            .contains(&c.command) =>
        {
            bail!(
                "at offset {offset:#x}: command {:?}: the source started the postcopy phase (capability postcopy-ram, migrate-start-postcopy); ramstream receives precopy only",
                c.command
            );
        }
        _ => {}
    }
    Ok(())
}
