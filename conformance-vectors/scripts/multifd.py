"""multifd recordings for record.py (stdlib only): a recording TCP relay between a QEMU source
and a real QEMU destination, a replayer that feeds recorded connections to a fresh destination,
and an independent parser of QEMU's multifd channels (migration/multifd*.c, 7.2 to 11.1).

With capability `multifd` and parameter `multifd-channels` N, `migrate tcp:HOST:PORT` opens
N + 1 TCP connections to the same address: the main stream (starts with the QEMU file magic
"QEVM") and N channels. A channel starts with a 64-byte initial packet (MultiFDInit_t): be32
magic 0x11223344, be32 version 1, 16-byte uuid, u8 channel id, 7 unused bytes, 4 unused be64.
Then packets (MultiFDPacket_t), each

    be32 magic 0x11223344, be32 version 1, be32 flags, be32 pages_alloc, be32 normal_pages,
    be32 next_packet_size, be64 packet_num, be32 zero_pages (9.0+; unused before), be32 unused,
    3 x be64 unused, char ramblock[256], be64 offset[page_count]

with page_count = 512 KiB / 4 KiB = 128 entries whatever the packet holds (the receiver reads
a fixed-size header). pages_alloc is 128 (10.0+ fills only magic, version, flags and
packet_num of a SYNC packet: pages_alloc 0, ramblock empty). The first normal_pages offsets
are the normal pages, the next zero_pages (9.0+, zero-page-detection=multifd) the zero pages
of block `ramblock`. If normal_pages > 0,
next_packet_size bytes follow: the normal pages' contents (normal_pages * 4096 without
compression; with zlib/zstd the channel's compressed stream, which goes on across packets).
A packet without normal pages has no data, whatever next_packet_size says (7.2 leaves it at
the channel's previous packet's value in SYNC packets). flags: bit 0 SYNC, bits 1..4 the
compression (0 none, 1 zlib, 2 zstd, 4 qpl, 8 uadk; 7.2 reserves 3 bits), bit 6 (10.0+) a
device-state packet (not used without VFIO, refused here).

Synchronisation (what the destination's main thread waits for): a channel stops after each
packet with the SYNC flag until the main stream reaches a sync point: every RAM EOS in 7.2
(and for machine types with multifd-flush-after-each-section), otherwise (8.1+, this repo's
10.0/11.1 machine types) every RAM_SAVE_FLAG_MULTIFD_FLUSH record (0x200). So segment k of
the main stream (the records before its k-th sync point) goes with the packets of each channel
up to and including its k-th SYNC packet.
"""

import hashlib
import socket
import struct
import subprocess
import threading
import time

import ramdecode

MAGIC = 0x11223344
QEVM = b"QEVM"
INIT_LEN = 64
HEADER_LEN = 64 + 256          # fixed fields and ramblock[256], before offset[]
PAGE = 4096
PAGE_COUNT = 128               # MULTIFD_PACKET_SIZE 512 KiB / 4 KiB target pages
FLAG_SYNC = 1 << 0
FLAG_DEVICE_STATE = 1 << 6
COMPRESSION = {0: "none", 1: "zlib", 2: "zstd", 4: "qpl", 8: "uadk"}


class RelayError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# The recording relay

