"""bench/procfs.py: a process's descendants, CPU time and memory, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.procfs import cpu_seconds, memory_mib, process_tree

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")

# A parent that starts a grandchild in a session of its own (as Ray's workers do), prints its
# pid and waits.
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True)
print(child.pid, flush=True)
child.wait()
"""


def test_process_tree_holds_the_roots_and_every_descendant():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(parent.stdout.readline())
        assert process_tree([parent.pid]) == {parent.pid, grandchild}
        assert process_tree([grandchild]) == {grandchild}
        assert os.getpid() not in process_tree([parent.pid])
    finally:
        os.kill(grandchild, 9)
        parent.wait(30)
        parent.stdout.close()


def test_cpu_seconds_grow_with_work_and_memory_has_both_sets():
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) >= before + 0.1
    memory = memory_mib(os.getpid())
    assert set(memory) == {"VmRSS", "VmHWM"}
    assert 0 < memory["VmRSS"] <= memory["VmHWM"]


def test_a_process_that_is_gone_reads_as_none():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(done.stdout)
    assert cpu_seconds(pid) is None
    assert memory_mib(pid) == {}
    assert process_tree([pid]) == {pid}  # a root is kept: the caller asked about it
