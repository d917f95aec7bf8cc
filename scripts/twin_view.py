#!/usr/bin/env python3
"""Live view of KubeEdge twin traffic: reads `mosquitto_sub -v` lines (from stdin, or by
following the file given as argument, like `tail -f`) and prints one readable line per
message (reported values, device state, deltas)."""
import json
import sys
import time


def follow(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        while True:
            line = f.readline()
            if line:
                yield line
            else:
                time.sleep(0.1)


lines = follow(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
twins = {}
for line in lines:
    topic, _, body = line.rstrip("\n").partition(" ")
    parts = topic.split("/")
    if len(parts) < 5:
        continue
    device, kind = parts[3], "/".join(parts[4:])
    try:
        msg = json.loads(body)
    except ValueError:
        print(f"{time.strftime('%H:%M:%S')}  {device:<14} (not JSON) {body[:60]}", flush=True)
        continue
    now = time.strftime("%H:%M:%S")
    if kind == "twin/update":
        cur = twins.setdefault(device, {})
        changed = []
        for name, t in (msg.get("twin") or {}).items():
            value = ((t or {}).get("actual") or {}).get("value")
            cur[name] = value
            changed.append(name)
        shown = "  ".join(f"{k}={'*' if k in changed else ''}{v}" for k, v in sorted(cur.items()))
        print(f"{now}  {device:<14} reported  {shown}", flush=True)
    elif kind == "state/update":
        print(f"{now}  {device:<14} state     {msg.get('state')}", flush=True)
    elif kind == "twin/update/delta":
        print(f"{now}  {device:<14} DELTA     {json.dumps(msg.get('delta'))}  (desired, sent as edgecore would)", flush=True)