class Relay:
    """Listens on 127.0.0.1 port 0 (`self.port`), accepts `expect` connections from the source
    and, for each in the order accepted, opens one to `target` (host, port) before accepting
    the next, so the destination sees the source's order (QEMU 7.2 takes its first connection
    for the main stream). Forwards both directions; records every byte the source sent on each
    connection (`self.conns[i]["sent"]`) and counts the bytes sent back (a return path)."""

    def __init__(self, target, expect, accept_timeout=60):
        self.target = target
        self.expect = expect
        self.accept_timeout = accept_timeout
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(expect + 1)
        self.port = self.srv.getsockname()[1]
        self.conns = []
        self.errors = []
        self.lock = threading.Lock()
        self.pumps = []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._accept_all, daemon=True)
        self.thread.start()

    def _accept_all(self):
        try:
            self.srv.settimeout(self.accept_timeout)
            for i in range(self.expect):
                s, peer = self.srv.accept()
                s.settimeout(None)
                d = socket.create_connection(self.target, timeout=30)
                d.settimeout(None)
                c = {"index": i, "peer": peer, "sent": bytearray(), "returned": 0,
                     "accepted_at": time.time(), "src": s, "dst": d}
                with self.lock:
                    self.conns.append(c)
                t1 = threading.Thread(target=self._pump, args=(c, s, d, True), daemon=True)
                t2 = threading.Thread(target=self._pump, args=(c, d, s, False), daemon=True)
                self.pumps += [t1, t2]
                t1.start()
                t2.start()
        except Exception as e:  # noqa: BLE001
            self.errors.append("accepting connection %d of %d: %s"
                               % (len(self.conns) + 1, self.expect, e))
        finally:
            self.accepted.set()

    def _pump(self, c, a, b, from_source):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                if from_source:
                    c["sent"] += data
                else:
                    c["returned"] += len(data)
                b.sendall(data)
        except OSError as e:
            # the source's side must end cleanly; a reset on the way back after the end is
            # harmless (the destination closes first)
            if from_source:
                self.errors.append("connection %d source->destination: %s" % (c["index"], e))
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def wait(self, timeout=120):
        """Waits until every connection ended in both directions, closes the sockets."""
        if not self.accepted.wait(timeout):
            raise RelayError("relay: only %d of %d connections after %ds"
                             % (len(self.conns), self.expect, timeout))
        deadline = time.time() + timeout
        for t in self.pumps:
            t.join(max(0.1, deadline - time.time()))
            if t.is_alive():
                raise RelayError("relay: a connection did not close within %ds" % timeout)
        for c in self.conns:
            for k in ("src", "dst"):
                c[k].close()
        self.srv.close()
        if self.errors:
            raise RelayError("relay: " + "; ".join(self.errors))
        if len(self.conns) != self.expect:
            raise RelayError("relay: %d connections, expected %d" % (len(self.conns), self.expect))
        return self.conns

    def close(self):
        for c in self.conns:
            for k in ("src", "dst"):
                try:
                    c[k].close()
                except OSError:
                    pass
        self.srv.close()


def classify(conns):
    """The recorded connections by their first bytes: (main bytes, {channel id: bytes},
    [init packet dicts]). Fails unless there is exactly one main stream and channel ids
    0..N-1 with one uuid and version."""
    main = None
    channels = {}
    inits = []
    for c in conns:
        data = bytes(c["sent"])
        if data[:4] == QEVM:
            if main is not None:
                raise RelayError("two connections start with QEVM")
            main = data
            continue
        init = parse_init(data)
        init["connection"] = c["index"]
        if init["id"] in channels:
            raise RelayError("two channels with id %d" % init["id"])
        channels[init["id"]] = data
        inits.append(init)
    if main is None:
        raise RelayError("no connection starts with QEVM")
    if sorted(channels) != list(range(len(channels))):
        raise RelayError("channel ids %s" % sorted(channels))
    if len({i["uuid"] for i in inits}) > 1:
        raise RelayError("channels with different uuids: %s" % inits)
    return main, channels, sorted(inits, key=lambda i: i["id"])


def replay(port, recordings, timeout=120):
    """Connects to 127.0.0.1:port once per recording, in order (the main stream first), and
    sends each recording on its connection (all concurrently: the destination's main stream
    waits for the channels at each sync point); reads and discards what comes back; closes
    each write side at the end of its recording and waits for the peer to close."""
    socks = []
    for data in recordings:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        socks.append(s)
    errors = []

    def send(s, data):
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append("send: %s" % e)

    def drain(s):
        try:
            while s.recv(1 << 16):
                pass
        except OSError:
            pass

    threads = []
    for s, data in zip(socks, recordings):
        for fn, args in ((send, (s, data)), (drain, (s,))):
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            threads.append(t)
    deadline = time.time() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.time()))
    for s in socks:
        s.close()
    if errors:
        raise RelayError("replay: " + "; ".join(errors))
    if any(t.is_alive() for t in threads):
        raise RelayError("replay: connections still open after %ds" % timeout)


# ----------------------------------------------------------------------------------------------
# Channel parser

def parse_init(data):
    if len(data) < INIT_LEN:
        raise RelayError("connection of %d bytes: neither QEVM nor a multifd channel" % len(data))
    magic, version = struct.unpack_from(">II", data, 0)
    if magic != MAGIC:
        raise RelayError("connection starts with %s: neither QEVM nor multifd magic"
                         % data[:8].hex())
    if version != 1:
        raise RelayError("multifd channel version %d" % version)
    return {"version": version, "uuid": data[8:24].hex(), "id": data[24],
            "unused_zero": not any(data[25:INIT_LEN])}


