"""Live parts: the event monitor (API and CLI), node health, the interactive menu."""

from __future__ import annotations

import json
import os
import signal
import time

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.admin.conftest import cli_json, run_cli, stream_events, wait_event
from tests.cluster import ADMIN_KEY, Cluster, free_port


def _trigger(cluster: Cluster) -> None:
    """A harmless event: a refused admin call (``admin_denied``)."""
    try:
        cluster.admin.ListNodes(pb.ListNodesRequest(admin_key="probe"), timeout=5)
    except Exception:  # noqa: BLE001 - refused on purpose
        pass


def test_monitor_gets_an_upload_within_a_second(cluster: Cluster) -> None:
    ada = cluster.sign_up()
    _, received, _ = stream_events(cluster, history=-1)
    _trigger(cluster)
    wait_event(received, lambda e: e.event_type == "admin_denied")  # the stream is live
    t0 = time.monotonic()
    reply = ada.upload(os.urandom(64 * 1024), name="watched.bin")
    event = wait_event(received, lambda e: e.event_type == "upload"
                       and "watched.bin" in e.message, timeout=1.0)
    assert time.monotonic() - t0 < 1.0 + 0.5  # the upload itself included
    assert event.user_id == ada.user_id and event.event_id > 0
    assert json.loads(event.details)["file_id"] == reply.file_id
    ids = [e.event_id for e in received]
    assert len(ids) == len(set(ids))  # each event once


def test_monitor_replays_recent_history_first(sqlite_cluster: Cluster) -> None:
    cluster = sqlite_cluster
    ada = cluster.sign_up()
    for i in range(3):
        ada.upload(os.urandom(1000), name=f"h{i}.bin")
    _, received, _ = stream_events(cluster, history=2, types=("upload",))
    wait_event(received, lambda e: "h2.bin" in e.message)
    time.sleep(0.3)
    assert [e.message.split()[0] for e in received] == ["h1.bin", "h2.bin"]
    ada.upload(os.urandom(1000), name="live.bin")
    wait_event(received, lambda e: "live.bin" in e.message)
    assert [e.event_type for e in received] == ["upload"] * 3

    # The CLI: --count stops after N events (history included), in order, as JSON lines.
    done = run_cli(cluster, "--monitor", "--json", "--history", "3", "--count", "3",
                   "--type", "upload", timeout=30)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["message"].split()[0] for e in events] == ["h1.bin", "h2.bin", "live.bin"]
    assert events[0]["details"]["size"] == 1000
    assert events == sorted(events, key=lambda e: e["event_id"])


