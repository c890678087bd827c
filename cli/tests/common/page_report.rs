//! Reading `ramstream pages`' output back: per page its record lines, its notes and the
//! bytes of its hex dump.

/// One page of a `ramstream pages` report.
pub struct PageReport {
    /// The page's index in its block.
    pub page: u64,
    /// The record lines, trimmed.
    pub records: Vec<String>,
    /// The other lines that are not dump lines ("same epoch …", "never sent …", …).
    pub notes: Vec<String>,
    /// The bytes of the (first) hex dump; empty when the page has none.
    pub bytes: Vec<u8>,
}

/// The pages of `out`, a report on block `block` with `page_size`-byte pages.
pub fn parse(out: &str, block: &str, page_size: u64) -> Vec<PageReport> {
    let mut pages: Vec<PageReport> = Vec::new();
    let mut dump: Vec<&str> = Vec::new();
    let mut in_other = false;
    let head = format!("{block} page ");
    let finish = |pages: &mut Vec<PageReport>, dump: &mut Vec<&str>| {
        if let Some(p) = pages.last_mut() {
            p.bytes = undump(dump, p.page * page_size);
        }
        dump.clear();
    };
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix(&head) {
            finish(&mut pages, &mut dump);
            in_other = false;
            let page = rest.split_whitespace().next().unwrap().parse().unwrap();
            pages.push(PageReport {
                page,
                records: Vec::new(),
                notes: Vec::new(),
                bytes: Vec::new(),
            });
            continue;
        }
        let t = l.trim();
        let p = pages.last_mut().expect("a page heading first");
        let is_dump = t == "*"
            || t.split_whitespace()
                .next()
                .is_some_and(|w| w.len() == 12 && w.chars().all(|c| c.is_ascii_hexdigit()));
        if is_dump {
            if !in_other {
                dump.push(t);
            }
        } else if t.starts_with("0x")
            || t.starts_with("main ")
            || t.starts_with("channel ")
            || t.starts_with("file ")
        {
            p.records.push(t.to_string());
        } else {
            in_other |= t.starts_with("the other copy");
            p.notes.push(t.to_string());
        }
    }
    finish(&mut pages, &mut dump);
    pages
}

/// The bytes of a `hexdump -C`-style dump (`*` repeats the line before it up to the next
/// offset).
pub fn undump(lines: &[&str], base: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    let mut starred = false;
    for l in lines {
        let l = l.trim();
        if l == "*" {
            starred = true;
            continue;
        }
        let (off, rest) = l.split_once("  ").unwrap_or((l, ""));
        let off = u64::from_str_radix(off, 16).unwrap() - base;
        if starred {
            while (out.len() as u64) < off {
                out.extend_from_slice(&last);
            }
            starred = false;
        }
        assert_eq!(out.len() as u64, off, "{l}");
        let hex = rest.split("  |").next().unwrap();
        last = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        out.extend_from_slice(&last);
    }
    out
}