class Packet:
    __slots__ = ("offset", "flags", "pages_alloc", "normal", "zero", "next_size", "num",
                 "ramblock", "page_offsets", "data_at")

    @property
    def sync(self):
        return bool(self.flags & FLAG_SYNC)

    @property
    def compression(self):
        return COMPRESSION.get((self.flags >> 1) & 0xF, "0x%x" % ((self.flags >> 1) & 0xF))


def parse_channel(data):
    """A recorded channel: its init packet and its packets (offsets into `data`)."""
    init = parse_init(data)
    p = INIT_LEN
    packets = []
    body = PAGE_COUNT * 8
    while p < len(data):
        if p + HEADER_LEN + body > len(data):
            raise RelayError("channel %d: packet at 0x%x cut short (%d bytes left)"
                             % (init["id"], p, len(data) - p))
        (magic, version, flags, pages_alloc, normal, next_size, num,
         zero) = struct.unpack_from(">IIIIIIQI", data, p)
        if magic != MAGIC or version != 1:
            raise RelayError("channel %d: packet at 0x%x magic %x version %d"
                             % (init["id"], p, magic, version))
        if flags & FLAG_DEVICE_STATE:
            raise RelayError("channel %d: device-state packet at 0x%x" % (init["id"], p))
        # pages_alloc: 128, or 0 in 10.0+'s SYNC packets (only the header fields are filled)
        if pages_alloc > PAGE_COUNT or normal + zero > pages_alloc:
            raise RelayError("channel %d: packet at 0x%x pages_alloc %d normal %d zero %d"
                             % (init["id"], p, pages_alloc, normal, zero))
        k = Packet()
        k.offset = p
        k.flags = flags
        k.pages_alloc = pages_alloc
        k.normal = normal
        k.zero = zero
        k.next_size = next_size
        k.num = num
        rb = data[p + 64:p + HEADER_LEN]
        k.ramblock = rb.split(b"\0", 1)[0].decode()
        k.page_offsets = struct.unpack_from(">%dQ" % (normal + zero), data, p + HEADER_LEN)
        k.data_at = p + HEADER_LEN + body
        if normal == 0:
            # no data follows (the receiver reads none); 7.2 leaves next_packet_size as it
            # was in the channel's previous packet
            k.next_size = 0
        elif k.compression == "none" and next_size != normal * PAGE:
            raise RelayError("channel %d: packet at 0x%x: %d normal pages but %d data bytes"
                             % (init["id"], p, normal, next_size))
        p = k.data_at + k.next_size
        if p > len(data):
            raise RelayError("channel %d: packet at 0x%x data cut short" % (init["id"], k.offset))
        packets.append(k)
    return init, packets


def channel_summary(data):
    init, packets = parse_channel(data)
    # (the compression bits are set in packets with pages; SYNC packets without pages carry
    # none in 7.2)
    comp = sorted({k.compression for k in packets if k.normal})
    return {
        "id": init["id"],
        "packets": len(packets),
        "sync_packets": sum(k.sync for k in packets),
        "normal_pages": sum(k.normal for k in packets),
        "zero_pages": sum(k.zero for k in packets),
        "data_bytes": sum(k.next_size for k in packets),
        "compression": comp,
        "packet_nums": [packets[0].num, packets[-1].num] if packets else [],
    }


def _payloads(data, packets):
    """The normal pages' contents of each packet, in order. Compressed channels are one
    compression stream across packets: zstd's is one frame that QEMU never ends (every packet
    ends with a flush); it is decompressed with the zstd command after appending an empty
    last raw block (3 bytes: Last_Block 1, Raw, size 0), which ends the frame (QEMU's frames
    have no checksum)."""
    comp = {k.compression for k in packets if k.normal}
    if comp <= {"none"}:
        return [data[k.data_at:k.data_at + k.next_size] for k in packets]
    if comp == {"zstd"}:
        z = b"".join(data[k.data_at:k.data_at + k.next_size] for k in packets) + b"\x01\0\0"
        out = subprocess.run(["zstd", "-dc"], input=z, stdout=subprocess.PIPE,
                             check=True).stdout
        want = sum(k.normal for k in packets) * PAGE
        if len(out) != want:
            raise RelayError("zstd channel gave %d bytes, expected %d" % (len(out), want))
        res = []
        p = 0
        for k in packets:
            res.append(out[p:p + k.normal * PAGE])
            p += k.normal * PAGE
        return res
    raise RelayError("cannot decompress %s" % comp)


