#!/usr/bin/env python3
"""Helpers for benches/fleet.sh, standard library only.

A minimal NATS client (the text protocol over a socket) for the JetStream
API, and a process sampler:

  fleet_tool.py create URL STREAM [--replicas R] [--dupe-window S] [--fresh]
      create the stream (subjects eg.>, file storage), retrying while a
      cluster elects its meta leader; --fresh deletes it first
  fleet_tool.py info URL STREAM
      the stream's state as JSON (messages, bytes, last_seq, last_ts)
  fleet_tool.py count URL STREAM [--timeout S]
      reads every message's headers (an ephemeral headers-only consumer) and
      prints the records they hold: the sum of Eg-Count over distinct
      Nats-Msg-Ids, by kind, and how many message ids came twice
  fleet_tool.py drain-watch --nats URL --stream S --metrics URL --restore T
                            --readings R --published P [--timeout S]
      after a hub restart at epoch time T: when the first message reached the
      stream, and the gateway's forwarding rate until it caught up (from its
      /metrics: edgeguard_readings_total, edgeguard_forward_published_total)
  fleet_tool.py sample PID --warmup S --seconds S
      CPU share of one core (utime+stime from /proc/PID/stat) between warmup
      and seconds after the start, VmRSS (median of 1 s samples) and VmHWM
  fleet_tool.py json k=v k:=JSON @OBJECT …
      one JSON object: k=v a string, k:=v raw JSON, @{...} an object merged in
URL is nats://host:port (several, comma-separated: the first that answers).
"""
import argparse
import datetime
import json
import os
import random
import re
import socket
import statistics
import sys
import time
import urllib.request


class NoResponders(Exception):
    pass


class Nats:
    def __init__(self, urls, timeout=5.0):
        last = None
        for url in urls.split(","):
            m = re.match(r"^(?:nats://)?([^:/]+):(\d+)$", url.strip())
            if not m:
                raise SystemExit(f"fleet_tool: not nats://host:port: {url}")
            try:
                self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout)
                break
            except OSError as e:
                last = e
        else:
            raise ConnectionError(f"cannot connect to {urls}: {last}")
        self.sock.settimeout(timeout)
        self.pending = []  # messages read while waiting for a reply
        self.f = self.sock.makefile("rb")
        line = self.f.readline()
        if not line.startswith(b"INFO"):
            raise ConnectionError(f"not a NATS server: {line[:80]!r}")
        self.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                  b'"lang":"python","version":"0","protocol":1}\r\nPING\r\n')
        while True:
            kind, *_ = self.read()
            if kind == "PONG":
                break
        self.inbox = "_INBOX." + "".join(random.choice("abcdefghijklmnop") for _ in range(16))
        self.send(f"SUB {self.inbox}.* 1\r\n".encode())
        self.n = 0

    def send(self, b):
        self.sock.sendall(b)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read(self):
        """One protocol item: ("MSG", subject, sid, reply, headers, payload, status) or ("PONG",)."""
        if self.pending:
            return self.pending.pop(0)
        return self._read()

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("connection closed")
            line = line.rstrip(b"\r\n")
            if line == b"PING":
                self.send(b"PONG\r\n")
                continue
            if line in (b"PONG",):
                return ("PONG",)
            if line == b"+OK" or line.startswith(b"INFO"):
                continue
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode(errors="replace"))
            parts = line.split()
            if parts[0] == b"MSG":
                subject, sid = parts[1].decode(), parts[2].decode()
                reply = parts[3].decode() if len(parts) == 5 else ""
                size = int(parts[-1])
                data = self.f.read(size + 2)
                return ("MSG", subject, sid, reply, {}, data[:size], "")
            if parts[0] == b"HMSG":
                subject, sid = parts[1].decode(), parts[2].decode()
                reply = parts[3].decode() if len(parts) == 6 else ""
                hlen, total = int(parts[-2]), int(parts[-1])
                data = self.f.read(total + 2)
                status, headers = parse_headers(data[:hlen])
                return ("MSG", subject, sid, reply, headers, data[hlen:total], status)
            raise ConnectionError(f"unexpected: {line[:80]!r}")

    def request(self, subject, body, timeout=5.0):
        self.n += 1
        reply = f"{self.inbox}.{self.n}"
        payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")
        deadline = time.time() + timeout
        while time.time() < deadline:
            item = self._read()
            if item[0] != "MSG":
                continue
            if item[1] != reply:
                self.pending.append(item)  # for read(): a subscription's message
                continue
            if item[6].startswith("503"):
                raise NoResponders(subject)
            return json.loads(item[5]) if item[5] else {}
        raise TimeoutError(subject)


