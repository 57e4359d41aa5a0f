"""What a result ran on: CPU model and count (``/proc/cpuinfo``), memory (``free``), load, versions."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any


def describe() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        free = subprocess.run(["free", "-m"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        free = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"commit": commit, "cpu_model": model, "cpus": os.cpu_count(), "free_m": free, "load_avg": os.getloadavg(),
            "python": platform.python_version(), "kernel": platform.release()}  # fmt: skip
