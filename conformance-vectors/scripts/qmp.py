"""Minimal QMP client (stdlib only) and QEMU process wrapper used by record.py."""

import json
import os
import socket
import subprocess
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=60.0):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise QMPError("cannot connect to QMP socket %s" % path)
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError("bad greeting %r" % greeting)
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            resp = self._read()
            if "event" in resp:
                self.events.append(resp)
                continue
            if "error" in resp:
                raise QMPError("%s %s: %s" % (name, args, resp["error"]))
            return resp["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Qemu:
    """A QEMU process with a QMP unix socket in `sockdir`, run with cwd `cwd`."""

    BINARY = "qemu-system-x86_64"

    def __init__(self, name, args, sockdir, cwd, log_path):
        self.name = name
        self.qmp_path = os.path.join(sockdir, name + ".qmp")
        if os.path.exists(self.qmp_path):
            os.unlink(self.qmp_path)
        self.args = list(args)
        full = [self.BINARY] + self.args + [
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(full, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = log_path
        self.qmp = None
        try:
            self.qmp = QMP(self.qmp_path)
        except Exception:
            self.kill()
            raise QMPError("QEMU %s failed to start; log:\n%s" % (name, self.log_text()))

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def cmd(self, name, **args):
        return self.qmp.cmd(name, **args)

    def hmp(self, line):
        return self.qmp.hmp(line)

    def wait_migration(self, timeout=600, statuses=("completed",), poll=0.2, incoming=False):
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise QMPError("QEMU %s exited (rc %s) during migration; log:\n%s"
                               % (self.name, self.proc.returncode, self.log_text()))
            info = self.cmd("query-migrate")
            st = info.get("status")
            if st in statuses:
                return info
            if st in ("failed", "cancelled"):
                raise QMPError("migration on %s %s: %s\nlog:\n%s"
                               % (self.name, st, info, self.log_text()))
            if time.time() > deadline:
                raise QMPError("migration on %s timed out, last %s" % (self.name, info))
            time.sleep(poll)

    def kill(self):
        if self.proc.poll() is None:
            try:
                if self.qmp is not None:
                    self.qmp.cmd("quit")
            except Exception:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.qmp is not None:
            self.qmp.close()
        self.log.close()