def test_cli_monitor_live_and_ctrl_c(sqlite_cluster: Cluster, live_cli) -> None:
    cluster = sqlite_cluster
    ada = cluster.sign_up()
    mon = live_cli(cluster, "--monitor", "--history", "0")
    deadline = time.monotonic() + 15
    seen = False
    while not seen and time.monotonic() < deadline:  # wait until the stream is live
        _trigger(cluster)
        try:
            mon.wait_for(lambda line: "admin_denied" in line, timeout=0.5)
            seen = True
        except AssertionError:
            pass
    assert seen, (mon.lines, mon.errors)
    t0 = time.monotonic()
    ada.upload(os.urandom(2048), name="seen-by-cli.bin")
    line = mon.wait_for(lambda text: "upload" in text and "seen-by-cli.bin" in text,
                        timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert "\x1b[" not in line  # no colour on a pipe
    mon.proc.send_signal(signal.SIGINT)
    assert mon.wait() == 0
    assert not any("Traceback" in e for e in mon.errors)


def test_killed_node_goes_offline_and_comes_back(sqlite_cluster: Cluster) -> None:
    cluster = sqlite_cluster
    _, received, _ = stream_events(cluster, history=-1, types=("node_down", "node_up"))
    t0 = time.monotonic()
    cluster.stop_node("node2", signal.SIGKILL)
    wait_event(received, lambda e: e.event_type == "node_down" and "node2" in e.message,
               timeout=10)
    assert time.monotonic() - t0 < 3 + 2  # NODE_TIMEOUT_S=3 in the harness, plus a check
    nodes = {n.name: n for n in cluster.admin.ListNodes(
        pb.ListNodesRequest(admin_key=ADMIN_KEY), timeout=10).nodes}
    assert nodes["node2"].status == "offline" and not nodes["node2"].online
    assert nodes["node2"].health_score == 0 and nodes["node1"].health_score > 50
    st = cluster.status()
    assert (st.online_nodes, st.total_nodes) == (2, 3) and st.system_health < 100
    by_cli = {n["name"]: n for n in cli_json(cluster, "--nodes")}
    assert by_cli["node2"]["status"] == "offline"
    table = run_cli(cluster, "--nodes")
    assert "2/3 online" in table.stdout
    assert any("node2" in line and "offline" in line for line in table.stdout.splitlines())
    assert all(len(line) <= 80 for line in table.stdout.splitlines())

    cluster.start_node("node2")
    wait_event(received, lambda e: e.event_type == "node_up" and "node2" in e.message,
               timeout=15)
    cluster.wait_nodes_online(3)
    by_cli = {n["name"]: n for n in cli_json(cluster, "--nodes")}
    assert by_cli["node2"]["status"] == "online" and by_cli["node2"]["online"]
    assert cli_json(cluster, "--status")["online_nodes"] == 3


def test_menu_with_piped_stdin(sqlite_cluster: Cluster, live_cli) -> None:
    cluster = sqlite_cluster
    ada = cluster.sign_up("menu@example.com", "Menu User")
    ada.upload(os.urandom(4096), name="menu.bin")
    done = run_cli(cluster, stdin="1\n2\n3\n4\nmenu@example.com\n9\n7\n8\n", timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "CLOUD STORAGE ADMIN MONITOR" in out and "8. Exit" in out
    assert "System Status" in out and "menu@example.com" in out
    assert "Storage nodes (3/3 online)" in out and "User menu@example.com" in out
    assert "Unknown option '9'" in out and "Goodbye." in out
    wide = [line for line in out.splitlines() if len(line) > 80]
    assert not wide, wide
    # End of input is an exit too.
    assert run_cli(cluster, stdin="", timeout=30).returncode == 0

    # 5 starts monitoring in the background, 6 stops it.
    menu = live_cli(cluster)
    menu.wait_for(lambda line: "Select an option" in line or "8. Exit" in line, timeout=20)
    menu.send("5\n")
    menu.wait_for(lambda line: "Event monitoring started" in line)
    time.sleep(0.5)
    ada.upload(os.urandom(4096), name="menu-live.bin")
    menu.wait_for(lambda line: "menu-live.bin" in line, timeout=5)
    menu.send("6\n")
    menu.wait_for(lambda line: "Event monitoring stopped" in line)
    menu.send("8\n")
    assert menu.wait() == 0


def test_cli_exit_codes(sqlite_cluster: Cluster, tmp_path) -> None:
    cluster = sqlite_cluster
    assert run_cli(cluster, "--status", "--admin-key", "wrong").returncode == 6
    assert run_cli(cluster, "--status", ADMIN_KEY="wrong").returncode == 6
    assert run_cli(cluster, "--status", "--admin-key", "wrong", stdin="").returncode == 6
    nothing = f"127.0.0.1:{free_port()}"
    done = run_cli(cluster, "--status", "--server", nothing, "--timeout", "5")
    assert done.returncode == 12, done.stderr
    assert run_cli(cluster, "--monitor", "--server", nothing).returncode == 12
    assert run_cli(cluster, "--user", "ghost@example.com").returncode == 4
    assert run_cli(cluster, "--bogus").returncode == 2
    # No ADMIN_KEY: the key the gateway wrote into DATA_DIR is used.
    (tmp_path / "keydir").mkdir()
    (tmp_path / "keydir" / "admin_key").write_text(ADMIN_KEY + "\n")
    done = run_cli(cluster, "--status", "--json", ADMIN_KEY="",
                   DATA_DIR=str(tmp_path / "keydir"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["online_nodes"] == 3
    done = run_cli(cluster, "--status", ADMIN_KEY="", DATA_DIR=str(tmp_path / "none"))
    assert done.returncode == 6 and "admin key" in done.stderr


def test_cli_monitor_rides_out_a_gateway_restart(sqlite_cluster: Cluster, live_cli) -> None:
    cluster = sqlite_cluster
    mon = live_cli(cluster, "--monitor", "--json", "--history", "0", "--type", "admin_denied")
    deadline = time.monotonic() + 15
    while not mon.lines and time.monotonic() < deadline:  # until the stream is live
        _trigger(cluster)
        time.sleep(0.3)
    assert mon.lines, mon.errors
    t0 = time.monotonic()
    assert cluster.gateway is not None
    assert cluster.gateway.stop() == 0
    assert time.monotonic() - t0 < 5  # an open monitor stream does not hold the shutdown
    shown = len(mon.lines)
    cluster.start_gateway()  # same port
    deadline = time.monotonic() + 20
    while len(mon.lines) <= shown and time.monotonic() < deadline:
        _trigger(cluster)
        time.sleep(0.3)
    assert len(mon.lines) > shown, mon.errors
    ids = [json.loads(line)["event_id"] for line in mon.lines]
    assert len(ids) == len(set(ids))
    assert mon.proc.poll() is None
