"""Independent, stdlib-only decoder for the RAM part of a QEMU 7.2 migration stream (x86, 4 KiB
target pages). Used by record.py to rebuild RAM blocks from a stream and to count records.

It parses: header, CONFIGURATION (+ subsections), COMMAND records, and the START/PART/END
sections of the iterative 'ram' section with footers. It stops at the first FULL (device)
section or EOF, because device sections can not be framed without the vmstate descriptions.
"""

import struct

PAGE = 4096
F_ZERO, F_MEM_SIZE, F_PAGE, F_EOS, F_CONTINUE, F_XBZRLE = 0x2, 0x4, 0x8, 0x10, 0x20, 0x40

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
                       "CONTINUE": 0, "with_idstr": 0}
        self.xbzrle_payload_bytes = 0
        self.xbzrle_record_bytes = 0
        self.first_full_offset = None
        self.has_vmdesc = False
        self.vmdesc_len = None

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


def decode(data, x_ignore_shared=None):
    """Decode the stream `data` (bytes). x_ignore_shared: None = take it from the configuration
    capabilities subsection."""
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
    ram_id = None
    last_block = None
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
                    break
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
                        s += used
                    if s != total:
                        raise DecodeError("MEM_SIZE total mismatch")
                    continue
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
