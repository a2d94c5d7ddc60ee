"""The storage commands: exit status, output lines, one-line errors."""

from __future__ import annotations

import os

import pytest

from storage.cli import main, parse_size


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VMM_POOL", str(tmp_path / "pool"))

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err
    return run


def test_parse_size_understands_binary_units():
    assert [parse_size(s) for s in ("512", "64K", "1.5M", "2G", "10MiB")] == [
        512, 65536, 1572864, 2 << 30, 10 << 20]


def test_whole_workflow_from_init_to_disk_export(run, tmp_path):
    assert run("storage", "init", "--devices", "4", "--size", "32M")[0] == 0
    assert run("volume", "create", "fast", "--size", "8M", "--layout", "raid1", "--members", "2",
               "--tier", "fast")[0] == 0
    status, out, _ = run("volume", "create", "bulk", "--size", "24M", "--layout", "raid5",
                         "--members", "4")
    assert status == 0 and "volume bulk: 24.0 MiB raid5 over 4 device(s)" in out
    assert run("fs", "mkfs", "fast,bulk", "--rule", "/gold=fast")[0] == 0
    assert run("fs", "mkdir", "/vms")[0] == 0
    raw = tmp_path / "src.img"
    raw.write_bytes(os.urandom(1 << 20))
    assert run("disk", "import", str(raw), "/vms/g.dsk")[0] == 0
    assert run("disk", "snapshot", "/vms/g.dsk") == (0, "g.redo\n", "")
    status, out, _ = run("disk", "list", "/vms/g.dsk")
    assert out.splitlines() == ["2048 blocks of 512 bytes", "g.dsk", "g.redo"]
    assert run("disk", "export", "/vms/g.dsk", str(tmp_path / "out.img"))[0] == 0
    assert (tmp_path / "out.img").read_bytes() == raw.read_bytes()
    assert run("disk", "revert", "/vms/g.dsk")[1] == "g.dsk\n"
    status, out, _ = run("fs", "ls", "/vms")
    assert out.splitlines() == [f"g.dsk\t{1 << 20}\tbulk"]
    status, out, _ = run("fs", "fsck")
    assert (status, out.splitlines()[-1]) == (0, "clean")
    status, out, _ = run("volume", "status")
    assert status == 0 and "raid5" in out


def test_errors_are_one_line_with_status_1(run, tmp_path):
    status, out, err = run("storage", "status")
    assert status == 1 and err.count("\n") == 1 and err.startswith("vmm storage status: no pool devices")
    run("storage", "init", "--devices", "2", "--size", "8M")
    status, _, err = run("volume", "create", "v", "--size", "1G", "--layout", "raid1")
    assert status == 1 and err == ("vmm volume create: not enough space: need 2 device(s) with "
                                   "1073745920 free bytes each, 0 have it\n")
    status, _, err = run("disk", "commit", "--host", str(tmp_path / "none.dsk"))
    assert status == 1 and "none.dsk: no such disk" in err


def test_damaged_label_is_reported_by_name(run, tmp_path):
    run("storage", "init", "--devices", "2", "--size", "8M")
    dev = tmp_path / "pool" / "dev1.img"
    with open(dev, "r+b") as f:
        f.seek(20)
        f.write(b"\0\0\0\0")
    status, _, err = run("storage", "status")
    assert status == 1 and err == f"vmm storage status: {dev}: label damaged: checksum mismatch " \
                                  f"(stored {err.split('stored ')[1].split(',')[0]}, " \
                                  f"computed {err.split('computed ')[1]}"


def test_fail_replace_and_rebuild_from_the_command_line(run, tmp_path):
    run("storage", "init", "--devices", "3", "--size", "16M")
    run("volume", "create", "m", "--size", "4M", "--layout", "raid5", "--members", "3")
    from storage.volume import VolumeManager
    vm = VolumeManager.open(tmp_path / "pool")
    vm.volume("m").write(0, b"keep" * 1000)
    dev = vm.volume("m").rec.members[1].device
    vm.close()
    assert run("storage", "fail", dev[:8])[0] == 0
    status, out, _ = run("volume", "status")
    assert "degraded" in out
    assert run("storage", "replace", dev[:8], str(tmp_path / "pool" / "new.img"))[0] == 0
    vm = VolumeManager.open(tmp_path / "pool")
    assert vm.volume("m").state() == "ok"
    assert vm.volume("m").read(0, 4000) == b"keep" * 1000
    vm.close()


def test_host_disks_work_without_a_pool(run, tmp_path):
    d = tmp_path / "h.dsk"
    assert run("disk", "create", "--host", str(d), "--size", "1M", "--block-size", "4096")[1] == \
        f"{d}: 256 blocks of 4096 bytes\n"
    assert run("disk", "snapshot", "--host", str(d))[1] == "h.redo\n"
    assert run("disk", "commit", "--host", str(d))[1] == "h.dsk\n"


def test_register_adds_commands_to_an_existing_vmm_parser(tmp_path):
    import argparse

    from storage.cli import register
    parser = argparse.ArgumentParser(prog="vmm")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").set_defaults(func=lambda a: 0)
    register(sub)
    args = parser.parse_args(["storage", "init", "--pool", str(tmp_path / "p"), "--devices", "2",
                              "--size", "8M"])
    assert args.func(args) == 0
    args = parser.parse_args(["volume", "status", "--pool", str(tmp_path / "p")])
    assert args.command == "volume" and args.func(args) == 0


def test_grow_refuses_to_shrink_and_rebuild_reports_states(run):
    run("storage", "init", "--devices", "3", "--size", "16M")
    run("volume", "create", "v", "--size", "4M", "--layout", "raid5", "--members", "3")
    status, _, err = run("volume", "grow", "v", "--size", "2M")
    assert status == 1 and err == ("vmm volume grow: volume v: 2.0 MiB is smaller than its "
                                   "4.0 MiB; grow only grows\n")
    assert run("volume", "grow", "v", "--size", "5M")[1] == "volume v: now 5.0 MiB\n"
    assert run("storage", "rebuild") == (0, "v: ok\n", "")