def parse_headers(raw):
    lines = raw.decode(errors="replace").split("\r\n")
    status = lines[0][len("NATS/1.0"):].strip() if lines and lines[0].startswith("NATS/1.0") else ""
    headers = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            headers[k.strip()] = v.strip()
    return status, headers


def parse_ts(s):
    """RFC 3339 with nanoseconds → epoch seconds (float)."""
    if not s or s.startswith("0001-"):
        return 0.0
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return 0.0
    base = datetime.datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def api_error(resp):
    e = resp.get("error")
    return None if not e else (e.get("code"), e.get("err_code"), e.get("description"))


def stream_info(nc, stream):
    resp = nc.request(f"$JS.API.STREAM.INFO.{stream}", b"")
    err = api_error(resp)
    if err:
        raise RuntimeError(f"stream info {stream}: {err}")
    st = resp["state"]
    leader = (resp.get("cluster") or {}).get("leader")
    return {"messages": st.get("messages", 0), "bytes": st.get("bytes", 0), "first_seq": st.get("first_seq", 0),
            "last_seq": st.get("last_seq", 0), "last_ts": st.get("last_ts", ""), "leader": leader}


def cmd_create(a):
    started = time.time()
    last = None
    cfg = {"name": a.stream, "subjects": ["eg.>"], "retention": "limits", "storage": "file",
           "num_replicas": a.replicas, "discard": "old", "duplicate_window": int(a.dupe_window * 1e9)}
    while time.time() - started < a.timeout:
        nc = None
        try:
            nc = Nats(a.url)
            if a.fresh:
                resp = nc.request(f"$JS.API.STREAM.DELETE.{a.stream}", b"")
                err = api_error(resp)
                if err and err[1] != 10059:  # 10059: stream not found
                    raise RuntimeError(f"delete: {err}")
                a.fresh = False
            resp = nc.request(f"$JS.API.STREAM.CREATE.{a.stream}", cfg)
            err = api_error(resp)
            if err and err[1] != 10058:  # 10058: name in use (with the same config: fine)
                raise RuntimeError(f"create: {err}")
            # A replicated stream answers once it has a leader.
            info = stream_info(nc, a.stream)
            if a.replicas > 1 and not info["leader"]:
                raise RuntimeError("no stream leader yet")
            print(json.dumps({"stream": a.stream, "replicas": a.replicas, "leader": info["leader"],
                              "seconds": round(time.time() - started, 2)}))
            return
        except (OSError, ConnectionError, NoResponders, TimeoutError, RuntimeError) as e:
            last = e
            time.sleep(0.25)
        finally:
            if nc:
                nc.close()
    raise SystemExit(f"fleet_tool: could not create stream {a.stream} in {a.timeout:.0f} s: {last}")


def cmd_info(a):
    nc = Nats(a.url)
    print(json.dumps(stream_info(nc, a.stream)))
    nc.close()


