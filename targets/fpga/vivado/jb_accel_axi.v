// jb_accel_axi: the accelerator (rtl/jb_accel.v) as a Zynq IP.
//   s_axi  AXI4-Lite slave, 32-bit: the accelerator's register file at the same byte offsets (CTRL 0x00,
//          STATUS 0x04, PROG/IN/OUT base 0x08..0x10, HWINFO 0x14, 64-bit counters from 0x20).
//   m_axi  AXI4 master, 64-bit data: its memory port. Read bursts pass through (ARLEN = len - 1), split
//          where one would cross a 4 KB boundary (AXI forbids it); R beats return in order on one ID, so
//          the split is invisible to the accelerator. Writes are single beats (AWLEN = 0) with AW and W
//          issued together, one per cycle at best; up to 2^OWB - 1 writes may await their B response.
// STATUS reads report busy (bit 0) and hide done (bit 1) until every write has its B response: the
// host must not read the outputs while they are still on their way to DDR.
`default_nettype none
module jb_accel_axi #(
    parameter TM = 16,
    parameter TN = 16,
    parameter WMODE = 1,
    parameter ABITS = 8,
    parameter IN_DEPTH = 2048,
    parameter W_DEPTH = 8192,
    parameter IDX_DEPTH = 8192,
    parameter RB_DEPTH = 64,
    parameter OWB = 4               // outstanding-write counter bits
) (
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axi:m_axi, ASSOCIATED_RESET aresetn" *)
    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)
    input  wire        aclk,
    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)
    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)
    input  wire        aresetn,
    // AXI4-Lite slave: control
    input  wire [11:0] s_axi_awaddr,
    input  wire        s_axi_awvalid,
    output wire        s_axi_awready,
    input  wire [31:0] s_axi_wdata,
    input  wire [3:0]  s_axi_wstrb,
    input  wire        s_axi_wvalid,
    output wire        s_axi_wready,
    output wire [1:0]  s_axi_bresp,
    output reg         s_axi_bvalid,
    input  wire        s_axi_bready,
    input  wire [11:0] s_axi_araddr,
    input  wire        s_axi_arvalid,
    output wire        s_axi_arready,
    output reg  [31:0] s_axi_rdata,
    output wire [1:0]  s_axi_rresp,
    output reg         s_axi_rvalid,
    input  wire        s_axi_rready,
    // AXI4 master: memory
    output wire [31:0] m_axi_araddr,
    output wire [7:0]  m_axi_arlen,
    output wire [2:0]  m_axi_arsize,
    output wire [1:0]  m_axi_arburst,
    output wire [3:0]  m_axi_arcache,
    output wire [2:0]  m_axi_arprot,
    output wire        m_axi_arvalid,
    input  wire        m_axi_arready,
    input  wire [63:0] m_axi_rdata,
    input  wire [1:0]  m_axi_rresp,
    input  wire        m_axi_rlast,
    input  wire        m_axi_rvalid,
    output wire        m_axi_rready,
    output wire [31:0] m_axi_awaddr,
    output wire [7:0]  m_axi_awlen,
    output wire [2:0]  m_axi_awsize,
    output wire [1:0]  m_axi_awburst,
    output wire [3:0]  m_axi_awcache,
    output wire [2:0]  m_axi_awprot,
    output wire        m_axi_awvalid,
    input  wire        m_axi_awready,
    output wire [63:0] m_axi_wdata,
    output wire [7:0]  m_axi_wstrb,
    output wire        m_axi_wlast,
    output wire        m_axi_wvalid,
    input  wire        m_axi_wready,
    input  wire [1:0]  m_axi_bresp,
    input  wire        m_axi_bvalid,
    output wire        m_axi_bready,
    /* verilator lint_off SYMRSVDWORD */  // Vivado infers the interrupt interface from this name
    output wire        interrupt
    /* verilator lint_on SYMRSVDWORD */
);
    wire rst = !aresetn;

    // ---------------------------------------------------------------- AXI4-Lite -> register file
    // A write needs AW and W together (one reg_we cycle). A read strobes reg_re with the address; the
    // register file answers the cycle after (registered reads), when R becomes valid. Writes win a
    // cycle where both are pending.
    reg         rd_wait, rd_status;
    wire        wr_go = s_axi_awvalid && s_axi_wvalid && !s_axi_bvalid;
    wire        rd_go = s_axi_arvalid && !s_axi_rvalid && !rd_wait && !wr_go;
    assign s_axi_awready = wr_go;
    assign s_axi_wready = wr_go;
    assign s_axi_arready = rd_go;
    assign s_axi_bresp = 2'b00;
    assign s_axi_rresp = 2'b00;

    wire        reg_we = wr_go && s_axi_wstrb == 4'hF;  // the registers are whole words
    wire        reg_re = rd_go;
    wire [11:0] reg_addr = wr_go ? s_axi_awaddr : s_axi_araddr;
    wire [31:0] reg_rdata;

    reg [OWB-1:0] wr_pending;  // writes issued, B not yet received
    always @(posedge aclk) begin
        if (rst) begin
            s_axi_bvalid <= 0; s_axi_rvalid <= 0; s_axi_rdata <= 0; rd_wait <= 0; rd_status <= 0;
        end else begin
            if (wr_go) s_axi_bvalid <= 1;
            else if (s_axi_bready) s_axi_bvalid <= 0;
            if (rd_go) begin
                rd_wait <= 1;
                rd_status <= {s_axi_araddr[11:2], 2'b00} == 12'h004;
            end else if (rd_wait) begin
                rd_wait <= 0;
                s_axi_rvalid <= 1;
                s_axi_rdata <= rd_status && wr_pending != 0 ? {reg_rdata[31:2], 1'b0, 1'b1} : reg_rdata;
            end else if (s_axi_rready) s_axi_rvalid <= 0;
        end
    end

    // ---------------------------------------------------------------- the accelerator
    wire        rd_req_valid, rd_req_ready, rd_ready, wr_valid, wr_ready, irq;
    wire [31:0] rd_req_addr, wr_addr;
    wire [8:0]  rd_req_len;
    wire [63:0] wr_data;
    wire [7:0]  wr_strb;

    jb_accel #(.TM(TM), .TN(TN), .WMODE(WMODE), .ABITS(ABITS), .IN_DEPTH(IN_DEPTH), .W_DEPTH(W_DEPTH),
               .IDX_DEPTH(IDX_DEPTH), .RB_DEPTH(RB_DEPTH)) accel (
        .clk(aclk), .rst(rst),
        .reg_we(reg_we), .reg_re(reg_re), .reg_addr(reg_addr), .reg_wdata(s_axi_wdata), .reg_rdata(reg_rdata),
        .rd_req_valid(rd_req_valid), .rd_req_ready(rd_req_ready), .rd_req_addr(rd_req_addr),
        .rd_req_len(rd_req_len), .rd_valid(m_axi_rvalid), .rd_ready(rd_ready), .rd_data(m_axi_rdata),
        .wr_valid(wr_valid), .wr_ready(wr_ready), .wr_addr(wr_addr), .wr_data(wr_data), .wr_strb(wr_strb),
        .irq(irq)
    );
    assign m_axi_rready = rd_ready;
    assign interrupt = irq && wr_pending == 0;

    // ---------------------------------------------------------------- read requests -> AR (4 KB split)
    reg         ar_busy;
    reg  [31:0] ar_addr;
    reg  [8:0]  ar_left;                                  // beats still to request, 1..256
    wire [9:0]  to_4k = 10'd512 - {1'b0, ar_addr[11:3]};  // beats before the next 4 KB boundary
    wire [8:0]  ar_beats = {1'b0, ar_left} > to_4k ? to_4k[8:0] : ar_left;
    assign rd_req_ready = !ar_busy;
    assign m_axi_arvalid = ar_busy;
    assign m_axi_araddr = ar_addr;
    assign m_axi_arlen = ar_beats - 9'd1;
    assign m_axi_arsize = 3'd3;     // 8 bytes per beat
    assign m_axi_arburst = 2'b01;   // INCR
    assign m_axi_arcache = 4'b0011; // normal, non-cacheable, bufferable (the host flushes/invalidates)
    assign m_axi_arprot = 3'b000;

    always @(posedge aclk) begin
        if (rst) begin
            ar_busy <= 0; ar_addr <= 0; ar_left <= 0;
        end else if (!ar_busy) begin
            if (rd_req_valid) begin
                ar_busy <= 1; ar_addr <= rd_req_addr; ar_left <= rd_req_len;
            end
        end else if (m_axi_arready) begin
            if (ar_left == ar_beats) ar_busy <= 0;
            ar_addr <= ar_addr + {20'd0, ar_beats, 3'd0};
            ar_left <= ar_left - ar_beats;
        end
    end

    // ---------------------------------------------------------------- write beats -> AW + W (+ B)
    reg         aw_v, w_v;
    reg  [31:0] aw_addr;
    reg  [63:0] w_data;
    reg  [7:0]  w_strb;
    // a new beat may enter in the cycle its predecessor's AW and W handshakes complete: one beat per cycle
    wire        slot_free = (!aw_v || m_axi_awready) && (!w_v || m_axi_wready) && wr_pending != {OWB{1'b1}};
    assign wr_ready = slot_free;
    assign m_axi_awvalid = aw_v;
    assign m_axi_awaddr = aw_addr;
    assign m_axi_awlen = 8'd0;
    assign m_axi_awsize = 3'd3;
    assign m_axi_awburst = 2'b01;
    assign m_axi_awcache = 4'b0011;
    assign m_axi_awprot = 3'b000;
    assign m_axi_wvalid = w_v;
    assign m_axi_wdata = w_data;
    assign m_axi_wstrb = w_strb;
    assign m_axi_wlast = 1'b1;
    assign m_axi_bready = 1'b1;

    wire issue = wr_valid && slot_free;
    always @(posedge aclk) begin
        if (rst) begin
            aw_v <= 0; w_v <= 0; aw_addr <= 0; w_data <= 0; w_strb <= 0; wr_pending <= 0;
        end else begin
            if (issue) begin
                aw_v <= 1; w_v <= 1; aw_addr <= {wr_addr[31:3], 3'b000}; w_data <= wr_data; w_strb <= wr_strb;
            end else begin
                if (m_axi_awready) aw_v <= 0;
                if (m_axi_wready) w_v <= 0;
            end
            wr_pending <= wr_pending + {{(OWB-1){1'b0}}, issue} - {{(OWB-1){1'b0}}, m_axi_bvalid};
        end
    end
endmodule
`default_nettype wire
