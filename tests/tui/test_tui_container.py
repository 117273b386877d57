"""The container screen's tabs against real containers: what each panel shows is what the
kernel says (checked here by reading /proc directly)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from textual.widgets import DataTable, Log, Static

from labtui.tui.app import LabApp
from labtui.tui.screens.container import ContainerScreen
from tests.tui.conftest import cli, column, in_thread, run_d, until

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("tui_root")]


def init_pid(cid: str) -> int:
    return int(json.loads(cli("inspect", cid).stdout)[0]["State"]["Pid"])


async def open_container(app: LabApp, pilot, cid: str, tab: str = "steps") -> ContainerScreen:
    await until(pilot, lambda: app.screen.query_one("#containers").row_count > 0, what="the dashboard")
    app.open_container(cid)
    await until(pilot, lambda: isinstance(app.screen, ContainerScreen), what="the container screen")
    screen = app.screen
    assert isinstance(screen, ContainerScreen)
    await until(pilot, lambda: cid[:12] in static_text(screen, "#ctr-title"), what="the title line")
    if tab != "steps":
        screen.action_show_tab(tab)
    return screen


def static_text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def test_steps_tab_shows_clone_and_pivot_root_with_an_explanation():
    cid = run_d("--name", "stepper", "busybox", "sleep", "60")

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_container(app, pilot, cid)
            table = screen.query_one("#steps-table", DataTable)
            await until(pilot, lambda: {"clone", "pivot_root", "execve"} <= set(column(table, "op")),
                        what="clone, pivot_root and execve steps")
            ops = column(table, "op")
            assert ops.index("clone") < ops.index("pivot_root") < ops.index("execve")
            assert all(r == "ok" for r in column(table, "result"))
            table.move_cursor(row=ops.index("clone"))
            await until(pilot, lambda: "CLONE_NEWPID" in static_text(screen, "#step-detail"),
                        what="the clone flags in the detail")
            assert "clone(2)" in static_text(screen, "#step-detail")
            table.move_cursor(row=ops.index("pivot_root"))
            await until(pilot, lambda: "pivot_root(2)" in static_text(screen, "#step-detail"),
                        what="the pivot_root explanation")
            assert "$ cd " in static_text(screen, "#step-detail")
            await pilot.press("m")  # filter: the first mechanism present
            await until(pilot, lambda: len(set(column(table, "mech"))) == 1, what="a one-mechanism filter")

    asyncio.run(scenario())


def test_a_step_appears_while_the_container_starts():
    cid = cli("create", "--name", "late", "busybox", "sleep", "60").stdout.strip()

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_container(app, pilot, cid)
            table = screen.query_one("#steps-table", DataTable)
            await pilot.pause(0.5)
            assert table.row_count == 0, "a created container has performed no kernel step yet"
            start = asyncio.ensure_future(in_thread(cli, "start", cid))
            await until(pilot, lambda: "clone" in column(table, "op"), what="the clone step, live")
            await until(pilot, lambda: "execve" in column(table, "op"), what="the execve step, live")
            await start

    asyncio.run(scenario())


def test_gated_steps_appear_one_by_one_when_let_go_with_n():
    cid = cli("create", "--gate", "--name", "gated", "busybox", "sleep", "60").stdout.strip()

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_container(app, pilot, cid)
            table = screen.query_one("#steps-table", DataTable)
            start = asyncio.ensure_future(in_thread(cli, "start", cid))
            await until(pilot, lambda: "gate holds" in static_text(screen, "#gate-status"), what="the gate")
            before = table.row_count
            await pilot.press("n")
            await until(pilot, lambda: table.row_count == before + 1, what="exactly one more step")
            await in_thread(cli, "gate", "next", cid, "-n", "1000")
            await until(pilot, lambda: "execve" in column(table, "op"), what="all steps")
            await start

    asyncio.run(scenario())


def test_namespaces_tab_shows_the_kernels_inodes_pids_and_uid_map():
    cid = run_d("--name", "nsview", "busybox", "sleep", "60")
    pid = init_pid(cid)
    inside = os.stat(f"/proc/{pid}/ns/pid").st_ino

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_container(app, pilot, cid, "ns")
            ns = screen.query_one("#ns-table", DataTable)
            await until(pilot, lambda: "pid" in [str(k.value) for k in ns.rows], what="the pid namespace row")
            assert str(ns.get_cell("pid", "inside")) == str(inside)
            host = str(ns.get_cell("pid", "host"))
            assert host != str(inside)
            assert host in (str(os.stat("/proc/1/ns/pid").st_ino) if os.access("/proc/1/ns/pid", os.R_OK) else "",
                            str(os.stat("/proc/self/ns/pid").st_ino))
            assert str(ns.get_cell("pid", "same")) == "yes"
            with open(f"/proc/{pid}/uid_map") as f:
                uid_map = " ".join(f.read().split())
            await until(pilot, lambda: uid_map in static_text(screen, "#uid-map"), what="the uid_map line")
            pids = screen.query_one("#ns-pids", DataTable)
            await until(pilot, lambda: str(pid) in [str(k.value) for k in pids.rows], what="the init's PIDs")
            assert str(pids.get_cell(str(pid), "inside")) == "1"
            assert str(pids.get_cell(str(pid), "chain")) == f"{pid} → 1"

    asyncio.run(scenario())


def test_logs_tab_follows_the_output():
    cid = run_d("--name", "talker", "busybox", "sh", "-c", "echo first; sleep 1; echo second >&2; sleep 60")

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_container(app, pilot, cid, "logs")
            log = screen.query_one("#log-view", Log)
            await until(pilot, lambda: "first" in log.lines, what="the first line")
            await until(pilot, lambda: "[stderr] second" in log.lines, timeout=5, what="a line written later")

    asyncio.run(scenario())


def test_processes_security_and_timeline_tabs():
    cid = run_d("--name", "inspectme", "busybox", "sleep", "60")
    pid = init_pid(cid)
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        command = int(f.read().split()[0])  # the Security tab shows the command, not the init
    with open(f"/proc/{command}/status") as f:
        cap_eff = next(line.split()[1] for line in f if line.startswith("CapEff:"))

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_container(app, pilot, cid, "procs")
            procs = screen.query_one("#procs-table", DataTable)
            await until(pilot, lambda: procs.row_count >= 2, what="init and sleep")
            tree = column(procs, "tree")
            assert tree[0].startswith("1 ") and any("sleep 60" in t for t in tree[1:])
            screen.action_show_tab("sec")
            await until(pilot, lambda: f"CapEff {cap_eff}" in static_text(screen, "#sec-body"), what="CapEff")
            assert "NoNewPrivs" in static_text(screen, "#sec-body")
            screen.action_show_tab("timeline")
            timeline = screen.query_one("#timeline-table", DataTable)
            await until(pilot, lambda: {"created", "started"} <= set(column(timeline, "type")), what="events")

    asyncio.run(scenario())


def test_ipc_tab_a_segment_on_one_side_is_invisible_on_the_other():
    cid = run_d("--name", "ipcdemo", "busybox", "sleep", "60")

    def host_shmids() -> set[str]:
        with open("/proc/sysvipc/shm") as f:
            return {line.split()[1] for line in f.readlines()[1:] if line.strip()}

    async def scenario() -> set[str]:
        app = LabApp()
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_container(app, pilot, cid, "ipc")
            host = screen.query_one("#ipc-host", DataTable)
            ctr = screen.query_one("#ipc-ctr", DataTable)
            await until(pilot, lambda: "container (" in static_text(screen, "#ipc-ctr-title"), what="IPC read")
            before = host_shmids()
            assert ctr.row_count == 0
            await pilot.press("c")
            await until(pilot, lambda: ctr.row_count == 1, what="the container's segment")
            assert host_shmids() == before, "the container's segment must not exist in the host's namespace"
            await pilot.press("h")
            await until(pilot, lambda: len(host_shmids()) == len(before) + 1, what="the host's segment")
            mine = host_shmids() - before
            await until(pilot, lambda: mine <= set(column(host, "id")), what="the host table")
            await pilot.pause(1.2)
            assert ctr.row_count == 1, "the host's segment must not appear in the container"
        return mine

    mine = asyncio.run(scenario())
    assert not (mine & host_shmids()), "the demo segment outlived the app"


def test_cgroups_tab_reads_the_containers_cgroup_files():
    cid = run_d("--name", "cgview", "busybox", "sleep", "60")

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_container(app, pilot, cid, "cgroups")
            await until(pilot, lambda: static_text(screen, "#cg-note").strip() != "", what="the cgroup note")
            note = static_text(screen, "#cg-note")
            if not note.startswith("cgroup "):
                assert "not" in note or "no cgroup" in note  # the engine has no cgroup for it: said so
                return
            files = screen.query_one("#cg-files", DataTable)
            await until(pilot, lambda: any("cgroup.procs" in f for f in column(files, "file")), what="files")
            procs = next(v for f, v in zip(column(files, "file"), column(files, "value"), strict=True)
                         if "cgroup.procs" in f)
            assert str(init_pid(cid)) in procs
            assert "OOM kills" in static_text(screen, "#cg-counters")

    asyncio.run(scenario())


def test_security_tab_shows_the_seccomp_profile_live_denials_and_masked_paths():
    # The default profile refuses mount(2) and unshare(CLONE_NEWUSER) with EPERM: two denials, a bit later.
    cid = run_d("--name", "denied", "busybox", "sh", "-c",
                "sleep 2; unshare -U true; mount -t tmpfs x /mnt; sleep 60")
    masked_here = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    assert masked_here, "no masked path of docker's list exists on this kernel"

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(140, 60)) as pilot:
            screen = await open_container(app, pilot, cid, "sec")
            await until(pilot, lambda: "seccomp profile: default" in static_text(screen, "#sec-body"),
                        what="the seccomp profile")
            body = static_text(screen, "#sec-body")
            assert "SCMP_ACT_ERRNO(EPERM)" in body and "syscalls allowed" in body
            await until(pilot, lambda: "denied mount" in static_text(screen, "#sec-body"), timeout=10,
                        what="the mount denial in the live feed")
            await until(pilot, lambda: "denied unshare" in static_text(screen, "#sec-body"), timeout=5,
                        what="the unshare denial")
            body = static_text(screen, "#sec-body")
            assert body.index("denied mount") < body.index("denied unshare"), "newest first"
            assert "denials: 2" in body
            mounted = next(line for line in body.splitlines() if line.startswith("masked paths mounted"))
            assert all(p in mounted for p in masked_here), mounted

    asyncio.run(scenario())


def test_network_tab_shows_the_host_veth_bridge_and_a_diagram():
    from engine import network

    cid = run_d("--name", "bridged", "--network", "bridge", "busybox", "sleep", "60")
    none = run_d("--name", "isolated", "--network", "none", "busybox", "sleep", "60")
    try:
        net = json.loads(cli("inspect", cid).stdout)[0]["NetworkSettings"]["Networks"]["bridge"]
        veth, bridge = net["HostVeth"], net["Bridge"]
        assert os.path.exists(f"/sys/class/net/{veth}")

        async def scenario() -> None:
            app = LabApp()
            async with app.run_test(size=(140, 40)) as pilot:
                screen = await open_container(app, pilot, cid, "net")
                await until(pilot, lambda: f"veth {veth} (up, master {bridge})" in static_text(screen, "#net-summary"),
                            what="the host veth, up and enslaved to the bridge")
                text = static_text(screen, "#net-summary")
                assert f"bridge {bridge} (" in text and "(missing)" not in text, text
                assert f"eth0 {net['IPAddress']} ══ veth ══ {veth} ── {bridge} ({net['Gateway']}/" in text
                app.pop_screen()
                screen = await open_container(app, pilot, none, "net")
                await until(pilot, lambda: "only lo, no link to the host" in static_text(screen, "#net-summary"),
                            what="the --network none diagram")

        asyncio.run(scenario())
    finally:
        cli("rm", "-f", cid, none, check=False)  # the network's users first, then the default network
        network.remove_network("bridge", lambda n: [], allow_default=True)