def rebuild(main, channels, sync_on):
    """Rebuilds RAM from the main stream and the channels as the destination applies them:
    main-stream records segment by segment, each segment's channel packets at its sync point
    (`sync_on`: "EOS" for 7.2, "FLUSH" for 8.1+ machine types). Returns (StreamInfo of the
    main stream with the blocks rebuilt, stats).

    Within one segment the destination applies the main stream and the channels concurrently,
    so a page written there by two writers (main stream, channels) with different contents
    has no defined result unless a later segment writes it again: that fails. A page written
    again in one segment with the same contents is counted (`duplicate_writes`; QEMU 7.2
    sends some pages twice and counts them once in `normal`). Also
    fails if the number of SYNC packets of a channel differs from the number of sync points."""
    parsed = {}
    for cid, data in channels.items():
        init, packets = parse_channel(data)
        payloads = _payloads(data, packets)
        segs = [[]]
        for k, pl in zip(packets, payloads):
            segs[-1].append((k, pl))
            if k.sync:
                segs.append([])
        parsed[cid] = segs
    state = {"k": 0, "main_pages": set(), "ambiguous": {}, "normal": 0, "zero": 0,
             "duplicate_writes": 0, "duplicates": [], "overwritten_ambiguous": 0}

    def apply_segment(info, k):
        amb = state["ambiguous"]
        for key in state["main_pages"]:
            if amb.pop(key, None):
                state["overwritten_ambiguous"] += 1
        writes = {}  # key -> (writer, contents) of this segment's last write
        for cid, segs in parsed.items():
            if k >= len(segs):
                continue
            for pkt, pl in segs[k]:
                if pkt.normal + pkt.zero == 0:
                    continue
                blk = info.blocks.get(pkt.ramblock)
                if blk is None:
                    raise RelayError("channel %d packet at 0x%x: unknown block %r"
                                     % (cid, pkt.offset, pkt.ramblock))
                for i, off in enumerate(pkt.page_offsets):
                    if off % PAGE or off + PAGE > len(blk):
                        raise RelayError("channel %d: page offset 0x%x in %s" % (cid, off,
                                                                               pkt.ramblock))
                    key = (pkt.ramblock, off // PAGE)
                    page = pl[i * PAGE:(i + 1) * PAGE] if i < pkt.normal else bytes(PAGE)
                    if key in state["main_pages"] and key not in writes:
                        writes[key] = ("main", bytes(blk[off:off + PAGE]))
                    if amb.pop(key, None) and key not in writes:
                        state["overwritten_ambiguous"] += 1
                    prev = writes.get(key)
                    me = "channel %d" % cid
                    if prev is not None:
                        if prev[1] == page:
                            state["duplicate_writes"] += 1
                            if len(state["duplicates"]) < 8:
                                state["duplicates"].append(
                                    "segment %d %s 0x%x: %s, then %s packet %d"
                                    % (k, pkt.ramblock, off, prev[0], me, pkt.num))
                        elif prev[0] != me:
                            amb[key] = "segment %d %s 0x%x: %s and %s (packet %d)" % (
                                k, pkt.ramblock, off, prev[0], me, pkt.num)
                    writes[key] = (me, page)
                    info.received[pkt.ramblock].add(off // PAGE)
                    blk[off:off + PAGE] = page
                    if i < pkt.normal:
                        state["normal"] += 1
                    else:
                        state["zero"] += 1

    def on_marker(info, marker, pages):
        state["main_pages"] |= pages
        if marker != sync_on:
            return
        apply_segment(info, state["k"])
        state["k"] += 1
        state["main_pages"] = set()

    info = ramdecode.decode(main, on_marker=on_marker)
    syncs = state["k"]
    for cid, segs in parsed.items():
        if len(segs) - 1 != syncs:
            raise RelayError("channel %d has %d SYNC packets, the main stream %d sync points (%s)"
                             % (cid, len(segs) - 1, syncs, sync_on))
        if any(p.normal + p.zero for p, _ in segs[-1]):
            raise RelayError("channel %d has pages after its last SYNC packet" % cid)
    if state["ambiguous"]:
        raise RelayError("%d pages with different contents from two writers in one sync "
                         "segment and never written again: %s"
                         % (len(state["ambiguous"]), list(state["ambiguous"].values())[:20]))
    return info, {"sync_points": syncs, "normal": state["normal"], "zero": state["zero"],
                  "duplicate_writes": state["duplicate_writes"],
                  "duplicates": state["duplicates"],
                  "overwritten_ambiguous": state["overwritten_ambiguous"]}


def sha256(b):
    return hashlib.sha256(b).hexdigest()
