"""FPGA backend core: a block-sparse GEMM accelerator in Verilog (rtl/), its cycle-accurate Verilator
simulation (sim.py), Yosys resource estimates (synth.py), and the integer layer model shared by the
compiler, the simulator and the numpy reference (layer.py, reference.py)."""

from __future__ import annotations


class FpgaError(Exception):
    """A one-line, user-facing error of the FPGA backend (bad design point, layer, program or tool)."""


__all__ = ["FpgaError"]
