"""Independent, stdlib-only decoder for the RAM part of a QEMU 7.2 migration stream (x86, 4 KiB
target pages). Used by record.py to rebuild RAM blocks from a stream and to count records.

It parses: header, CONFIGURATION (+ subsections), COMMAND records, and the START/PART/END
sections of the iterative 'ram' section with footers. It stops at the first FULL (device)
section or EOF, because device sections can not be framed without the vmstate descriptions.

mapped-ram files (QEMU 9.0+, capability mapped-ram, `migrate file:`): after each MEM_SIZE
block entry comes a 28-byte header (be32 version, be64 page_size, be64 bitmap_offset, be64
pages_offset; absolute file offsets), then the writer seeks to pages_offset + used_length and
the stream goes on there. The bitmap (ceil(pages/64)*8 bytes, little-endian longs: bit i is
byte i//8, bit i%8) marks the pages that have data at pages_offset + i*4096; the others are
zero. With x-ignore-shared (QEMU 11.0+), an ignored block's header has both offsets 0 and the
stream goes on right after it. The reader follows these seeks (QEMU migration/ram.c
parse_ramblock_mapped_ram).
"""

import struct

PAGE = 4096
F_ZERO, F_MEM_SIZE, F_PAGE, F_EOS, F_CONTINUE, F_XBZRLE = 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
F_MULTIFD_FLUSH = 0x200   # QEMU 8.1+ with multifd: a sync point, no payload

CMD_NAMES = {1: "OPEN_RETURN_PATH", 2: "PING", 3: "POSTCOPY_ADVISE", 4: "POSTCOPY_LISTEN",
             5: "POSTCOPY_RUN", 6: "POSTCOPY_RAM_DISCARD", 7: "PACKAGED", 8: "ENABLE_COLO",
             9: "POSTCOPY_RESUME", 10: "RECV_BITMAP"}


class DecodeError(Exception):
    pass


def xbzrle_decode(src, page):
    """Apply an XBZRLE-encoded delta onto `page` (bytearray of PAGE bytes) in place."""
    i = 0
    d = 0
    n = len(src)

    def uleb():
        nonlocal i
        b = src[i]
        i += 1
        if b & 0x80:
            if i >= n:
                raise DecodeError("xbzrle: truncated uleb")
            b2 = src[i]
            i += 1
            if b2 & 0x80:
                raise DecodeError("xbzrle: uleb too long")
            return (b & 0x7F) | (b2 << 7)
        return b

    while i < n:
        if n - i < 2:
            raise DecodeError("xbzrle: dangling byte")
        zrun = uleb()
        if zrun == 0 and d > 0:
            raise DecodeError("xbzrle: zero zrun not first")
        d += zrun
        if d > PAGE:
            raise DecodeError("xbzrle: zrun past end")
        if n - i < 2:
            raise DecodeError("xbzrle: missing nzrun")
        nz = uleb()
        if nz == 0:
            raise DecodeError("xbzrle: zero nzrun")
        if d + nz > PAGE or i + nz > n:
            raise DecodeError("xbzrle: nzrun past end")
        page[d:d + nz] = src[i:i + nz]
        i += nz
        d += nz


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def need(self, n):
        if self.p + n > len(self.d):
            raise DecodeError("truncated at 0x%x (need %d)" % (self.p, n))

    def u8(self):
        self.need(1)
        v = self.d[self.p]
        self.p += 1
        return v

    def be16(self):
        self.need(2)
        v = struct.unpack_from(">H", self.d, self.p)[0]
        self.p += 2
        return v

    def be32(self):
        self.need(4)
        v = struct.unpack_from(">I", self.d, self.p)[0]
        self.p += 4
        return v

    def be64(self):
        self.need(8)
        v = struct.unpack_from(">Q", self.d, self.p)[0]
        self.p += 8
        return v

    def raw(self, n):
        self.need(n)
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def cstr(self):
        return bytes(self.raw(self.u8())).decode()


class StreamInfo:
    def __init__(self):
        self.machine = None
        self.config_caps = []
        self.commands = []          # (name, payload hex)
        self.sections = []          # (kind, records-in-section)
        self.blocks = {}            # idstr -> bytearray
        self.block_order = []
        self.mem_size_fields = {}   # idstr -> dict(used_length, mr_addr)
        self.received = {}          # idstr -> set of page indices
        self.counts = {"ZERO": 0, "PAGE": 0, "XBZRLE": 0, "MEM_SIZE": 0, "EOS": 0,
                       "CONTINUE": 0, "with_idstr": 0, "MULTIFD_FLUSH": 0}
        self.xbzrle_payload_bytes = 0
        self.xbzrle_record_bytes = 0
        self.first_full_offset = None
        self.has_vmdesc = False
        self.vmdesc_len = None
        self.mapped_ram = {}        # idstr -> header fields, pages present (mapped-ram files)

    def summary(self):
        kinds = {}
        for k, _ in self.sections:
            kinds[k] = kinds.get(k, 0) + 1
        return {
            "machine": self.machine,
            "config_capabilities": self.config_caps,
            "commands": [c[0] for c in self.commands],
            "ram_sections": kinds,
            "records": dict(self.counts),
            "xbzrle_payload_bytes": self.xbzrle_payload_bytes,
            "blocks": [(b, len(self.blocks[b])) for b in self.block_order],
            "has_vmdesc": self.has_vmdesc,
            "mapped_ram": self.mapped_ram,
        }


