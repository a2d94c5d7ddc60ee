"""Asking a running `vmm run` to suspend: `vmm suspend SOCKET IMAGE` through its control
socket, and SIGUSR1 with --image; then `vmm resume` finishes the run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.helpers import REPO, guest

# About 5 s of guest work: the suspend must land before the guest's end, even on a fast
# machine and after a slow start of the `vmm suspend` process.
ITERATIONS = 1000


def start_cpubench(*extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vmm", "run", str(guest("cpubench")), "--append", f"iterations={ITERATIONS} timer=100",
         "--max-seconds", "120", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO,
    )


def wait_for(path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def resume_to_the_end(image) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmm", "resume", str(image), "--max-seconds", "120"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_vmm_suspend_through_the_control_socket_then_resume(tmp_path):
    sock, image = tmp_path / "vm.sock", tmp_path / "vm.image"
    vm = start_cpubench("--control", str(sock))
    wait_for(sock)
    time.sleep(0.5)
    suspend = subprocess.run([sys.executable, "-m", "vmm", "suspend", str(sock), str(image)],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    out, err = vm.communicate(timeout=120)
    assert suspend.returncode == 0, suspend.stderr
    assert suspend.stdout.strip() == str(image)
    assert vm.returncode == 105
    assert "suspended to" in err.decode()
    finish = resume_to_the_end(image)
    assert finish.returncode == 0
    printed = out.decode() + finish.stdout
    assert printed.count(f"iterations: {ITERATIONS}") == 1 and printed.endswith("PASS cpubench\n")


def test_sigusr1_suspends_to_the_image_named_by_image(tmp_path):
    image = tmp_path / "vm.image"
    vm = start_cpubench("--image", str(image))
    first = vm.stdout.readline()  # the guest runs
    assert first == f"iterations: {ITERATIONS}\n".encode()
    vm.send_signal(signal.SIGUSR1)
    out, err = vm.communicate(timeout=120)
    out = first + out
    assert vm.returncode == 105, err.decode()
    assert image.exists()
    finish = resume_to_the_end(image)
    assert finish.returncode == 0
    printed = out.decode() + finish.stdout
    assert printed.count(f"iterations: {ITERATIONS}") == 1 and printed.endswith("PASS cpubench\n")  # not started over


def test_vmm_suspend_without_a_vm_says_so(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vmm", "suspend", str(tmp_path / "none.sock"), str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert "no VM listens" in proc.stderr
