// jb_accel: block-sparse GEMM accelerator for one conv / linear layer (or layer tile) per start.
//
// Computation (the same per-row-block kept-column table as targets/tvm/kernels.py):
//   Y[b*TM + r, p] = epilogue( sum_j W[b, j, r] * (Xpad[c_bj, ho*sh + ki_bj, wo*sw + kj_bj] - zx) )
// Only the kmax kept columns (c, ki, kj) of each row-block are visited: a pruned column costs no cycle.
//
// Datapath: a TM x TN array. Each cycle one kept column j of the current row-block enters the pipeline:
// a TM-wide weight word W[b, j, :] is broadcast along the TN lanes, and lane l reads the activation of
// output pixel p_l at bank address pixbase[l] + coloffset(j) from its own copy of the input buffer.
// Replicated banks give every lane a private read port, so any stride, kernel and map width keeps all
// lanes busy (a row-aligned banking scheme would idle lanes on the 4x4 / 8x8 maps of late layers);
// the price is TN copies of the input tile, which the driver bounds by tiling (IN_DEPTH rows per bank).
//
// Activations live in DDR and in the banks as 64-bit beats of CG = 64/ABITS channels of one pixel
// ([C/CG][H][W][CG]); a channel is picked out of the beat by the column's c mod CG. Padding is written
// into the banks as the input zero point zx, and every lane subtracts zx, so padding contributes 0.
//
// Weights: int16 / int8 / int4 multiply-accumulate in one cell each (Yosys maps int16/int8 cells to one
// DSP48 each: multiplier, post-adder, P register); ternary / binary cells add, subtract or skip the
// activation in one carry chain (no multiplier), with an accumulator only as wide as the longest sum
// can need (kmax <= IDX_DEPTH terms: never overflows, so it equals int32 accumulation).
//
// Pipeline (advanced together by pipe_en):
//   S0 issue (index + weight RAM read) -> S1 decode column, coloffset = (c/CG)*PLANE + ki*Wp + kj
//   -> S2 lane addresses, bank read -> S3 channel select, x - zx -> S4 operand registers (shared by a
//   row / lane) -> S5 multiply-accumulate -> capture into the hold registers -> epilogue drain: the
//   hold registers shift one lane per cycle into NU requantization lanes (jb_requant), one 64-bit
//   output beat per cycle -> DDR write port.
// Schedule: pixel groups of TN pixels outer, row-blocks inner; each (group, row-block) step owns a
// slot of max(kmax, D + 1) cycles (D = TN * TM / NU drain beats), so the next step's accumulators are
// captured only after the previous drain: the hold registers let the array keep accumulating while
// a step drains, and the timing stays analytic (layer.py: expected_cycles).
//
// The controller walks a descriptor list in DDR (a program, see targets/fpga/layer.py:pack): per tile
// it fetches a 13-beat descriptor and, when the tile needs them, loads epilogue constants + index table
// + packed weights (one contiguous burst stream); then the input loader streams the tile's padded rows
// (every channel group of a row before the next row; padding written as zx) while the array computes:
// a pixel group starts as soon as the rows it reads are complete. Descriptor and weight phases count
// as DMA cycles, everything from then on as compute cycles (the input load overlaps them).
`default_nettype none
module jb_accel #(
    parameter TM = 16,          // output channels per row-block (power of two)
    parameter TN = 16,          // output-pixel lanes
    parameter WMODE = 1,        // 0 int16, 1 int8, 2 int4, 3 ternary, 4 binary
    parameter ABITS = 8,        // activation bits: 8 or 16
    parameter IN_DEPTH = 2048,  // 64-bit rows per input bank
    parameter W_DEPTH = 8192,   // weight words (kept columns x TM levels) on chip
    parameter IDX_DEPTH = 8192, // index table entries on chip
    parameter RB_DEPTH = 64     // row-blocks of epilogue constants on chip
) (
    input  wire        clk,
    input  wire        rst,
    // register file (32-bit registers, byte addresses; reads are registered: data the cycle after reg_re)
    input  wire        reg_we,
    input  wire        reg_re,
    input  wire [11:0] reg_addr,
    input  wire [31:0] reg_wdata,
    output reg  [31:0] reg_rdata,
    // DDR read: burst requests (AXI AR-like, 1..256 beats of 64 bit) and data (R-like)
    output wire        rd_req_valid,
    input  wire        rd_req_ready,
    output wire [31:0] rd_req_addr,
    output wire [8:0]  rd_req_len,
    input  wire        rd_valid,
    output wire        rd_ready,
    input  wire [63:0] rd_data,
    // DDR write: single 64-bit beats with byte strobes
    output wire        wr_valid,
    input  wire        wr_ready,
    output wire [31:0] wr_addr,
    output wire [63:0] wr_data,
    output wire [7:0]  wr_strb,
    output wire        irq
);
    // ---------------------------------------------------------------- derived parameters
    localparam WBITS = WMODE == 0 ? 16 : WMODE == 1 ? 8 : WMODE == 2 ? 4 : WMODE == 3 ? 2 : 1;
    localparam INTW = WMODE <= 2;          // multiplier datapath
    localparam WW = TM * WBITS;            // one weight word: TM levels of column j
    localparam MW = WW > 64 ? WW : 64;     // weight RAM row
    localparam WPB = WW >= 64 ? 1 : 64 / WW;  // words per row
    localparam BPW = WW > 64 ? WW / 64 : 1;   // beats per row
    localparam WROWS = W_DEPTH / WPB;
    localparam CG = 64 / ABITS;            // channels per 64-bit beat
    localparam LCG = $clog2(CG);
    localparam NU = TM < CG ? TM : CG;     // requantization lanes = channels per output beat
    localparam NGRP = TM / NU;             // output beats per pixel and row-block
    localparam IAW = $clog2(IN_DEPTH);
    localparam IXW = $clog2(IDX_DEPTH);
    localparam WAW = $clog2(W_DEPTH);
    localparam WRW = $clog2(WROWS);
    localparam RBW = $clog2(RB_DEPTH);
    localparam XW = ABITS + 1;             // x - zx
    localparam PW = WBITS + XW;            // product
    localparam KB = $clog2(IDX_DEPTH + 1);
    // exact accumulator width: int16/int8 accumulate in int32 (wrapping, as the reference); the
    // narrower datapaths are sized so that kmax <= IDX_DEPTH terms can never overflow
    localparam ACC_W = WMODE <= 1 ? 32 : (WMODE == 2 ? (PW + KB > 32 ? 32 : PW + KB) : (XW + KB > 32 ? 32 : XW + KB));
    localparam NCELL = TM * TN;
    localparam NDESC = 13;                 // descriptor beats
    localparam [15:0] MAGIC = 16'h4A42;

    // ---------------------------------------------------------------- register file
    reg [31:0] prog_base, in_base, out_base;
    reg [2:0]  state;
    localparam ST_IDLE = 3'd0, ST_DESC = 3'd1, ST_DECODE = 3'd2, ST_LOADW = 3'd3, ST_SETUP = 3'd5, ST_COMP = 3'd6;
    reg        done, err;
    reg [7:0]  err_code;
    reg [15:0] tiles_done;
    wire       start = reg_we && reg_addr == 12'h000 && reg_wdata[0] && state == ST_IDLE;
    assign irq = done;

    always @(posedge clk) begin
        if (rst) begin
            prog_base <= 0; in_base <= 0; out_base <= 0;
        end else if (reg_we) begin
            case (reg_addr)
                12'h008: prog_base <= reg_wdata;
                12'h00C: in_base <= reg_wdata;
                12'h010: out_base <= reg_wdata;
                default: ;
            endcase
        end
    end

    // counters: cycles (total = dma + compute), DDR bytes, and the switching activity a power model needs
    reg [63:0] c_cycles, c_dma, c_comp, c_rd, c_wr, c_mac, c_lane, c_nz, c_wnz, c_xnz, c_stall, c_beats,
               c_epi, c_bufwr, c_inload, c_inwait;
    reg [63:0] desc [0:NDESC-1];  // current tile descriptor: 12 beats = 24 words (layer.py _descriptor)

    always @(posedge clk) begin
        if (reg_re) case (reg_addr[11:2])
            10'h001: reg_rdata <= {tiles_done, err_code, 5'd0, err, done, state != ST_IDLE};
            10'h002: reg_rdata <= prog_base;
            10'h003: reg_rdata <= in_base;
            10'h004: reg_rdata <= out_base;
            10'h005: reg_rdata <= {TM[7:0], TN[7:0], 4'd0, WMODE[3:0], ABITS[7:0]};
            10'h006: reg_rdata <= {8'd0, RBW[7:0], IXW[7:0], IAW[7:0]};
            10'h007: reg_rdata <= {24'd0, WAW[7:0]};
            10'h008: reg_rdata <= c_cycles[31:0];  10'h009: reg_rdata <= c_cycles[63:32];
            10'h00A: reg_rdata <= c_dma[31:0];     10'h00B: reg_rdata <= c_dma[63:32];
            10'h00C: reg_rdata <= c_comp[31:0];    10'h00D: reg_rdata <= c_comp[63:32];
            10'h00E: reg_rdata <= c_rd[31:0];      10'h00F: reg_rdata <= c_rd[63:32];
            10'h010: reg_rdata <= c_wr[31:0];      10'h011: reg_rdata <= c_wr[63:32];
            10'h012: reg_rdata <= c_mac[31:0];     10'h013: reg_rdata <= c_mac[63:32];
            10'h014: reg_rdata <= c_lane[31:0];    10'h015: reg_rdata <= c_lane[63:32];
            10'h016: reg_rdata <= c_nz[31:0];      10'h017: reg_rdata <= c_nz[63:32];
            10'h018: reg_rdata <= c_wnz[31:0];     10'h019: reg_rdata <= c_wnz[63:32];
            10'h01A: reg_rdata <= c_xnz[31:0];     10'h01B: reg_rdata <= c_xnz[63:32];
            10'h01C: reg_rdata <= c_stall[31:0];   10'h01D: reg_rdata <= c_stall[63:32];
            10'h01E: reg_rdata <= c_beats[31:0];   10'h01F: reg_rdata <= c_beats[63:32];
            10'h020: reg_rdata <= c_epi[31:0];     10'h021: reg_rdata <= c_epi[63:32];
            10'h022: reg_rdata <= c_bufwr[31:0];   10'h023: reg_rdata <= c_bufwr[63:32];
            10'h024: reg_rdata <= c_inload[31:0];  10'h025: reg_rdata <= c_inload[63:32];
            10'h026: reg_rdata <= c_inwait[31:0];  10'h027: reg_rdata <= c_inwait[63:32];
            default: reg_rdata <= reg_addr[11:7] == 5'b00010 && reg_addr[6:3] < NDESC
                                 ? (reg_addr[2] ? desc[reg_addr[6:3]][63:32] : desc[reg_addr[6:3]][31:0]) : 32'd0;
            endcase
    end

    // ---------------------------------------------------------------- descriptor fields
    wire [15:0] d_magic   = desc[0][16 +: 16];
    wire        d_last    = desc[0][0];
    wire        d_loadw   = desc[0][1];
    wire        d_loadin  = desc[0][2];
    wire        d_relu    = desc[0][3];
    wire        d_shared  = desc[0][4];
    wire [2:0]  d_wmode   = desc[0][7:5];
    wire        d_a16     = desc[0][8];
    wire [31:0] d_wset    = desc[0][32 +: 32];   // byte offset of epilogue+index+weights from prog_base
    wire [15:0] d_nepi    = desc[1][0 +: 16];   // beats of epilogue constants (one per channel)
    wire [15:0] d_nidx    = desc[1][16 +: 16];// beats of index entries (two per beat)
    wire [31:0] d_nw      = desc[1][32 +: 32];   // beats of packed weights
    wire [15:0] d_nrb     = desc[2][0 +: 16];   // row-blocks in this tile
    wire [15:0] d_kmax    = desc[2][16 +: 16];
    wire [15:0] d_rb0     = desc[2][32 +: 16];   // absolute index of the tile's first row-block
    wire [15:0] d_cout    = desc[2][48 +: 16];
    wire [31:0] d_inoff   = desc[3][0 +: 32];   // byte offset (from in_base) of the tile's first interior row
    wire [31:0] d_incgs   = desc[3][32 +: 32];   // bytes between input channel groups in DDR
    wire [15:0] d_cgroups = desc[4][0 +: 16];
    wire [15:0] d_W       = desc[4][16 +: 16];
    wire [15:0] d_Wp      = desc[4][32 +: 16];
    wire [15:0] d_padl    = desc[4][48 +: 16];
    wire [15:0] d_rows    = desc[5][0 +: 16];  // padded input rows in the tile
    wire [15:0] d_intr0   = desc[5][16 +: 16];
    wire [15:0] d_introws = desc[5][32 +: 16];
    wire [15:0] d_zx      = desc[5][48 +: 16];
    wire [31:0] d_plane   = desc[6][0 +: 32];  // rows * Wp: bank rows per channel group
    wire [7:0]  d_sh      = desc[6][32 +: 8];
    wire [7:0]  d_sw      = desc[6][40 +: 8];
    wire [15:0] d_Wo      = desc[6][48 +: 16];
    wire [15:0] d_npix    = desc[7][0 +: 16];  // output pixels in the tile
    wire [15:0] d_dr      = desc[7][32 +: 16];  // TN mod Wo
    wire [15:0] d_coutg   = desc[7][48 +: 16]; // output channel groups in DDR
    wire [31:0] d_pbadv   = desc[8][0 +: 32];  // pixbase step for TN pixels: (TN/Wo)*sh*Wp + (TN%Wo)*sw
    wire [31:0] d_pbwrap  = desc[8][32 +: 32];  // extra step on a row wrap: sh*Wp - Wo*sw
    wire [31:0] d_outoff  = desc[9][0 +: 32];  // byte offset (from out_base): first row-block's channel group, first pixel
    wire [31:0] d_howo    = desc[9][32 +: 32];  // beats between output channel groups
    wire [15:0] d_zout    = desc[10][0 +: 16];
    wire [31:0] d_inpos   = desc[11][0 +: 32];   // bank rows written per tile: cgroups * plane
    wire [15:0] d_need0   = desc[11][32 +: 16];  // input rows the first pixel group needs
    wire [15:0] d_ecol0   = desc[11][48 +: 16];  // output column of the first group's last pixel
    wire [15:0] d_needadv = desc[12][0 +: 16];   // (TN / Wo) * sh: needed rows per pixel group (+ sh on a wrap)

    // ---------------------------------------------------------------- DDR read requests
    // Bursts of <= 256 beats over a two-level loop of segments: no outer x ni inner segments of seglen
    // beats, inner segments istride bytes apart, outer groups ostride bytes apart. Requests run ahead
    // of the data (one per cycle), so after the first latency the data streams back to back.
    reg        rq_active;
    reg [31:0] rq_addr, rq_ibase, rq_obase, rq_istride, rq_ostride, rq_left, rq_seglen;
    reg [15:0] rq_ni, rq_nin, rq_no;
    wire [31:0] rq_burst = rq_left > 32'd256 ? 32'd256 : rq_left;
    assign rd_req_valid = rq_active;
    assign rd_req_addr = rq_addr;
    assign rd_req_len = rq_burst[8:0];

    // ---------------------------------------------------------------- controller
    reg [31:0] rx;         // beats accepted in DESC / LOADW
    reg [31:0] tile_ptr;   // byte offset of the current descriptor
    // Input loader, running alongside SETUP/COMP: padded rows in order, each row through every channel
    // group (bank row cg*PLANE + r*Wp + c), so compute can start on a pixel group as soon as the rows
    // it reads are complete (rows_done). Padding positions are written with zx and consume no beat.
    reg        ld_active;
    reg [15:0] lc, lr, lcg, rows_done;
    reg [IAW-1:0] lrow, lcgoff;  // r*Wp, cg*PLANE
    reg  in_pad;                 // the position (lr, lc) is padding: write zx, consume no DDR beat
    reg  [63:0] zx_beat;         // CG copies of the input zero point
    function pad_at(input [15:0] r, input [15:0] c);
        pad_at = r < d_intr0 || r >= d_intr0 + d_introws || c < d_padl || c >= d_padl + d_W;
    endfunction
    wire in_wr = ld_active && (in_pad || rd_valid);
    wire [IAW-1:0] lq = lcgoff + lrow + lc[IAW-1:0];
    assign rd_ready = state == ST_DESC || state == ST_LOADW || (ld_active && !in_pad);
    wire beat = rd_valid && rd_ready;
    // LOADW routing: [epilogue constants | index entries | weights]
    wire [31:0] lw_e1 = {16'd0, d_nepi};
    wire [31:0] lw_e2 = lw_e1 + {16'd0, d_nidx};
    wire [31:0] lw_tot = lw_e2 + d_nw;
    reg [RBW-1:0] erb;
    reg [$clog2(TM+1)-1:0] er;
    reg [IXW-2:0] ia;
    reg [WRW-1:0] wq;
    reg [$clog2(BPW+1)-1:0] wpart;
    reg [MW-1:0] wcol;
    // SETUP: lane pixel walker
    reg [7:0]     sk;
    reg [IAW-1:0] wk_pb;
    reg [15:0]    wk_wo;
    // COMP issue: pixel groups (TN pixels) outer, row-blocks inner, one step per (group, row-block).
    // A step owns a fixed slot of steplen = max(kmax, drain beats + 1) cycles, so a step's accumulators
    // are always captured after the previous step has drained (no stall when the write port keeps up);
    // the first step of a group waits until the loader has completed the input rows the group reads.
    reg        iss_done, stepping;
    reg [15:0] cj, cb, crem, cgpix, st, steplen, cneed, ecol;
    reg [IXW-1:0] ibase;
    reg [WAW-1:0] wbase;
    wire       pipe_en;
    wire       all_idle;
    wire       i_lastg = crem <= TN;
    wire [15:0] need = i_lastg ? d_rows : cneed;
    wire       can_start = state == ST_COMP && !iss_done && !stepping && (cb != 0 || rows_done >= need);
    wire [15:0] i_col = stepping ? cj : 16'd0;
    wire       iss = pipe_en && (can_start || (stepping && cj < d_kmax));
    wire       i_last = i_col == d_kmax - 16'd1;
    wire       i_lastb = cb == d_nrb - 16'd1;
    wire [7:0] i_nval = crem < TN ? crem[7:0] : TN[7:0];
    wire       step_end = stepping && st == steplen - 16'd1;

    task start_input;  // at SETUP entry: the loader and its requests, or the tile input is resident
        begin
            if (d_loadin) begin
                ld_active <= 1; lc <= 0; lr <= 0; lcg <= 0; lrow <= 0; lcgoff <= 0; rows_done <= 0;
                in_pad <= pad_at(16'd0, 16'd0);
                rq_active <= d_introws != 0 && d_W != 0; rq_addr <= in_base + d_inoff; rq_ibase <= in_base + d_inoff;
                rq_obase <= in_base + d_inoff; rq_left <= d_W; rq_seglen <= d_W; rq_istride <= d_incgs;
                rq_ostride <= {d_W, 3'b000}; rq_ni <= d_cgroups; rq_nin <= d_cgroups; rq_no <= d_introws;
            end else begin
                rows_done <= d_rows;
            end
        end
    endtask

    function decode_ok(input dummy);  // the tile fits the buffers and was built for this hardware
        decode_ok = d_magic == MAGIC && d_wmode == WMODE[2:0] && d_a16 == (ABITS == 16)
                    && d_nrb != 0 && d_nrb <= RB_DEPTH && d_kmax != 0 && d_kmax <= W_DEPTH
                    && d_nidx <= IDX_DEPTH / 2 && d_nw <= WROWS * BPW && d_inpos <= IN_DEPTH && d_npix != 0;
    endfunction

    always @(posedge clk) begin
        if (rst) begin
            state <= ST_IDLE; done <= 0; err <= 0; err_code <= 0; tiles_done <= 0;
            rq_active <= 0; iss_done <= 1; ld_active <= 0; stepping <= 0;
        end else begin
            if (rq_active && rd_req_ready) begin
                if (rq_left > 32'd256) begin
                    rq_addr <= rq_addr + 32'd2048; rq_left <= rq_left - 32'd256;
                end else if (rq_ni > 16'd1) begin
                    rq_ibase <= rq_ibase + rq_istride; rq_addr <= rq_ibase + rq_istride;
                    rq_left <= rq_seglen; rq_ni <= rq_ni - 16'd1;
                end else if (rq_no > 16'd1) begin
                    rq_obase <= rq_obase + rq_ostride; rq_ibase <= rq_obase + rq_ostride;
                    rq_addr <= rq_obase + rq_ostride; rq_left <= rq_seglen; rq_ni <= rq_nin; rq_no <= rq_no - 16'd1;
                end else rq_active <= 0;
            end
            case (state)
                ST_IDLE: if (start) begin
                    state <= ST_DESC; done <= 0; err <= 0; err_code <= 0; tiles_done <= 0;
                    tile_ptr <= 0; rx <= 0;
                    rq_active <= 1; rq_addr <= prog_base; rq_left <= NDESC; rq_ni <= 1; rq_no <= 1;
                end
                ST_DESC: if (beat) begin
                    desc[rx[3:0]] <= rd_data;
                    rx <= rx + 1;
                    if (rx == NDESC - 1) state <= ST_DECODE;
                end
                ST_DECODE: begin
                    rx <= 0;
                    zx_beat <= {CG{d_zx[ABITS-1:0]}};
                    if (!decode_ok(1'b0)) begin
                        state <= ST_IDLE; done <= 1; err <= 1;
                        err_code <= d_magic != MAGIC ? 8'd1 : (d_wmode != WMODE[2:0] || d_a16 != (ABITS == 16)) ? 8'd2 : 8'd3;
                    end else if (d_loadw) begin
                        state <= ST_LOADW; erb <= 0; er <= 0; ia <= 0; wq <= 0; wpart <= 0;
                        rq_active <= 1; rq_addr <= prog_base + d_wset; rq_left <= lw_tot; rq_ni <= 1; rq_no <= 1;
                    end else begin
                        state <= ST_SETUP; sk <= 0; wk_pb <= 0; wk_wo <= 0;
                        start_input;
                    end
                end
                ST_LOADW: if (beat) begin
                    rx <= rx + 1;
                    if (rx < lw_e1) begin
                        if (er == TM - 1) begin er <= 0; erb <= erb + 1'b1; end else er <= er + 1'b1;
                    end else if (rx < lw_e2) begin
                        ia <= ia + 1'b1;
                    end else begin
                        if (wpart == BPW - 1) begin wpart <= 0; wq <= wq + 1'b1; end else wpart <= wpart + 1'b1;
                        wcol[wpart * 64 +: 64] <= rd_data;
                    end
                    if (rx == lw_tot - 1) begin
                        state <= ST_SETUP; sk <= 0; wk_pb <= 0; wk_wo <= 0;
                        start_input;
                    end
                end
                ST_SETUP: begin
                    // lane sk starts at tile pixel sk (g_bank latches the walker), TN cycles
                    if (wk_wo + 16'd1 >= d_Wo) begin
                        wk_wo <= 0; wk_pb <= wk_pb + d_sw + d_pbwrap[IAW-1:0];
                    end else begin
                        wk_wo <= wk_wo + 16'd1; wk_pb <= wk_pb + d_sw;
                    end
                    sk <= sk + 8'd1;
                    if (sk == TN - 1) begin
                        state <= ST_COMP; iss_done <= 0; stepping <= 0; cj <= 0; cb <= 0; crem <= d_npix; cgpix <= 0;
                        ibase <= 0; wbase <= 0; cneed <= d_need0; ecol <= d_ecol0;
                        steplen <= d_kmax > NGRP * TN ? d_kmax : NGRP * TN + 1;
                    end
                end
                ST_COMP: begin
                    if (pipe_en) begin
                        if (can_start) begin
                            stepping <= 1; st <= 16'd1; cj <= 16'd1;
                        end else if (stepping) begin
                            if (cj < d_kmax) cj <= cj + 16'd1;
                            st <= st + 16'd1;
                            if (step_end) begin
                                stepping <= 0; cj <= 0;
                                if (!i_lastb) begin
                                    cb <= cb + 16'd1;
                                    ibase <= ibase + (d_shared ? {IXW{1'b0}} : d_kmax[IXW-1:0]);
                                    wbase <= wbase + d_kmax[WAW-1:0];
                                end else begin  // next pixel group
                                    cb <= 0; ibase <= 0; wbase <= 0;
                                    crem <= crem - TN; cgpix <= cgpix + TN;
                                    if (ecol + d_dr >= d_Wo) begin
                                        ecol <= ecol + d_dr - d_Wo; cneed <= cneed + d_needadv + d_sh;
                                    end else begin
                                        ecol <= ecol + d_dr; cneed <= cneed + d_needadv;
                                    end
                                    if (i_lastg) iss_done <= 1;
                                end
                            end
                        end
                    end
                    if (iss_done && all_idle) begin
                        tiles_done <= tiles_done + 16'd1;
                        if (d_last) begin
                            state <= ST_IDLE; done <= 1;
                        end else begin
                            state <= ST_DESC; rx <= 0; tile_ptr <= tile_ptr + NDESC * 8;
                            rq_active <= 1; rq_addr <= prog_base + tile_ptr + NDESC * 8; rq_left <= NDESC;
                            rq_ni <= 1; rq_no <= 1;
                        end
                    end
                end
                default: state <= ST_IDLE;
            endcase
            if (in_wr) begin
                if (lc != d_Wp - 16'd1) begin
                    lc <= lc + 16'd1;
                    in_pad <= pad_at(lr, lc + 16'd1);
                end else begin
                    lc <= 0;
                    in_pad <= pad_at(lr + (lcg == d_cgroups - 16'd1), 16'd0);
                    if (lcg != d_cgroups - 16'd1) begin
                        lcg <= lcg + 16'd1; lcgoff <= lcgoff + d_plane[IAW-1:0];
                    end else begin  // row complete in every channel group
                        lcg <= 0; lcgoff <= 0; lr <= lr + 16'd1; lrow <= lrow + d_Wp[IAW-1:0];
                        rows_done <= lr + 16'd1;
                        if (lr == d_rows - 16'd1) ld_active <= 0;
                    end
                end
            end
        end
    end

    // ---------------------------------------------------------------- on-chip buffers
    // epilogue constants: one RAM row per row-block (TM channels), written one channel (64 bits) per beat
    reg  [TM*64-1:0] epi_mem [0:RB_DEPTH-1];
    reg  [TM*64-1:0] epi_rd;
    wire epi_we = state == ST_LOADW && beat && rx < lw_e1;
    reg  s5_v, s5_first, s5_last;
    reg  [15:0] s5_b, s5_gpix;
    reg  [7:0]  s5_nval;
    genvar gr, gl;
    always @(posedge clk) begin
        if (epi_we) epi_mem[erb][er*64 +: 64] <= rd_data;
        if (pipe_en && s5_v && s5_last) epi_rd <= epi_mem[s5_b[RBW-1:0]];
    end

    // index table: (c:16, ki:8, kj:8) per entry, two entries per 64-bit row
    wire [63:0] idx_rd;
    wire [IXW-1:0] i_addr = ibase + i_col[IXW-1:0];
    jb_ram #(.W(64), .D(IDX_DEPTH / 2)) idx_ram (
        .clk(clk), .we(state == ST_LOADW && beat && rx >= lw_e1 && rx < lw_e2), .wa(ia), .wd(rd_data),
        .re(iss), .ra(i_addr[IXW-1:1]), .rd(idx_rd));

    // packed weights: a row holds WPB words (narrow words) or one word assembled from BPW beats
    wire [MW-1:0] w_rd;
    wire [WAW-1:0] w_addr = wbase + i_col[WAW-1:0];
    wire [MW-1:0] w_wd;
    generate
        if (BPW > 1) begin : g_wwide
            assign w_wd = {rd_data, wcol[(BPW-1)*64-1:0]};
        end else begin : g_wnarrow
            assign w_wd = rd_data;
        end
    endgenerate
    jb_ram #(.W(MW), .D(WROWS)) w_ram (
        .clk(clk), .we(state == ST_LOADW && beat && rx >= lw_e2 && wpart == BPW - 1), .wa(wq), .wd(w_wd),
        .re(iss), .ra(w_addr[WAW-1:WAW-WRW]), .rd(w_rd));

    // ---------------------------------------------------------------- compute pipeline
    reg  s1_v, s1_first, s1_last, s1_lastb, s1_half;
    reg  [15:0] s1_b, s1_gpix;
    reg  [7:0]  s1_nval;
    reg  [WAW-1:0] s1_waddr;
    reg  s2_v, s2_first, s2_last, s2_lastb;
    reg  [15:0] s2_b, s2_gpix;
    reg  [7:0]  s2_nval;
    reg  [IAW-1:0] s2_rowoff;
    reg  [LCG-1:0] s2_csel;
    reg  [WW-1:0]  s2_w;
    reg  s3_v, s3_first, s3_last;
    reg  [15:0] s3_b, s3_gpix;
    reg  [7:0]  s3_nval;
    reg  [LCG-1:0] s3_csel;
    reg  [WW-1:0]  s3_w;
    reg  s4_v, s4_first, s4_last;
    reg  [15:0] s4_b, s4_gpix;
    reg  [7:0]  s4_nval;
    reg  [WW-1:0]  s4_w;
    reg  [WW-1:0]  s5_w;
    reg  s6_cap;
    reg  [15:0] s6_b, s6_gpix;
    reg  [7:0]  s6_nval;
    reg  drain_busy;
    assign pipe_en = !(s6_cap && drain_busy);
    wire cap = s6_cap && !drain_busy;  // accumulators -> hold registers, the drain starts

    // S1: decode the index entry into a bank row offset and a channel within the beat
    wire [31:0] s1_ent = s1_half ? idx_rd[63:32] : idx_rd[31:0];
    wire [15:0] s1_c = s1_ent[15:0];
    wire [7:0]  s1_ki = s1_ent[23:16];
    wire [7:0]  s1_kj = s1_ent[31:24];
    wire [15:0] s1_cg = s1_c >> LCG;
    wire [IAW-1:0] s1_rowoff = s1_cg[IAW-1:0] * d_plane[IAW-1:0] + s1_ki * d_Wp[IAW-1:0] + s1_kj;
    wire [WW-1:0] s1_w;
    generate
        if (WPB > 1) begin : g_wsel
            wire [$clog2(WPB)-1:0] sub = s1_waddr[$clog2(WPB)-1:0];
            assign s1_w = w_rd[sub * WW +: WW];
        end else begin : g_wfull
            assign s1_w = w_rd[WW-1:0];
        end
    endgenerate

    // S2: bank reads; S3: pick the channel, subtract the zero point
    wire [TN*32-1:0] xx5;           // S5 activation of lane l, sign-extended (int datapaths)
    wire [TN*ACC_W-1:0] xs5;        // S5 activation of lane l, ACC_W bits (add/sub datapaths)
    wire [TN-1:0] xnz4;             // S4 lane valid with a non-zero activation (activity counter)
    wire [63:0] in_wd = in_pad ? zx_beat : rd_data;
    generate
        for (gl = 0; gl < TN; gl = gl + 1) begin : g_bank
            // lane state: bank row of the lane's current output pixel (ho*sh*Wp + wo*sw) and its column wo
            reg [IAW-1:0] pb;
            reg [15:0]    wo;
            always @(posedge clk) begin : lane
                reg [15:0] wo_n;
                wo_n = wo + d_dr;
                if (state == ST_SETUP && sk == gl) begin
                    pb <= wk_pb; wo <= wk_wo;
                end else if (pipe_en && s2_v && s2_last && s2_lastb) begin
                    // next pixel group (TN pixels on) once the group's last step has read the banks
                    if (wo_n >= d_Wo) begin
                        pb <= pb + d_pbadv[IAW-1:0] + d_pbwrap[IAW-1:0]; wo <= wo_n - d_Wo;
                    end else begin
                        pb <= pb + d_pbadv[IAW-1:0]; wo <= wo_n;
                    end
                end
            end
            wire [63:0] brd;
            jb_ram #(.W(64), .D(IN_DEPTH)) ram (
                .clk(clk), .we(in_wr), .wa(lq), .wd(in_wd),
                .re(pipe_en && s2_v), .ra(pb + s2_rowoff), .rd(brd));
            // S3: the column's channel out of the beat, minus the zero point; S4/S5 operand registers
            wire [63:0] bsh = brd >> (s3_csel * ABITS);
            wire [ABITS-1:0] x3 = bsh[ABITS-1:0];
            wire [XW-1:0] xe3 = $signed(x3) - $signed(d_zx[ABITS-1:0]);
            reg  [XW-1:0] xe4, xe5;
            always @(posedge clk) if (pipe_en) begin xe4 <= xe3; xe5 <= xe4; end
            assign xx5[gl*32 +: 32] = {{(32-XW){xe5[XW-1]}}, xe5};
            assign xs5[gl*ACC_W +: ACC_W] = {{(ACC_W-XW){xe5[XW-1]}}, xe5};
            assign xnz4[gl] = xe4 != 0 && gl < s4_nval;
        end
    endgenerate


    always @(posedge clk) begin
        if (rst) begin
            s1_v <= 0; s2_v <= 0; s3_v <= 0; s4_v <= 0; s5_v <= 0; s6_cap <= 0;
        end else if (pipe_en) begin
            s1_v <= iss; s1_first <= i_col == 0; s1_last <= i_last; s1_lastb <= i_lastb; s1_half <= i_addr[0];
            s1_b <= cb; s1_gpix <= cgpix; s1_nval <= i_nval; s1_waddr <= w_addr;
            s2_v <= s1_v; s2_first <= s1_first; s2_last <= s1_last; s2_lastb <= s1_lastb;
            s2_b <= s1_b; s2_gpix <= s1_gpix; s2_nval <= s1_nval;
            s2_rowoff <= s1_rowoff; s2_csel <= s1_c[LCG-1:0]; s2_w <= s1_w;
            s3_v <= s2_v; s3_first <= s2_first; s3_last <= s2_last;
            s3_b <= s2_b; s3_gpix <= s2_gpix; s3_nval <= s2_nval; s3_csel <= s2_csel; s3_w <= s2_w;
            s4_v <= s3_v; s4_first <= s3_first; s4_last <= s3_last;
            s4_b <= s3_b; s4_gpix <= s3_gpix; s4_nval <= s3_nval; s4_w <= s3_w;
            s5_v <= s4_v; s5_first <= s4_first; s5_last <= s4_last;
            s5_b <= s4_b; s5_gpix <= s4_gpix; s5_nval <= s4_nval; s5_w <= s4_w;
            s6_cap <= s5_v && s5_last; s6_b <= s5_b; s6_gpix <= s5_gpix; s6_nval <= s5_nval;
        end
    end

    // ---------------------------------------------------------------- MAC array
    // Operands are sign-extended once per row / lane and fanned out, so a cell is a plain 32-bit
    // multiply-add (Yosys trims the redundant sign bits back to WBITS x XW; in simulation this keeps the
    // per-cell work to native integer operations).
    // Hold registers, one per cell. The drain shifts each row's hold registers one lane per beat, so the
    // requantizers always read lane 0 (a TN-deep shift instead of a TM*TN-way multiplexer).
    wire [NCELL*ACC_W-1:0] hold;
    wire [NGRP-1:0] dshift;
    wire [TM*32-1:0] wx5;           // S5 weight of row r, sign-extended (int datapaths)
    wire [TM-1:0] neg5, nz5;        // S5 weight of row r as subtract / non-zero (add/sub datapaths)
    generate
        for (gr = 0; gr < TM; gr = gr + 1) begin : g_wop
            assign wx5[gr*32 +: 32] = {{(32-WBITS){s5_w[gr*WBITS+WBITS-1]}}, s5_w[gr*WBITS +: WBITS]};
            if (WMODE == 4) begin : g_bin  // level bit 1 = +1, 0 = -1
                assign neg5[gr] = !s5_w[gr];
                assign nz5[gr] = 1'b1;
            end else if (WMODE == 3) begin : g_ter  // 2-bit two's complement: 01 = +1, 11 = -1, 00 = 0
                assign neg5[gr] = s5_w[2*gr] && s5_w[2*gr+1];
                assign nz5[gr] = s5_w[2*gr];
            end else begin : g_none
                assign neg5[gr] = 1'b0;
                assign nz5[gr] = 1'b0;
            end
        end
        for (gr = 0; gr < TM; gr = gr + 1) begin : g_row
            for (gl = 0; gl < TN; gl = gl + 1) begin : g_col
                reg [ACC_W-1:0] a, h;
                wire [ACC_W-1:0] hnext;
                assign hold[(gr*TN+gl)*ACC_W +: ACC_W] = h;
                if (gl == TN - 1) begin : g_last
                    assign hnext = {ACC_W{1'b0}};
                end else begin : g_next
                    assign hnext = hold[(gr*TN+gl+1)*ACC_W +: ACC_W];
                end
                if (INTW) begin : g_mul
                    // multiply-accumulate on the registered S5 operands (DSP48: A/B from the shared operand
                    // registers, post-adder with P feedback, PREG = a). Products are taken mod 2^32 like the
                    // int32 accumulator (exact below int16 x int16).
                    wire [31:0] p = $signed(wx5[gr*32 +: 32]) * $signed(xx5[gl*32 +: 32]);
                    always @(posedge clk) begin
                        if (cap) h <= a;  // same block as the update: the old value is read first
                        else if (dshift[gr / NU]) h <= hnext;
                        // p used once, so the simulator evaluates the product only on accumulating cycles
                        if (pipe_en && s5_v) a <= (s5_first ? {ACC_W{1'b0}} : a) + p[ACC_W-1:0];
                    end
                end else begin : g_add
                    // +-x or skip, no multiplier: {a,1} + {x^neg, neg} = a + (neg ? -x : x) in one carry chain
                    wire [ACC_W:0] sum = {(s5_first ? {ACC_W{1'b0}} : a), 1'b1}
                                       + {({ACC_W{neg5[gr]}} ^ (nz5[gr] ? xs5[gl*ACC_W +: ACC_W] : {ACC_W{1'b0}})), neg5[gr]};
                    always @(posedge clk) begin
                        if (cap) h <= a;
                        else if (dshift[gr / NU]) h <= hnext;
                        if (pipe_en && s5_v) a <= sum[ACC_W:1];
                    end
                end
            end
        end
    endgenerate

    // activity: non-zero weights x non-zero (valid) activations = lane-ops with both operands non-zero
    function [7:0] popcount(input [63:0] v);  // SWAR bit count
        reg [63:0] x;
        begin
            x = v - ((v >> 1) & 64'h5555555555555555);
            x = (x & 64'h3333333333333333) + ((x >> 2) & 64'h3333333333333333);
            x = (x + (x >> 4)) & 64'h0F0F0F0F0F0F0F0F;
            x = x + (x >> 8);
            x = x + (x >> 16);
            x = x + (x >> 32);
            popcount = x[7:0];
        end
    endfunction
    wire [TM-1:0] wnz4;  // S4 row with a non-zero weight
    generate
        for (gr = 0; gr < TM; gr = gr + 1) begin : g_wnz
            assign wnz4[gr] = WMODE == 4 || s4_w[gr*WBITS +: WBITS] != 0;
        end
    endgenerate

    // ---------------------------------------------------------------- epilogue drain
    reg [TM*64-1:0] eparam;
    reg [15:0] dr_gpix;
    reg [7:0]  dr_nval, dl;
    // output position of the drained row-block, advanced by adds as row-blocks follow each other:
    // first channel, its channel group and slot in the beat, the group's byte address at tile pixel 0
    reg [15:0] dr_ch0, dr_cgo;
    reg [LCG-1:0] dr_slot;
    reg [31:0] dr_obase;
    // the same for the beat group dgi being drained
    reg [15:0] dr_gch, dr_gcgo;
    reg [31:0] dr_gaddr;
    wire [31:0] howo8 = d_howo << 3;
    reg [$clog2(NGRP+1)-1:0] dgi;
    reg        e1_v, e2_v, e3_v, e4_v;
    reg        e1_o, e2_o, e3_o, e4_o;  // stage occupied (valid or skipped beat): a fixed drain tail
    reg [31:0] e1_addr, e2_addr, e3_addr, e4_addr;
    reg [7:0]  e1_strb, e2_strb, e3_strb, e4_strb;
    reg [LCG-1:0] e1_slot, e2_slot, e3_slot, e4_slot;
    wire epi_en = !e4_v || wr_ready;
    wire [15:0] dr_pix = dr_gpix + dl;
    wire dr_valid = dl < dr_nval && dr_gcgo < d_coutg;
    wire [31:0] dr_addr = dr_gaddr + {dr_pix, 3'b000};
    reg  [7:0] dr_strb;
    integer iu;
    always @* begin
        dr_strb = 0;
        for (iu = 0; iu < NU; iu = iu + 1)
            if (dr_gch + iu < d_cout)
                dr_strb = dr_strb | ((ABITS == 8 ? 8'h01 : 8'h03) << ((dr_slot + iu) * (ABITS / 8)));
    end
    wire [NU*ABITS-1:0] yv;
    generate
        for (gr = 0; gr < NGRP; gr = gr + 1) begin : g_dshift
            assign dshift[gr] = drain_busy && epi_en && dgi == gr;
        end
        for (gr = 0; gr < NU; gr = gr + 1) begin : g_rq
            // row dgi*NU + gr, lane 0 (the drain shifts lanes down), and that row's constants
            reg [63:0] prm;
            reg [ACC_W-1:0] hv;
            integer q;
            always @* begin
                prm = eparam[gr*64 +: 64];
                hv = hold[gr*TN*ACC_W +: ACC_W];
                for (q = 1; q < NGRP; q = q + 1)
                    if (dgi == q) begin
                        prm = eparam[(q*NU+gr)*64 +: 64];
                        hv = hold[(q*NU+gr)*TN*ACC_W +: ACC_W];
                    end
            end
            jb_requant #(.ACC_W(ACC_W), .OB(ABITS)) rq (
                .clk(clk), .en(epi_en), .occ({e3_o, e2_o, e1_o, drain_busy}), .acc(hv),
                .bias(prm[31:0]), .mult(prm[48:32]), .shift(prm[61:56]), .zout(d_zout), .relu(d_relu),
                .y(yv[gr*ABITS +: ABITS]));
        end
    endgenerate
    assign wr_valid = e4_v;
    assign wr_addr = e4_addr;
    assign wr_strb = e4_strb;
    wire [63:0] yext = yv;
    assign wr_data = yext << (e4_slot * ABITS);
    assign all_idle = !s1_v && !s2_v && !s3_v && !s4_v && !s5_v && !s6_cap && !drain_busy
                      && !e1_o && !e2_o && !e3_o && !e4_o;

    always @(posedge clk) begin
        if (rst) begin
            drain_busy <= 0; e1_v <= 0; e2_v <= 0; e3_v <= 0; e4_v <= 0;
            e1_o <= 0; e2_o <= 0; e3_o <= 0; e4_o <= 0;
        end else begin
            if (cap) begin : capture
                reg [15:0] ch0, cgo;
                reg [LCG-1:0] slot;
                reg [31:0] obase;
                ch0 = dr_ch0; cgo = dr_cgo; slot = dr_slot; obase = dr_obase;
                if (s6_b == 0) begin  // a pixel group's first row-block: the tile's first channels
                    ch0 = d_rb0 << $clog2(TM);
                    cgo = ch0 >> LCG;
                    slot = ch0[LCG-1:0];
                    obase = out_base + d_outoff;
                end else if (TM >= CG) begin  // the next row-block: TM channels on
                    ch0 = ch0 + TM;
                    cgo = cgo + TM / CG;
                    obase = obase + (howo8 << $clog2(TM / CG));
                end else begin
                    ch0 = ch0 + TM;
                    if (slot + TM == CG) begin
                        slot = 0; cgo = cgo + 16'd1; obase = obase + howo8;
                    end else slot = slot + TM;
                end
                dr_ch0 <= ch0; dr_cgo <= cgo; dr_slot <= slot; dr_obase <= obase;
                dr_gch <= ch0; dr_gcgo <= cgo; dr_gaddr <= obase;
                eparam <= epi_rd;
                drain_busy <= 1; dgi <= 0; dl <= 0;
                dr_gpix <= s6_gpix; dr_nval <= s6_nval;
            end else if (drain_busy && epi_en) begin
                if (dl != TN - 1) dl <= dl + 8'd1;
                else begin
                    dl <= 0;
                    if (dgi == NGRP - 1) drain_busy <= 0;
                    else begin
                        dgi <= dgi + 1'b1;
                        dr_gch <= dr_gch + NU; dr_gcgo <= dr_gcgo + 16'd1; dr_gaddr <= dr_gaddr + howo8;
                    end
                end
            end
            if (epi_en) begin
                e1_v <= drain_busy && dr_valid; e1_addr <= dr_addr; e1_strb <= dr_strb; e1_slot <= dr_slot;
                e2_v <= e1_v; e2_addr <= e1_addr; e2_strb <= e1_strb; e2_slot <= e1_slot;
                e3_v <= e2_v; e3_addr <= e2_addr; e3_strb <= e2_strb; e3_slot <= e2_slot;
                e4_v <= e3_v; e4_addr <= e3_addr; e4_strb <= e3_strb; e4_slot <= e3_slot;
                e1_o <= drain_busy; e2_o <= e1_o; e3_o <= e2_o; e4_o <= e3_o;
            end
        end
    end

    // ---------------------------------------------------------------- counters
    wire busy = state != ST_IDLE;
    wire in_dma = state == ST_DESC || state == ST_DECODE || state == ST_LOADW;
    reg [3:0] strb_bytes;
    integer ib;
    always @* begin
        strb_bytes = 0;
        for (ib = 0; ib < 8; ib = ib + 1) strb_bytes = strb_bytes + {3'd0, wr_strb[ib]};
    end
    always @(posedge clk) begin
        if (rst || start) begin
            c_cycles <= 0; c_dma <= 0; c_comp <= 0; c_rd <= 0; c_wr <= 0; c_mac <= 0; c_lane <= 0; c_nz <= 0;
            c_wnz <= 0; c_xnz <= 0; c_stall <= 0; c_beats <= 0; c_epi <= 0; c_bufwr <= 0; c_inload <= 0; c_inwait <= 0;
        end else begin
            if (busy) c_cycles <= c_cycles + 1;
            if (in_dma) c_dma <= c_dma + 1;
            if (busy && !in_dma) c_comp <= c_comp + 1;
            if (beat) c_rd <= c_rd + 8;
            if (wr_valid && wr_ready) begin
                c_wr <= c_wr + strb_bytes; c_beats <= c_beats + 1;
                c_epi <= c_epi + strb_bytes / (ABITS / 8);
            end
            if (pipe_en && s4_v) begin : act
                reg [7:0] wnz, xnz;  // non-zero weights / valid non-zero activations this cycle
                wnz = popcount(wnz4);
                xnz = popcount(xnz4);
                c_mac <= c_mac + 1;
                c_lane <= c_lane + TM * s4_nval;
                c_nz <= c_nz + wnz * xnz;
                c_wnz <= c_wnz + wnz;
                c_xnz <= c_xnz + xnz;
            end
            if (!pipe_en) c_stall <= c_stall + 1;
            if (ld_active) c_inload <= c_inload + 1;  // overlaps compute
            if (state == ST_COMP && !iss_done && !stepping && !can_start) c_inwait <= c_inwait + 1;
            // buffer row writes (SRAM write activity): input rows land in all TN bank copies
            if (in_wr) c_bufwr <= c_bufwr + TN;
            else if (state == ST_LOADW && beat && (rx < lw_e2 || wpart == BPW - 1)) c_bufwr <= c_bufwr + 1;
        end
    end
endmodule
`default_nettype wire
