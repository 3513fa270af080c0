// Simple dual-port RAM: one write port, one registered read port with read enable.
// Written in the template Yosys (memory_bram / memory_libmap) and Vivado both infer as block RAM
// (RAMB18/36 in simple-dual-port mode) or, when small, distributed RAM.
`default_nettype none
module jb_ram #(
    parameter W = 64,
    parameter D = 1024
) (
    input  wire                 clk,
    input  wire                 we,
    input  wire [$clog2(D)-1:0] wa,
    input  wire [W-1:0]         wd,
    input  wire                 re,
    input  wire [$clog2(D)-1:0] ra,
    output reg  [W-1:0]         rd
);
    reg [W-1:0] mem [0:D-1];
    always @(posedge clk) begin
        if (we) mem[wa] <= wd;
        if (re) rd <= mem[ra];
    end
endmodule
`default_nettype wire
