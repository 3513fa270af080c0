# joulebench accelerator overlay: package the RTL as an IP (AXI4-Lite control + AXI4 memory master),
# build the block design for a board, and write the .bit + .hwh that pynq.Overlay loads.
#
#   vivado -mode batch -source targets/fpga/vivado/build.tcl \
#          -tclargs <board> <TMxTN> <weight_mode> <act_bits> <clock_mhz>
#   e.g.   -tclargs zcu104 16x16 int8 8 200
#
# board: pynq-z2 (Zynq-7000, PS7) | ultra96-v2 | zcu104 | kv260 | zcu102 (Zynq UltraScale+, PS8)
# Output: build/<board>-<weight_mode>-a<act_bits>-<TM>x<TN>/jb_accel.{bit,hwh}; the accelerator's
# instance is jb_accel_0 (the board agent's default --ip). Board files must be installed for the board
# part (Vivado's XHub store); JB_BOARD_PART overrides the board part below if yours has another version.

if {[llength $argv] != 5} {
    puts "usage: vivado -mode batch -source build.tcl -tclargs <board> <TMxTN> <weight_mode> <act_bits> <clock_mhz>"
    exit 2
}
lassign $argv board array weight_mode act_bits clock_mhz

set here [file dirname [file normalize [info script]]]
set rtl_dir [file normalize [file join $here .. rtl]]
# the RTL, in the order targets/fpga/design.py RTL_FILES names it, and the AXI wrapper
set rtl_files [list \
    [file join $rtl_dir jb_accel.v] \
    [file join $rtl_dir jb_requant.v] \
    [file join $rtl_dir jb_ram.v] \
    [file join $here jb_accel_axi.v]]

# board -> {part board_part ps}: parts as in targets/devices/catalog.toml
set boards [dict create \
    pynq-z2    {xc7z020clg400-1      tul.com.tw:pynq-z2:part0:1.0        ps7} \
    ultra96-v2 {xczu3eg-sbva484-1-i  avnet.com:ultra96v2:part0:1.2       ps8} \
    zcu104     {xczu7ev-ffvc1156-2-e xilinx.com:zcu104:part0:1.1         ps8} \
    kv260      {xck26-sfvc784-2LV-c  xilinx.com:kv260_som:part0:1.4      ps8} \
    zcu102     {xczu9eg-ffvb1156-2-e xilinx.com:zcu102:part0:3.4         ps8}]
if {![dict exists $boards $board]} {
    puts "unknown board '$board' (expected one of: [join [dict keys $boards] {, }])"
    exit 2
}
lassign [dict get $boards $board] part board_part ps
if {[info exists ::env(JB_BOARD_PART)]} { set board_part $::env(JB_BOARD_PART) }

if {![regexp {^([0-9]+)x([0-9]+)$} $array -> tm tn]} {
    puts "array must look like TMxTN (e.g. 16x16), got '$array'"
    exit 2
}
set modes [dict create int16 0 int8 1 int4 2 ternary 3 binary 4]
if {![dict exists $modes $weight_mode]} {
    puts "weight_mode must be one of [join [dict keys $modes] {, }], got '$weight_mode'"
    exit 2
}
set wmode [dict get $modes $weight_mode]
if {$act_bits ni {8 16}} { puts "act_bits must be 8 or 16, got '$act_bits'"; exit 2 }

set label "$weight_mode-a$act_bits-${tm}x$tn"
set out_dir [file normalize [file join build "$board-$label"]]
set ip_dir [file join $out_dir ip]
set jobs [expr {[info exists ::env(JB_JOBS)] ? $::env(JB_JOBS) : 4}]
file mkdir $out_dir

# ------------------------------------------------------------------------------ 1. package the IP
create_project -force jb_ip [file join $out_dir ip_project] -part $part
add_files -norecurse $rtl_files
set_property top jb_accel_axi [current_fileset]
update_compile_order -fileset sources_1
# the AXI ports follow Vivado's naming (s_axi_*, m_axi_*, aclk, aresetn, interrupt): inferred as interfaces
ipx::package_project -root_dir $ip_dir -vendor joulebench.org -library user -taxonomy /UserIP -import_files \
    -set_current true
set core [ipx::current_core]
set_property name jb_accel_axi $core
set_property display_name "joulebench block-sparse accelerator" $core
set_property version 1.0 $core
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::save_core $core
close_project

