// Testbench of jb_accel_axi (Verilator --binary --timing): an AXI-Lite master that programs the
// registers and polls STATUS as the board agent does, and an AXI slave memory with random back-pressure
// on every channel, several reads and writes in flight, and a check that no read burst crosses 4 KB.
// mem.hex (64-bit words) in, out.hex (the output region) and one RESULT line out.
`timescale 1ns / 1ps
module tb #(
    parameter TM = 8, parameter TN = 8, parameter WMODE = 1, parameter ABITS = 8,
    parameter MEM_WORDS = 65536, parameter PROG = 0, parameter IN = 0, parameter OUT = 0, parameter OUT_WORDS = 1
);
    reg clk = 0, rstn = 0;
    always #5 clk = ~clk;
    reg [15:0] lfsr = 16'hACE1;
    always @(posedge clk) lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};

    reg  [11:0] awaddr = 0, araddr = 0;
    reg  [31:0] wdata = 0;
    reg         awvalid = 0, wvalid = 0, arvalid = 0;
    wire        awready, wready, bvalid, arready, rvalid;
    wire [1:0]  bresp, rresp;
    wire [31:0] rdata;
    wire [31:0] m_araddr, m_awaddr;
    wire [7:0]  m_arlen, m_awlen, m_wstrb;
    wire [2:0]  m_arsize, m_awsize, m_arprot, m_awprot;
    wire [1:0]  m_arburst, m_awburst;
    wire [3:0]  m_arcache, m_awcache;
    wire        m_arvalid, m_rready, m_awvalid, m_wvalid, m_wlast, m_bready, irq;
    wire [63:0] m_wdata;
    wire        m_arready, m_rvalid, m_rlast, m_awready, m_wready, m_bvalid;
    wire [63:0] m_rdata;

    jb_accel_axi #(.TM(TM), .TN(TN), .WMODE(WMODE), .ABITS(ABITS)) dut (
        .aclk(clk), .aresetn(rstn),
        .s_axi_awaddr(awaddr), .s_axi_awvalid(awvalid), .s_axi_awready(awready), .s_axi_wdata(wdata),
        .s_axi_wstrb(4'hF), .s_axi_wvalid(wvalid), .s_axi_wready(wready), .s_axi_bresp(bresp),
        .s_axi_bvalid(bvalid), .s_axi_bready(1'b1), .s_axi_araddr(araddr), .s_axi_arvalid(arvalid),
        .s_axi_arready(arready), .s_axi_rdata(rdata), .s_axi_rresp(rresp), .s_axi_rvalid(rvalid),
        .s_axi_rready(1'b1),
        .m_axi_araddr(m_araddr), .m_axi_arlen(m_arlen), .m_axi_arsize(m_arsize), .m_axi_arburst(m_arburst),
        .m_axi_arcache(m_arcache), .m_axi_arprot(m_arprot), .m_axi_arvalid(m_arvalid), .m_axi_arready(m_arready),
        .m_axi_rdata(m_rdata), .m_axi_rresp(2'b00), .m_axi_rlast(m_rlast), .m_axi_rvalid(m_rvalid),
        .m_axi_rready(m_rready), .m_axi_awaddr(m_awaddr), .m_axi_awlen(m_awlen), .m_axi_awsize(m_awsize),
        .m_axi_awburst(m_awburst), .m_axi_awcache(m_awcache), .m_axi_awprot(m_awprot),
        .m_axi_awvalid(m_awvalid), .m_axi_awready(m_awready), .m_axi_wdata(m_wdata), .m_axi_wstrb(m_wstrb),
        .m_axi_wlast(m_wlast), .m_axi_wvalid(m_wvalid), .m_axi_wready(m_wready), .m_axi_bresp(2'b00),
        .m_axi_bvalid(m_bvalid), .m_axi_bready(m_bready), .interrupt(irq)
    );

    // ------------------------------------------------------------------ slave memory
    reg [63:0] mem [0:MEM_WORDS-1];
    reg [31:0] arq_a [0:15];
    reg [8:0]  arq_n [0:15];
    reg [3:0]  ar_h = 0, ar_t = 0;
    assign m_arready = lfsr[0] && (ar_t + 4'd1) != ar_h;
    reg        r_act = 0;
    reg [31:0] r_addr = 0;
    reg [8:0]  r_cnt = 0;
    assign m_rvalid = r_act && lfsr[1];
    assign m_rdata = mem[r_addr[31:3]];
    assign m_rlast = r_cnt == 9'd1;
    reg [31:0] awq [0:15];
    reg [63:0] wq_d [0:15];
    reg [7:0]  wq_s [0:15];
    reg [3:0]  aw_h = 0, aw_t = 0, w_h = 0, w_t = 0;
    reg [4:0]  bcount = 0;
    assign m_awready = lfsr[2] && (aw_t + 4'd1) != aw_h;
    assign m_wready = lfsr[3] && (w_t + 4'd1) != w_h;
    assign m_bvalid = bcount != 0 && lfsr[4];
    wire   commit = aw_h != aw_t && w_h != w_t;
    integer i;
    always @(posedge clk) begin
        if (m_arvalid && m_arready) begin
            if ({20'd0, m_araddr[11:0]} + ({24'd0, m_arlen} + 32'd1) * 32'd8 > 32'd4096) begin
                $display("RESULT fail read burst at %h, %0d beats crosses 4 KB", m_araddr, m_arlen + 1);
                $finish;
            end
            arq_a[ar_t] <= m_araddr; arq_n[ar_t] <= {1'b0, m_arlen} + 9'd1; ar_t <= ar_t + 4'd1;
        end
        if (!r_act && ar_h != ar_t) begin
            r_act <= 1; r_addr <= arq_a[ar_h]; r_cnt <= arq_n[ar_h]; ar_h <= ar_h + 4'd1;
        end else if (r_act && m_rvalid && m_rready) begin
            r_addr <= r_addr + 32'd8; r_cnt <= r_cnt - 9'd1;
            if (r_cnt == 9'd1) r_act <= 0;
        end
        if (m_awvalid && m_awready) begin awq[aw_t] <= m_awaddr; aw_t <= aw_t + 4'd1; end
        if (m_wvalid && m_wready) begin wq_d[w_t] <= m_wdata; wq_s[w_t] <= m_wstrb; w_t <= w_t + 4'd1; end
        if (commit) begin
            for (i = 0; i < 8; i = i + 1)
                if (wq_s[w_h][i]) mem[awq[aw_h][31:3]][i*8 +: 8] <= wq_d[w_h][i*8 +: 8];
            aw_h <= aw_h + 4'd1; w_h <= w_h + 4'd1;
        end
        bcount <= bcount + {4'd0, commit} - {4'd0, m_bvalid && m_bready};
    end

    // ------------------------------------------------------------------ AXI-Lite master (the agent's steps)
    task automatic reg_write(input [11:0] a, input [31:0] d);
        begin
            @(negedge clk); awaddr = a; wdata = d; awvalid = 1; wvalid = 1;
            @(posedge clk); while (!(awready && wready)) @(posedge clk);
            @(negedge clk); awvalid = 0; wvalid = 0;
            @(posedge clk);
        end
    endtask
    task automatic reg_read(input [11:0] a, output [31:0] d);
        begin
            @(negedge clk); araddr = a; arvalid = 1;
            @(posedge clk); while (!arready) @(posedge clk);
            @(negedge clk); arvalid = 0;
            while (!rvalid) @(negedge clk);  // registered reads: R comes a cycle or more after AR
            d = rdata;
        end
    endtask

    reg [31:0] status, lo, hi, hw;
    integer polls;
    initial begin
        $readmemh("mem.hex", mem);
        repeat (8) @(posedge clk);
        rstn = 1;
        repeat (4) @(posedge clk);
        reg_read(12'h014, hw);
        reg_write(12'h008, PROG);
        reg_write(12'h00C, IN);
        reg_write(12'h010, OUT);
        reg_write(12'h000, 1);
        polls = 0;
        status = 1;
        while (!((status & 6) != 0 && (status & 1) == 0)) begin
            reg_read(12'h004, status);
            polls = polls + 1;
            if (polls > 2000000) begin $display("RESULT fail timeout status %h", status); $finish; end
        end
        if (bcount != 0 || aw_h != aw_t || w_h != w_t) begin
            $display("RESULT fail STATUS said done with writes still in flight"); $finish;
        end
        reg_read(12'h020, lo);
        reg_read(12'h024, hi);
        $writememh("out.hex", mem, OUT / 8, OUT / 8 + OUT_WORDS - 1);
        $display("RESULT ok status %0d hwinfo %0d cycles %0d", status, hw, {hi, lo});
        $finish;
    end
endmodule
