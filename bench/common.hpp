// What the decode-loop benchmarks share (bench_capture, bench_capture_moe): process CPU time, a
// median, a sink that only counts, and one timed run of phasemap's Engine on a fixed prompt.
// Header-only; included by the bench/*.cpp programs, not part of the library.
#pragma once
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"

namespace pmbench {

using BenchClock = std::chrono::steady_clock;

// Process CPU seconds: on a shared machine, CPU time is far less disturbed by other load than
// wall time (with 1 thread it is the compute itself).
inline double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Timing {
    double tok_s = 0;      // tokens per wall second
    double tok_cpu_s = 0;  // tokens per CPU second
};

// The upper median (v[n/2] of the sorted values), as every decode-loop benchmark reports it.
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Counts tokens (and routed expert slots), keeps a checksum of the first state value so the
// states are read.
struct NullSink : phasemap::capture::RunSink {
    size_t n = 0, routed = 0;
    double checksum = 0;
    void begin(const phasemap::capture::RunStart&) override {}
    void token(const phasemap::capture::TokenRecord& r, std::span<const float> st, std::span<const float>) override {
        ++n;
        routed += r.experts.size();
        if (!st.empty()) checksum += st[0];
    }
    void end(const phasemap::capture::RunEnd&) override {}
};

inline const char* kPrompt = "The history of the city begins";

// One engine run: kPrompt, n_tok tokens, 512 context cells, `layers` captured, optionally the
// routing channel and an NPZ stream to `npz` (empty: the counting sink). `routed`, when given,
// receives the expert slots the tokens carried (0 when streamed to an NPZ).
struct EngineRun {
    int n_tok = 64;
    int threads = 1;
    bool exact = true;
    std::string layers = "none";
    bool routing = false;
    std::filesystem::path npz;
    phasemap::capture::OutputStats output_stats = phasemap::capture::OutputStats::automatic;
    int n_seq = 1;  // sequences decoded together, each with kPrompt
};

inline Timing engine_run(const std::shared_ptr<phasemap::capture::Model>& m, const EngineRun& how, size_t* routed = nullptr) {
    using namespace phasemap::capture;
    EngineOptions o;
    o.precision = how.exact ? Precision::exact : Precision::fast;
    o.n_ctx = 512;
    o.n_threads = how.threads;
    o.layers = how.layers;
    o.routing = how.routing;
    o.output_stats = how.output_stats;
    o.n_parallel = how.n_seq;
    Engine e(m, o);
    Request r;
    r.prompt = kPrompt;
    r.n_predict = how.n_tok;
    NullSink null;
    std::unique_ptr<NpzRunWriter> w;
    if (!how.npz.empty()) w = std::make_unique<NpzRunWriter>(how.npz, nlohmann::json::object());
    RunSink& sink = w ? static_cast<RunSink&>(*w) : null;
    std::vector<Request> reqs(size_t(how.n_seq), r);
    // EOG would end early on a trained model; random-weight models rarely emit it, and the
    // token count is checked below.
    const auto t0 = BenchClock::now();
    const double c0 = cpu_seconds();
    e.generate(reqs, [&](size_t) -> RunSink& { return sink; });
    const double s = std::chrono::duration<double>(BenchClock::now() - t0).count();
    const double c = cpu_seconds() - c0;
    if (!w && null.n != size_t(how.n_tok) * size_t(how.n_seq)) std::fprintf(stderr, "note: run stopped after %zu tokens\n", null.n);
    if (routed) *routed = null.routed;
    const size_t n = w ? size_t(how.n_tok) : null.n;
    return {double(n) / s, double(n) / c};
}

}  // namespace pmbench