def find_vmdesc(data):
    """Return the JSON length if the stream ends with EOF + VMDESCRIPTION, else None."""
    end = len(data)
    lo = max(0, end - 16 * 1024 * 1024)
    p = end - 6
    while p >= lo:
        p = data.rfind(b"\x06", lo, p + 1)
        if p < 0:
            return None
        if p >= 1 and p + 5 <= end and data[p - 1] == 0:
            ln = struct.unpack_from(">I", data, p + 1)[0]
            if p + 5 + ln == end and data[p + 5:p + 6] == b"{":
                return ln
        p -= 1
    return None


def mapped_ram_block(r, info, name, used, x_ignore_shared):
    """The mapped-ram header after a MEM_SIZE block entry: read it, apply the pages its bitmap
    marks present onto info.blocks[name], and seek to where the stream goes on."""
    at = r.p
    version = r.be32()
    page_size = r.be64()
    bitmap_offset = r.be64()
    pages_offset = r.be64()
    hdr_end = r.p
    if version > 1:
        raise DecodeError("mapped-ram header version %d at 0x%x" % (version, at))
    if page_size != PAGE:
        raise DecodeError("mapped-ram page size %d at 0x%x" % (page_size, at))
    npages = used // PAGE
    bitmap_len = (npages + 63) // 64 * 8
    entry = {"header_offset": at, "version": version, "page_size": page_size,
             "bitmap_offset": bitmap_offset, "pages_offset": pages_offset,
             "bitmap_len": bitmap_len, "present": 0}
    info.mapped_ram[name] = entry
    if x_ignore_shared and bitmap_offset == 0 and pages_offset == 0:
        entry["ignored"] = True
        entry["bitmap_len"] = 0
        entry["next_offset"] = hdr_end
        return
    if pages_offset % PAGE:
        raise DecodeError("mapped-ram pages of %s at 0x%x not page aligned" % (name, pages_offset))
    if bitmap_offset < hdr_end or bitmap_offset + bitmap_len > pages_offset:
        raise DecodeError("mapped-ram regions of %s out of order: header end 0x%x, bitmap "
                          "0x%x+%d, pages 0x%x" % (name, hdr_end, bitmap_offset, bitmap_len,
                                                  pages_offset))
    end = pages_offset + used
    if end > len(r.d):
        raise DecodeError("mapped-ram pages of %s end at 0x%x, past the file (0x%x)"
                          % (name, end, len(r.d)))
    bitmap = r.d[bitmap_offset:bitmap_offset + bitmap_len]
    blk = info.blocks[name]
    for i in range(npages):
        if bitmap[i // 8] >> (i % 8) & 1:
            o = i * PAGE
            blk[o:o + PAGE] = r.d[pages_offset + o:pages_offset + o + PAGE]
            info.received[name].add(i)
            entry["present"] += 1
    entry["next_offset"] = end
    r.p = end


def decode(data, x_ignore_shared=None, on_marker=None):
    """Decode the stream `data` (bytes). x_ignore_shared: None = take it from the configuration
    capabilities subsection. on_marker(info, "EOS" | "FLUSH", pages): called at every RAM EOS
    and MULTIFD_FLUSH record with the set of (block, page index) the stream wrote since the
    previous call (multifd.py applies the side channels' pages there)."""
    r = Reader(data)
    info = StreamInfo()
    if r.be32() != 0x5145564D:
        raise DecodeError("bad magic")
    if r.be32() != 3:
        raise DecodeError("bad version")
    if data[r.p] == 0x07:
        r.p += 1
        ln = r.be32()
        info.machine = bytes(r.raw(ln)).decode()
        while r.p < len(data) and data[r.p] == 0x05:
            r.p += 1
            name = r.cstr()
            ver = r.be32()
            if name == "configuration/capabilities":
                cnt = r.be32()
                info.config_caps = [r.cstr() for _ in range(cnt)]
            elif name == "configuration/uuid":
                r.raw(16)
            elif name == "configuration/target-page-bits":
                r.be32()
            else:
                raise DecodeError("unknown configuration subsection %s v%d" % (name, ver))
    if x_ignore_shared is None:
        x_ignore_shared = "x-ignore-shared" in info.config_caps
    mapped_ram = "mapped-ram" in info.config_caps
    ram_id = None
    last_block = None
    seg = set()
    while True:
        t = r.u8()
        if t == 0x08:
            cmd = r.be16()
            ln = r.be16()
            payload = bytes(r.raw(ln))
            info.commands.append((CMD_NAMES.get(cmd, "CMD%d" % cmd), payload.hex()))
            continue
        if t in (0x01, 0x02, 0x03):
            sid = r.be32()
            if t == 0x01:
                idstr = r.cstr()
                inst = r.be32()
                ver = r.be32()
                if idstr != "ram" or inst != 0 or ver != 4:
                    raise DecodeError("unexpected live section %s %d v%d" % (idstr, inst, ver))
                ram_id = sid
            elif sid != ram_id:
                raise DecodeError("PART/END for unknown section id %d" % sid)
            nrec = 0
            while True:
                w = r.be64()
                flags = w & (PAGE - 1)
                addr = w & ~(PAGE - 1)
                prim = flags & ~F_CONTINUE
                if prim == F_EOS:
                    info.counts["EOS"] += 1
                    if on_marker:
                        on_marker(info, "EOS", seg)
                        seg = set()
                    break
                if flags == F_MULTIFD_FLUSH and addr == 0:
                    info.counts["MULTIFD_FLUSH"] += 1
                    if on_marker:
                        on_marker(info, "FLUSH", seg)
                        seg = set()
                    continue
                nrec += 1
                if prim == F_MEM_SIZE:
                    info.counts["MEM_SIZE"] += 1
                    total = addr
                    s = 0
                    while s < total:
                        name = r.cstr()
                        used = r.be64()
                        fields = {"used_length": used}
                        if x_ignore_shared:
                            fields["mr_addr"] = r.be64()
                        info.mem_size_fields[name] = fields
                        if name not in info.blocks:
                            info.blocks[name] = bytearray(used)
                            info.block_order.append(name)
                            info.received[name] = set()
                        if mapped_ram:
                            mapped_ram_block(r, info, name, used, x_ignore_shared)
                        s += used
                    if s != total:
                        raise DecodeError("MEM_SIZE total mismatch")
                    continue
                if mapped_ram:
                    raise DecodeError("unexpected RAM flags 0x%x in a mapped-ram file at 0x%x"
                                      % (flags, r.p - 8))
                if prim not in (F_ZERO, F_PAGE, F_XBZRLE):
                    raise DecodeError("unknown flags 0x%x at 0x%x" % (flags, r.p - 8))
                if flags & F_CONTINUE:
                    if last_block is None:
                        raise DecodeError("CONTINUE without block")
                    info.counts["CONTINUE"] += 1
                else:
                    last_block = r.cstr()
                    info.counts["with_idstr"] += 1
                    if last_block not in info.blocks:
                        raise DecodeError("unknown block %s" % last_block)
                blk = info.blocks[last_block]
                if addr + PAGE > len(blk):
                    raise DecodeError("offset 0x%x beyond block %s" % (addr, last_block))
                info.received[last_block].add(addr // PAGE)
                if on_marker:
                    seg.add((last_block, addr // PAGE))
                if prim == F_ZERO:
                    info.counts["ZERO"] += 1
                    fill = r.u8()
                    blk[addr:addr + PAGE] = bytes([fill]) * PAGE
                elif prim == F_PAGE:
                    info.counts["PAGE"] += 1
                    blk[addr:addr + PAGE] = r.raw(PAGE)
                else:
                    info.counts["XBZRLE"] += 1
                    start = r.p
                    enc = r.u8()
                    if enc != 1:
                        raise DecodeError("bad xbzrle encoding byte %d" % enc)
                    ln = r.be16()
                    if ln > PAGE:
                        raise DecodeError("xbzrle len overflow")
                    payload = bytes(r.raw(ln))
                    page = bytearray(blk[addr:addr + PAGE])
                    xbzrle_decode(payload, page)
                    blk[addr:addr + PAGE] = page
                    info.xbzrle_payload_bytes += ln
                    info.xbzrle_record_bytes += r.p - start
            kind = {1: "START", 2: "PART", 3: "END"}[t]
            info.sections.append((kind, nrec))
            if r.u8() != 0x7E or r.be32() != sid:
                raise DecodeError("bad section footer at 0x%x" % (r.p - 5))
            continue
        if t == 0x04 or t == 0x00:
            info.first_full_offset = r.p - 1
            break
        raise DecodeError("unexpected section type 0x%x at 0x%x" % (t, r.p - 1))
    ln = find_vmdesc(data)
    info.has_vmdesc = ln is not None
    info.vmdesc_len = ln
    return info