def cmd_count(a):
    nc = Nats(a.url, timeout=10)
    info = stream_info(nc, a.stream)
    want = info["messages"]
    deliver = "_DELIVER." + nc.inbox.split(".", 1)[1]
    nc.send(f"SUB {deliver} 2\r\n".encode())
    cfg = {"deliver_subject": deliver, "deliver_policy": "all", "ack_policy": "none", "replay_policy": "instant",
           "headers_only": True, "mem_storage": True, "num_replicas": 1, "inactive_threshold": int(30e9)}
    resp = nc.request(f"$JS.API.CONSUMER.CREATE.{a.stream}", {"stream_name": a.stream, "config": cfg})
    err = api_error(resp)
    if err:
        raise SystemExit(f"fleet_tool: consumer on {a.stream}: {err}")
    name = resp["name"]
    got, ids, dups, records, messages_by_kind = 0, set(), 0, {}, {}
    deadline = time.time() + a.timeout
    while got < want:
        if time.time() > deadline:
            raise SystemExit(f"fleet_tool: read {got} of {want} messages of {a.stream} in {a.timeout:.0f} s")
        try:
            item = nc.read()
        except socket.timeout:
            raise SystemExit(f"fleet_tool: read {got} of {want} messages of {a.stream}; nothing more for 10 s")
        if item[0] != "MSG" or item[2] != "2":
            continue
        h = item[4]
        if item[6]:  # a status message (flow control, idle heartbeat): not stored
            continue
        got += 1
        kind = item[1].rsplit(".", 1)[-1]
        mid = h.get("Nats-Msg-Id", f"#{got}")
        if mid in ids:
            dups += 1
            continue
        ids.add(mid)
        records[kind] = records.get(kind, 0) + int(h.get("Eg-Count", 0))
        messages_by_kind[kind] = messages_by_kind.get(kind, 0) + 1
    try:
        nc.request(f"$JS.API.CONSUMER.DELETE.{a.stream}.{name}", b"")
    except Exception:
        pass
    nc.close()
    print(json.dumps({"messages": got, "distinct": len(ids), "duplicate_ids": dups, "records": records,
                      "messages_by_kind": messages_by_kind, "bytes": info["bytes"]}))


def scrape(url):
    text = urllib.request.urlopen(url, timeout=2).read().decode()
    out = {"readings": 0.0, "published": 0.0, "backlog": 0.0, "connected": 0.0}
    for line in text.splitlines():
        if line.startswith("edgeguard_readings_total"):
            out["readings"] += float(line.split()[-1])
        elif line.startswith('edgeguard_forward_published_total{target="fleet",kind="reading"}'):
            out["published"] = float(line.split()[-1])
        elif line.startswith('edgeguard_forward_backlog_records{target="fleet"}'):
            out["backlog"] = float(line.split()[-1])
        elif line.startswith('edgeguard_forward_connected{target="fleet"}'):
            out["connected"] = float(line.split()[-1])
    return out


def cmd_drain_watch(a):
    t0 = a.restore
    nc = None
    hub_up = first = end = None
    first_pub = None
    samples = []
    deadline = t0 + a.timeout
    while time.time() < deadline:
        now = time.time()
        if first is None:
            try:
                if nc is None:
                    nc = Nats(a.nats, timeout=2)
                    hub_up = hub_up or time.time()
                info = stream_info(nc, a.stream)
                if parse_ts(info["last_ts"]) > t0:
                    first = now
            except (OSError, ConnectionError, NoResponders, TimeoutError, RuntimeError, ValueError):
                if nc:
                    nc.close()
                nc = None
        try:
            m = scrape(a.metrics)
        except OSError:
            time.sleep(a.every)
            continue
        samples.append((now, m))
        if first is not None and first_pub is None:
            first_pub = m["published"]
        lag = m["readings"] - m["published"]
        if first is not None and lag <= a.caught_up:
            end = now
            break
        time.sleep(a.every)
    if nc:
        nc.close()
    if first is None:
        raise SystemExit(f"fleet_tool: no message reached {a.stream} within {a.timeout:.0f} s of the hub's restart")
    if end is None:
        raise SystemExit(f"fleet_tool: the gateway did not catch up within {a.timeout:.0f} s of the hub's restart")
    last = samples[-1][1]
    drain_s = end - first
    drained = last["published"] - first_pub
    print(json.dumps({
        "hub_accepting_s": round(hub_up - t0, 3) if hub_up else None,
        "first_message_s": round(first - t0, 3),
        "caught_up_s": round(end - t0, 3),
        "drain_s": round(drain_s, 3),
        "backlog_at_restore": int(a.readings - a.published),
        "published_since_restore": int(last["published"] - a.published),
        "drain_readings_per_s": round(drained / drain_s) if drain_s > 0 else None,
    }))


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith(("VmRSS:", "VmHWM:")):
                out[l.split(":")[0]] = int(l.split()[1])
    return out


