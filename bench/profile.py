"""Where the hub's time goes: py-spy attached to the hub process while the scenarios run.

Writes py-spy's collapsed stacks (for flame graph tools) and a summary of the
functions with the most samples, self and inclusive.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path


class Profiler:
    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        spy = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        self.raw = out / "profile-hub.txt"
        self.summary = out / "profile-hub-top.txt"
        out.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--nonblocking", "--output", str(self.raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        """End the recording (py-spy writes its file on SIGINT) and summarise it."""
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=60)
        if self.raw.exists():
            self.summary.write_text(summarise(self.raw.read_text()))


def summarise(collapsed: str, top: int = 40) -> str:
    """The functions with the most samples: self (on top of the stack) and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
