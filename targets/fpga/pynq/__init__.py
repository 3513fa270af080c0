"""fpga-pynq: the fpga-sim artifact run on a PYNQ-class Zynq board through a board agent
(agent.py, on the board) speaking protocol.py with the host-side target (target.py)."""
