"""Drives oxharmony's hdc host server with clients nobody here wrote: hdc-rs-py (a Rust client
of OpenHarmony's client protocol), hdctool (protocol for shell/fport/targets, the `hdc` CLI
for files and installs) and OpenHarmony's own test framework xdevice (xdevice-ohos's
HdcMonitor and HdcHelper, which speak the protocol themselves). Prints one JSON object of what each call returned; the Rust test
judges it. Usage: hdc_clients.py CLIENT PORT KEY WORK REMOTE_DIR HAP BUNDLE ECHO_PORT FWD_PORT HDC_BIN"""

import json
import socket
import sys
import threading

client, port, key, work, remote, hap, bundle, echo_port, fwd, hdc_bin = sys.argv[1:11]
port = int(port)
addr = f"127.0.0.1:{port}"
out = {}


def step(name, f):
    """Runs one call; its result or its error goes in the report, and the rest still runs."""
    try:
        out[name] = f()
    except Exception as e:  # noqa: BLE001 - the report says what failed
        out[name] = {"error": f"{type(e).__name__}: {e}"}


def echo_through(local_port):
    with socket.create_connection(("127.0.0.1", local_port), timeout=10) as s:
        s.sendall(b"ping through the forward\n")
        got = b""
        while not got.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            got += b
        return got.decode()


if client == "hdc_rs_py":
    from hdc_rs_py import HdcClient

    def dev():
        c = HdcClient(addr)
        c.connect_device(key)
        return c

    step("targets", lambda: HdcClient(addr).list_targets())
    step("shell", lambda: dev().shell("echo hello-$((6*7))"))
    step("send", lambda: dev().file_send(f"{work}/blob", f"{remote}/blob"))
    step("send_z", lambda: dev().file_send(f"{work}/blob", f"{remote}/blob_z", compress=True))
    step("recv", lambda: dev().file_recv(f"{remote}/blob", f"{work}/back"))
    step("recv_z", lambda: dev().file_recv(f"{remote}/blob_z", f"{work}/back_z", compress=True))
    step("fport", lambda: dev().fport(f"tcp:{int(fwd)}", f"tcp:{echo_port}"))
    step("echo", lambda: echo_through(int(fwd)))
    step("fport_list", lambda: HdcClient(addr).fport_list())
    step("fport_rm", lambda: HdcClient(addr).fport_remove(f"tcp:{int(fwd)} tcp:{echo_port}"))
    step("install", lambda: dev().install([hap]))
    step("installed", lambda: dev().shell("oxh bm dump -a"))
    step("uninstall", lambda: dev().uninstall(bundle))
    step("checkserver", lambda: HdcClient(addr).check_server())
elif client == "xdevice":
    import logging

    from ohos.environment.dmlib import CollectingOutputReceiver, HdcHelper, HdcMonitor

    class Device:
        """What HdcHelper asks of a device."""

        device_sn = key
        host = "127.0.0.1"
        log = logging.getLogger("xdevice-device")

        def __init__(self):
            self.port = port

    dev = Device()

    def targets():
        # As HdcMonitor.list_targets: its handshake, `alive`, `list targets -v` on the
        # monitor's kept connection, then one length-prefixed answer.
        import struct

        mon = HdcMonitor.get_instance("127.0.0.1", port=port)
        mon.main_connection = mon.open_hdc_connection()
        mon.monitoring_list_targets()
        n = struct.unpack("!I", HdcHelper.read(mon.main_connection, 4))[0]
        return HdcHelper.reply_to_string(HdcHelper.read(mon.main_connection, n))

    def shell(cmd):
        r = CollectingOutputReceiver()
        HdcHelper.execute_shell_command(dev, cmd, timeout=20000, receiver=r)
        return r.output

    step("targets", targets)
    step("shell", lambda: shell("echo hello-$((6*7))"))
    step("send", lambda: HdcHelper.push_file(dev, f"{work}/blob", f"{remote}/blob"))
    step("recv", lambda: HdcHelper.pull_file(dev, f"{remote}/blob", f"{work}/back"))
    step("after", lambda: shell("echo after-transfers"))
else:
    from hdctool import Client

    c = Client(port=port, bin=hdc_bin, hdc_subprocess_timeout=60.0)
    t = c.get_target(key)

    def shell(cmd):
        conn = t.shell(cmd)
        try:
            return conn.read_all().decode()
        finally:
            conn.end()

    def track():
        # The tracker asks `list targets` once a second on one kept-alive connection; each
        # answer it parses is recorded (it starts before a handler could be registered).
        import time

        import hdctool.tracker as tracker

        polls, errors = [], []
        parse = tracker.read_targets
        tracker.read_targets = lambda text: polls.append(parse(text)) or polls[-1]
        tr = c.track_targets()
        tr.on("error", lambda e: errors.append(str(e)))
        deadline = time.monotonic() + 10
        while len(polls) < 2 and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        tr.end()
        return {"polls": polls[:2], "errors": errors}

    step("targets", lambda: c.list_targets())
    step("track", track)
    step("shell", lambda: shell("echo hello-$((6*7))"))
    step("send", lambda: t.send_file(f"{work}/blob", f"{remote}/blob"))
    step("recv", lambda: t.recv_file(f"{remote}/blob", f"{work}/back"))
    step("fport", lambda: t.forward(f"tcp:{int(fwd)}", f"tcp:{echo_port}"))
    step("echo", lambda: echo_through(int(fwd)))
    step("forwards", lambda: t.list_forwards())
    step("fport_rm", lambda: t.remove_forward(f"tcp:{int(fwd)}", f"tcp:{echo_port}"))
    step("forwards_after", lambda: t.list_forwards())
    step("install", lambda: t.install(hap))
    step("installed", lambda: shell("oxh bm dump -a"))
    step("uninstall", lambda: t.uninstall(bundle))

print("RESULT " + json.dumps(out))
