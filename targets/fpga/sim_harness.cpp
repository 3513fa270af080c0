// Cycle-accurate harness around the Verilated jb_accel: a DDR model (byte array; read bursts answered
// after a fixed latency, then one 64-bit beat per cycle while the accelerator is ready; writes always
// accepted) and an extern "C" API for ctypes. The clock loop runs here, never per cycle in Python.
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "Vjb_accel.h"
#include "verilated.h"

namespace {

struct Burst {
    uint64_t addr;
    uint32_t len;
    uint32_t done;
    uint64_t ready;  // first cycle the data may be presented
};

struct Sim {
    VerilatedContext ctx;
    Vjb_accel* top = nullptr;
    std::vector<uint8_t> ddr;
    std::deque<Burst> bursts;
    uint64_t cycle = 0;
    uint32_t latency = 24;
    int error = 0;  // 1: DDR read out of range, 2: DDR write out of range
};

void tick(Sim* s) {
    Vjb_accel* t = s->top;
    if (!s->bursts.empty() && s->cycle >= s->bursts.front().ready) {
        const Burst& b = s->bursts.front();
        uint64_t a = b.addr + 8ull * b.done;
        uint64_t v = 0;
        if (a + 8 <= s->ddr.size()) std::memcpy(&v, s->ddr.data() + a, 8);
        else s->error = 1;
        t->rd_valid = 1;
        t->rd_data = v;
    } else {
        t->rd_valid = 0;
    }
    t->clk = 0;
    t->eval();
    // handshakes are decided by the values settled before the rising edge
    const bool req = t->rd_req_valid && t->rd_req_ready;
    const uint64_t req_addr = t->rd_req_addr;
    const uint32_t req_len = t->rd_req_len;
    const bool rd_fire = t->rd_valid && t->rd_ready;
    const bool wr_fire = t->wr_valid && t->wr_ready;
    const uint64_t wr_addr = t->wr_addr;
    const uint64_t wr_data = t->wr_data;
    const uint32_t wr_strb = t->wr_strb;
    t->clk = 1;
    t->eval();
    if (rd_fire) {
        Burst& b = s->bursts.front();
        if (++b.done == b.len) s->bursts.pop_front();
    }
    if (req) s->bursts.push_back(Burst{req_addr, req_len, 0, s->cycle + s->latency});
    if (wr_fire) {
        if (wr_addr + 8 <= s->ddr.size()) {
            for (int i = 0; i < 8; ++i)
                if (wr_strb >> i & 1) s->ddr[wr_addr + i] = static_cast<uint8_t>(wr_data >> (8 * i));
        } else {
            s->error = 2;
        }
    }
    ++s->cycle;
}

}  // namespace

extern "C" {

void jb_reset(void* h) {
    Sim* s = static_cast<Sim*>(h);
    Vjb_accel* t = s->top;
    t->rst = 1;
    t->reg_we = 0;
    t->reg_re = 0;
    t->rd_req_ready = 1;
    t->wr_ready = 1;
    t->rd_valid = 0;
    for (int i = 0; i < 4; ++i) tick(s);
    t->rst = 0;
    s->bursts.clear();
    s->error = 0;
    s->cycle = 0;
}

void* jb_new() {
    Sim* s = new Sim();
    s->ctx.commandArgs(0, static_cast<const char**>(nullptr));
    s->top = new Vjb_accel(&s->ctx);
    jb_reset(s);
    return s;
}

void jb_free(void* h) {
    Sim* s = static_cast<Sim*>(h);
    s->top->final();
    delete s->top;
    delete s;
}

void jb_set_latency(void* h, uint32_t cycles) { static_cast<Sim*>(h)->latency = cycles < 1 ? 1 : cycles; }

void jb_ddr_resize(void* h, uint64_t n) { static_cast<Sim*>(h)->ddr.assign(n, 0); }

int jb_ddr_write(void* h, uint64_t addr, const uint8_t* p, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    if (addr + n > s->ddr.size()) return -1;
    std::memcpy(s->ddr.data() + addr, p, n);
    return 0;
}

int jb_ddr_read(void* h, uint64_t addr, uint8_t* p, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    if (addr + n > s->ddr.size()) return -1;
    std::memcpy(p, s->ddr.data() + addr, n);
    return 0;
}

void jb_reg_write(void* h, uint32_t addr, uint32_t data) {
    Sim* s = static_cast<Sim*>(h);
    s->top->reg_we = 1;
    s->top->reg_addr = addr;
    s->top->reg_wdata = data;
    tick(s);
    s->top->reg_we = 0;
}

// Registered read: the register file answers on the clock edge after reg_re.
uint32_t jb_reg_read(void* h, uint32_t addr) {
    Sim* s = static_cast<Sim*>(h);
    s->top->reg_re = 1;
    s->top->reg_addr = addr;
    tick(s);
    s->top->reg_re = 0;
    return s->top->reg_rdata;
}

// Run until the accelerator raises irq (done). Returns the cycles run, -1 on timeout, -2/-3 on a DDR
// access out of range (read/write).
int64_t jb_run(void* h, int64_t max_cycles) {
    Sim* s = static_cast<Sim*>(h);
    const uint64_t start = s->cycle;
    for (int64_t i = 0; i < max_cycles; ++i) {
        tick(s);
        if (s->error) return -1 - s->error;
        if (s->top->irq) return static_cast<int64_t>(s->cycle - start);
    }
    return -1;
}

uint64_t jb_cycle(void* h) { return static_cast<Sim*>(h)->cycle; }
}