def cmd_sample(a):
    tck = os.sysconf("SC_CLK_TCK")
    start = time.time()
    time.sleep(max(0.0, a.warmup))
    c0, w0 = proc_cpu_ticks(a.pid), time.time()
    c1, w1 = c0, w0
    rss = []
    hwm = 0
    while time.time() - start < a.seconds:
        time.sleep(1)
        try:
            st = proc_status(a.pid)
            c, w = proc_cpu_ticks(a.pid), time.time()
        except (FileNotFoundError, ProcessLookupError):
            break  # it ended early: the last sample counts
        c1, w1 = c, w
        rss.append(st.get("VmRSS", 0))
        hwm = max(hwm, st.get("VmHWM", 0))
    if w1 - w0 < 1:
        raise SystemExit(f"fleet_tool: process {a.pid} ended before it could be sampled")
    print(json.dumps({"cpu_pct": round(100.0 * (c1 - c0) / tck / (w1 - w0), 2),
                      "rss_median_mb": round(statistics.median(rss) / 1024, 1) if rss else None,
                      "rss_peak_mb": round(hwm / 1024, 1), "window_s": round(w1 - w0, 2)}))


def cmd_json(a):
    """k=v a string, k:=v raw JSON, @{...} merged in."""
    out = {}
    for kv in a.pairs:
        if kv.startswith("@"):
            out.update(json.loads(kv[1:]))
            continue
        k, v = kv.split("=", 1)
        if k.endswith(":"):
            out[k[:-1]] = json.loads(v) if v != "" else None
        else:
            out[k] = v
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("url")
    c.add_argument("stream")
    c.add_argument("--replicas", type=int, default=1)
    c.add_argument("--dupe-window", type=float, default=120.0, help="seconds")
    c.add_argument("--fresh", action="store_true")
    c.add_argument("--timeout", type=float, default=30.0)
    i = sub.add_parser("info")
    i.add_argument("url")
    i.add_argument("stream")
    n = sub.add_parser("count")
    n.add_argument("url")
    n.add_argument("stream")
    n.add_argument("--timeout", type=float, default=120.0)
    d = sub.add_parser("drain-watch")
    d.add_argument("--nats", required=True)
    d.add_argument("--stream", required=True)
    d.add_argument("--metrics", required=True)
    d.add_argument("--restore", type=float, required=True, help="epoch seconds the hub was started")
    d.add_argument("--readings", type=float, required=True, help="readings_total just before the restart")
    d.add_argument("--published", type=float, required=True, help="published readings just before the restart")
    d.add_argument("--caught-up", type=float, default=15000, help="lag (readings) that counts as caught up")
    d.add_argument("--every", type=float, default=0.1)
    d.add_argument("--timeout", type=float, default=300.0)
    s = sub.add_parser("sample")
    s.add_argument("pid", type=int)
    s.add_argument("--warmup", type=float, default=5.0)
    s.add_argument("--seconds", type=float, required=True)
    j = sub.add_parser("json")
    j.add_argument("pairs", nargs="*")
    a = p.parse_args()
    {"json": cmd_json, "create": cmd_create, "info": cmd_info, "count": cmd_count, "drain-watch": cmd_drain_watch,
     "sample": cmd_sample}[a.cmd](a)


if __name__ == "__main__":
    main()
