//! `hexdump -C`-style dumps of page contents, for `ramstream pages`.

/// Bytes per hex dump line.
const LINE: usize = 16;

/// `hexdump -C` style: offset, 16 bytes, ASCII; a run of lines equal to the previous one
/// is one `*` line, and then the end offset closes the dump.
pub fn hex_dump(data: &[u8], base: u64) -> String {
    let mut out = String::new();
    let mut previous: Option<&[u8]> = None;
    let mut starred = false;
    for (n, line) in data.chunks(LINE).enumerate() {
        if previous == Some(line) {
            if !starred {
                out.push_str("  *\n");
                starred = true;
            }
            continue;
        }
        previous = Some(line);
        starred = false;
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "  {:012x}  {:<47}  |{ascii}|\n",
            base + (n * LINE) as u64,
            hex.join(" ")
        ));
    }
    if starred {
        out.push_str(&format!("  {:012x}\n", base + data.len() as u64));
    }
    out
}
