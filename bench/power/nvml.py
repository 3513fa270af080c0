"""NVML (nvidia-ml-py): board power in mW and, where the GPU has it, the total-energy counter in mJ."""

from __future__ import annotations

from bench.api import MeterError, PolledMeter


def _pynvml():
    try:
        import pynvml
    except ImportError:
        raise MeterError("nvidia-ml-py is not installed: pip install 'joulebench[nvml]'") from None
    return pynvml


class NvmlMeter(PolledMeter):
    name = "nvml"
    unit = "W"  # switches to "J" where the GPU has a total-energy counter

    def __init__(self, index: int = 0, use_energy_counter: bool = True, period_s: float = 0.02) -> None:
        super().__init__(period_s)
        self.index, self.use_energy_counter = index, use_energy_counter
        self._handle = None

    def check(self) -> None:
        nv = _pynvml()
        try:
            nv.nvmlInit()
            self._handle = nv.nvmlDeviceGetHandleByIndex(self.index)
        except nv.NVMLError as exc:
            raise MeterError(f"NVML unavailable: {exc} (no NVIDIA driver or GPU {self.index})") from None
        if self.use_energy_counter:
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                self.unit = "J"  # Volta and newer: a true energy counter beats sampled power
            except nv.NVMLError:
                self.unit = "W"

    def read(self) -> float:
        nv = _pynvml()
        if self.unit == "J":
            return nv.nvmlDeviceGetTotalEnergyConsumption(self._handle) * 1e-3  # mJ -> J
        return nv.nvmlDeviceGetPowerUsage(self._handle) * 1e-3  # mW -> W
