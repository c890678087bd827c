//! Top-level stream framing: header, section types, commands (SPEC.md §2–§5).

/// The file magic, ASCII `QEVM`, a be32 at offset 0 (SPEC.md §2.1).
pub const QEVM_MAGIC: u32 = 0x5145_564D;

/// The only stream version QEMU reads today, a be32 at offset 4 (SPEC.md §2.1).
pub const FILE_VERSION: u32 = 3;

/// The be32 a QEMU multifd side channel starts with (`MULTIFD_MAGIC`, QEMU 4.0+), followed
/// by a be32 version (1). The main stream never says multifd is on in QEMU 7.2, so a
/// single-connection receiver recognises it by this second connection (SPEC.md §8).
pub const MULTIFD_CHANNEL_MAGIC: u32 = 0x1122_3344;

/// The pre-0.13 stream version; QEMU rejects it with its own message (SPEC.md §2.1).
pub const FILE_VERSION_OBSOLETE: u32 = 2;

/// Length of the stream header: magic and version (SPEC.md §2.1).
pub const HEADER_LEN: usize = 8;

wire_enum! {
    /// The byte that starts every top-level section of the stream (SPEC.md §2.2).
    pub struct SectionType(u8) {
        /// `QEMU_VM_EOF`: end of device state.
        EOF = 0x00,
        /// `QEMU_VM_SECTION_START`: first part of an iterative (live) section, full header.
        START = 0x01,
        /// `QEMU_VM_SECTION_PART`: middle part of an iterative section, short header.
        PART = 0x02,
        /// `QEMU_VM_SECTION_END`: last part of an iterative section, short header.
        END = 0x03,
        /// `QEMU_VM_SECTION_FULL`: the whole state of a non-iterative device, full header.
        FULL = 0x04,
        /// `QEMU_VM_SUBSECTION`: only inside vmstate payloads, never at top level.
        SUBSECTION = 0x05,
        /// `QEMU_VM_VMDESCRIPTION`: the JSON trailer after EOF.
        VMDESCRIPTION = 0x06,
        /// `QEMU_VM_CONFIGURATION`: right after the header.
        CONFIGURATION = 0x07,
        /// `QEMU_VM_COMMAND`: a control command.
        COMMAND = 0x08,
        /// `QEMU_VM_SECTION_FOOTER`: after every START, PART, END and FULL section.
        FOOTER = 0x7E,
    }
}

wire_enum! {
    /// A `QEMU_VM_COMMAND` id, a be16 after the section byte (SPEC.md §2.6).
    pub struct Command(u16) {
        /// `MIG_CMD_INVALID`: never valid on the wire.
        INVALID = 0,
        /// `MIG_CMD_OPEN_RETURN_PATH`: the destination opens the return path.
        OPEN_RETURN_PATH = 1,
        /// `MIG_CMD_PING`: be32 value echoed on the return path.
        PING = 2,
        /// `MIG_CMD_POSTCOPY_ADVISE`: postcopy may be used; optional page sizes.
        POSTCOPY_ADVISE = 3,
        /// `MIG_CMD_POSTCOPY_LISTEN`.
        POSTCOPY_LISTEN = 4,
        /// `MIG_CMD_POSTCOPY_RUN`.
        POSTCOPY_RUN = 5,
        /// `MIG_CMD_POSTCOPY_RAM_DISCARD`.
        POSTCOPY_RAM_DISCARD = 6,
        /// `MIG_CMD_PACKAGED`: a nested stream.
        PACKAGED = 7,
        /// `MIG_CMD_ENABLE_COLO`.
        ENABLE_COLO = 8,
        /// `MIG_CMD_POSTCOPY_RESUME`.
        POSTCOPY_RESUME = 9,
        /// `MIG_CMD_RECV_BITMAP`.
        RECV_BITMAP = 10,
        /// `MIG_CMD_SWITCHOVER_START`, no payload: written by QEMU 10.0+ just before the
        /// completion sections when the migration property `send-switchover-start` is on
        /// (default; off for machine types 9.2 and older). Loaders before 10.0 reject it.
        SWITCHOVER_START = 11,
    }
}

/// How long a command's payload must be (SPEC.md §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandLen {
    /// Exactly this many bytes.
    Fixed(u16),
    /// Any of these lengths (POSTCOPY_ADVISE: 0 or 16).
    OneOf(&'static [u16]),
    /// Any length.
    Variable,
}

impl Command {
    /// The payload length QEMU's loader requires for this command (the same in every version
    /// from 7.2 to 11.1 that knows it), `None` for a command id no QEMU up to 11.1 knows (its
    /// loader rejects those: "MIG_CMD 0x%x unknown"). Which versions know which command:
    /// [`Command::since`].
    pub const fn len_rule(self) -> Option<CommandLen> {
        Some(match self.0 {
            1 => CommandLen::Fixed(0),
            2 => CommandLen::Fixed(4),
            3 => CommandLen::OneOf(&[0, 16]),
            4 | 5 => CommandLen::Fixed(0),
            6 => CommandLen::Variable,
            7 => CommandLen::Fixed(4),
            8 | 9 => CommandLen::Fixed(0),
            10 => CommandLen::Variable,
            11 => CommandLen::Fixed(0),
            _ => return None,
        })
    }

    /// The first QEMU version (major, minor) whose loader knows this command, `None` for an
    /// unknown one: commands 1 to 10 predate 7.2; `SWITCHOVER_START` is 10.0's.
    pub const fn since(self) -> Option<(u16, u16)> {
        match self.0 {
            1..=10 => Some((2, 0)),
            11 => Some((10, 0)),
            _ => None,
        }
    }
}

/// Length of a START/FULL section header before the idstr: type, be32 section id, u8 length.
pub const FULL_HEADER_FIXED_LEN: usize = 1 + 4 + 1;

/// Length of a footer: the 0x7E byte and a be32 section id (SPEC.md §2.4).
pub const FOOTER_LEN: usize = 5;
