"""The GPUs of a run's slot, as device nodes to bind into its sandbox (and no others)."""

from __future__ import annotations

import os
from pathlib import Path

# GPU nodes every CUDA process needs besides its own /dev/nvidiaN.
_NVIDIA_SHARED = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def gpu_devices(
    gpu_ids: str | None,
    dev: str | os.PathLike[str] = "/dev",
    driver: str | os.PathLike[str] = "/proc/driver/nvidia/gpus",
) -> tuple[str, ...]:
    """The device nodes of the slot's GPUs and the shared NVIDIA nodes, none of the others.

    ``gpu_ids`` are CUDA indices in PCI bus order (the sandbox sets ``CUDA_DEVICE_ORDER=
    PCI_BUS_ID``); index i is the i-th GPU in the driver's list sorted by bus id, whose node
    is ``/dev/nvidia<minor>``. None or an empty string: no GPU nodes at all.
    """
    if not gpu_ids:
        return ()
    dev, driver = Path(dev), Path(driver)
    minors = _minors_by_bus_id(driver)
    nodes: list[str] = []
    for raw in gpu_ids.split(","):
        raw = raw.strip()
        if not raw.isdigit():
            raise ValueError(f"gpu id {raw!r} is not a CUDA index (a number)")
        index = int(raw)
        minor = minors[index] if index < len(minors) else index
        node = dev / f"nvidia{minor}"
        if node.exists():
            nodes.append(str(node))
    if not nodes:
        return ()
    shared = [str(dev / n) for n in _NVIDIA_SHARED if (dev / n).exists()]
    caps = dev / "nvidia-caps"
    if caps.is_dir():
        shared.append(str(caps))
    return (*nodes, *shared)


def _minors_by_bus_id(driver: Path) -> list[int]:
    minors = []
    try:
        entries = sorted(driver.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return []
    for gpu in entries:
        try:
            for line in (gpu / "information").read_text().splitlines():
                if line.startswith("Device Minor:"):
                    minors.append(int(line.split(":", 1)[1]))
        except (OSError, ValueError):
            continue
    return minors