# ------------------------------------------------------------------------------ 2. block design
create_project -force jb_overlay [file join $out_dir project] -part $part
if {[catch {set_property board_part $board_part [current_project]} err]} {
    puts "board part $board_part is not installed ($err): install the board files or set JB_BOARD_PART"
    exit 1
}
set_property ip_repo_paths $ip_dir [current_project]
update_ip_catalog
create_bd_design jb_accel

set accel [create_bd_cell -type ip -vlnv joulebench.org:user:jb_accel_axi:1.0 jb_accel_0]
set_property -dict [list CONFIG.TM $tm CONFIG.TN $tn CONFIG.WMODE $wmode CONFIG.ABITS $act_bits] $accel

if {$ps eq "ps7"} {
    # Zynq-7000: M_AXI_GP0 for control, S_AXI_HP0 (64 bit) for memory, FCLK_CLK0 for the fabric
    set psi [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:* ps]
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"} $psi
    set_property -dict [list CONFIG.PCW_USE_M_AXI_GP0 1 CONFIG.PCW_USE_S_AXI_HP0 1 \
        CONFIG.PCW_S_AXI_HP0_DATA_WIDTH 64 CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $clock_mhz \
        CONFIG.PCW_USE_FABRIC_INTERRUPT 1 CONFIG.PCW_IRQ_F2P_INTR 1] $psi
    set ctrl_master /ps/M_AXI_GP0
    set mem_slave /ps/S_AXI_HP0
    set fclk /ps/FCLK_CLK0
    set irq_pin [get_bd_pins ps/IRQ_F2P]
} else {
    # Zynq UltraScale+: M_AXI_HPM0_FPD for control, S_AXI_HP0_FPD (SAXIGP2, 64 bit) for memory, pl_clk0
    set psi [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e:* ps]
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $psi
    set_property -dict [list CONFIG.PSU__USE__M_AXI_GP0 1 CONFIG.PSU__USE__M_AXI_GP1 0 \
        CONFIG.PSU__USE__M_AXI_GP2 0 CONFIG.PSU__USE__S_AXI_GP2 1 CONFIG.PSU__SAXIGP2__DATA_WIDTH 64 \
        CONFIG.PSU__FPGA_PL0_ENABLE 1 CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $clock_mhz \
        CONFIG.PSU__USE__IRQ0 1] $psi
    set ctrl_master /ps/M_AXI_HPM0_FPD
    set mem_slave /ps/S_AXI_HP0_FPD
    set fclk /ps/pl_clk0
    set irq_pin [get_bd_pins ps/pl_ps_irq0]
}

# interconnects, resets and clocks by Vivado's own automation, all on the one fabric clock
apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
    -config [list Clk_master $fclk Clk_slave $fclk Clk_xbar $fclk Master $ctrl_master Slave /jb_accel_0/s_axi \
             intc_ip {New AXI Interconnect} master_apm 0] [get_bd_intf_pins jb_accel_0/s_axi]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
    -config [list Clk_master $fclk Clk_slave $fclk Clk_xbar $fclk Master /jb_accel_0/m_axi Slave $mem_slave \
             intc_ip {Auto} master_apm 0] [get_bd_intf_pins $mem_slave]
connect_bd_net [get_bd_pins jb_accel_0/interrupt] $irq_pin

assign_bd_address
validate_bd_design
save_bd_design

# ------------------------------------------------------------------------------ 3. implement
set bd_file [get_files jb_accel.bd]
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top jb_accel_wrapper [current_fileset]
update_compile_order -fileset sources_1
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    puts "implementation failed: see [file join $out_dir project jb_overlay.runs impl_1]"
    exit 1
}
set timing [get_property STATS.WNS [get_runs impl_1]]
if {$timing < 0} {
    puts "WARNING: timing not met at $clock_mhz MHz (WNS $timing ns): lower clock_mhz"
}

# pynq wants the .bit and the .hwh side by side, same name
file copy -force [glob [file join $out_dir project jb_overlay.runs impl_1 *.bit]] [file join $out_dir jb_accel.bit]
# hw_handoff lives under .gen (Vivado 2020.2 and later) or .srcs (earlier)
set hwh [glob -nocomplain [file join $out_dir project jb_overlay.gen sources_1 bd jb_accel hw_handoff *.hwh] \
                          [file join $out_dir project jb_overlay.srcs sources_1 bd jb_accel hw_handoff *.hwh]]
file copy -force [lindex $hwh 0] [file join $out_dir jb_accel.hwh]
puts "overlay: [file join $out_dir jb_accel.bit] (+ .hwh), design $label at $clock_mhz MHz on $board"
