//! `hexdump -C`-style dumps of page contents, for `ramstream pages`.

use std::fmt::Write as _;

/// Bytes per hex dump line.
const LINE: usize = 16;

/// Lower-case hex digits.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

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
        let _ = write!(out, "  {:012x}  ", base + (n * LINE) as u64);
        for i in 0..LINE {
            match line.get(i) {
                Some(b) => {
                    out.push(char::from(DIGITS[usize::from(b >> 4)]));
                    out.push(char::from(DIGITS[usize::from(b & 0xf)]));
                }
                None => out.push_str("  "),
            }
            if i + 1 < LINE {
                out.push(' ');
            }
        }
        out.push_str("  |");
        out.extend(line.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    if starred {
        out.push_str(&format!("  {:012x}\n", base + data.len() as u64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full lines, a repeated run starred and closed by its end offset, a short last line
    /// padded to the ASCII column.
    #[test]
    fn dumps_like_hexdump_c() {
        let mut data = vec![b'A'; 16];
        data.extend([0u8; 48]);
        data.extend([0x7f, b' ', b'z']);
        let want = "  000000001000  41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41  |AAAAAAAAAAAAAAAA|\n\
                    \x20 000000001010  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  |................|\n\
                    \x20 *\n\
                    \x20 000000001040  7f 20 7a                                         |. z|\n";
        assert_eq!(hex_dump(&data, 0x1000), want);
    }
}
