// One epilogue lane: bias, fixed-point requantization, ReLU, saturation. Bit-exact with
// targets/fpga/reference.py:requantize (the single definition of the rounding):
//   t = acc + bias                                  (33-bit exact)
//   v = (t * mult + 2^(shift-1)) >>> shift          (round half up, arithmetic shift, shift in 1..63;
//                                                    mult 17-bit unsigned: two DSP48 per lane)
//   y = clamp(relu ? max(v + zout, zout) : v + zout, -2^(OB-1), 2^(OB-1)-1)
// Four register stages (t, product, shifted, saturated), advanced by `en` (the output write port can
// stall the epilogue); a stage only loads when the stage before it holds a beat (occ), which also
// keeps the datapath quiet between drains.
`default_nettype none
module jb_requant #(
    parameter ACC_W = 32,
    parameter OB = 8
) (
    input  wire                    clk,
    input  wire                    en,
    input  wire [3:0]              occ,    // stage inputs occupied: {e3, e2, e1, drain}
    input  wire signed [ACC_W-1:0] acc,
    input  wire signed [31:0]      bias,
    input  wire [16:0]             mult,
    input  wire [5:0]              shift,
    input  wire signed [15:0]      zout,
    input  wire                    relu,
    output reg  [OB-1:0]           y
);
    // widths: |t| <= 2^32, mult < 2^17, so |p| < 2^49; for shift >= 50 the rounded shift of p is 0 exactly
    // as it is at 50, so the shift is clamped to 50 and everything fits 51 bits
    localparam signed [50:0] QMAX = (51'sd1 <<< (OB - 1)) - 51'sd1;
    localparam signed [50:0] QMIN = -(51'sd1 <<< (OB - 1));

    reg signed [32:0] t;
    reg        [16:0] m1;
    reg        [5:0]  s1, s2;
    reg signed [50:0] p;
    reg signed [50:0] v;

    wire signed [17:0] mult_s = {1'b0, m1};
    wire signed [50:0] rnd = 51'sd1 <<< (s2 - 6'd1);
    wire signed [50:0] z51 = zout;

    always @(posedge clk) begin
        if (en && occ[0]) begin
            t <= acc + bias;
            m1 <= mult;
            s1 <= shift;
        end
        if (en && occ[1]) begin
            p <= t * mult_s;
            s2 <= s1 > 6'd50 ? 6'd50 : s1;
        end
        if (en && occ[2]) v <= (p + rnd) >>> s2;
        if (en && occ[3]) begin : sat
            reg signed [50:0] yv, yr;
            yv = v + z51;
            yr = (relu && yv < z51) ? z51 : yv;
            y <= yr > QMAX ? QMAX[OB-1:0] : (yr < QMIN ? QMIN[OB-1:0] : yr[OB-1:0]);
        end
    end
endmodule
`default_nettype wire
