"""Helpers shared by the benchmark scripts: machine description and RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}; Python {platform.python_version()}"


def record(title: str, command: str, table: str, data: dict) -> None:
    """Print the table and a JSON line, and append both to RESULTS.md."""
    print(table)
    print(json.dumps(data))
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(f"\n## {title}\n\n- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
                f"- machine: {machine()}\n- command: `{command}`\n\n{table}\n\n"
                f"```json\n{json.dumps(data)}\n```\n")
