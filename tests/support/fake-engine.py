#!/usr/bin/env python3
"""A stand-in for docker/podman in tests: records every invocation, runs real processes.

Each call appends {"argv": [...], "env": {NAME: value for every `-e NAME`}} as a JSON line to
$FAKE_LOG. `run` of a container (not the pause container) execs a real process: the image
"test/web" becomes tests' app.py listening on the host port published by the pod; any other image
sleeps. `kill --signal SIG NAME` signals that process; `inspect` says whether it runs; `rm`,
`pod create`, `pod rm` just succeed.
"""
import json
import os
import signal
import sys

args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
state = os.path.dirname(log)
named = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-e"]
with open(log, "a") as f:
    f.write(json.dumps({"argv": args, "env": {n: os.environ.get(n) for n in named}}) + "\n")

if args[:1] == ["inspect"]:
    # Running when the container's process is alive.
    try:
        pid = int(open(os.path.join(state, args[-1] + ".pid")).read())
        os.kill(pid, 0)
        print("true")
    except (OSError, ValueError):
        print("false")
    sys.exit(0)

if args[:1] == ["kill"]:
    sig = args[args.index("--signal") + 1]
    name = args[-1]
    try:
        pid = int(open(os.path.join(state, name + ".pid")).read())
        os.kill(pid, getattr(signal, "SIG" + sig))
    except (OSError, ValueError):
        sys.exit(1)
    sys.exit(0)

if args[:1] == ["run"] and "-d" not in args:
    name = args[args.index("--name") + 1]
    # The image is the first argument after the options (each option here takes one value).
    i = 1
    while args[i].startswith("-"):
        i += 1 if args[i] == "--rm" else 2
    image, command = args[i], args[i + 1 :]
    open(os.path.join(state, name + ".pid"), "w").write(str(os.getpid()))
    if image == "test/web":
        # The port the pod publishes on the host, recorded by the pod's own `run -d`.
        for line in open(log):
            a = json.loads(line)["argv"]
            if "-p" in a:
                host_port = a[a.index("-p") + 1].split(":")[1]
        os.environ["EVENTS"] = os.path.join(state, "events")
        os.execvp("python3", ["python3", os.environ["APP_PY"], "web", host_port])
    os.execvp("sleep", ["sleep", "1000"])
sys.exit(0)
