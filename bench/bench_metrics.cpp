// Throughput of the metric library (METRICS.md §2–§3) on a capture-sized run:
// [T = 4096 tokens, L' = 24 layers, d = 896] float32 (Qwen2.5-0.5B-sized hidden states).
// Items = float32 values of the input the benchmark covers; target ≥ 1e9 items/s on one core for
// the token axis + layer axis together (BM_AnalyzeRun).
//
//   build-metrics/bench_metrics --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/layer_axis.hpp"
#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/mad_scaling.hpp"
#include "phasemap/metrics/token_axis.hpp"

using namespace phasemap::metrics;

namespace {

constexpr std::size_t kT = 4096, kL = 24, kD = 896;

// A random walk along tokens per layer, so the numbers look like a trajectory, filled once.
const std::vector<float>& states() {
    static const std::vector<float> h = [] {
        std::vector<float> v(kT * kL * kD);
        std::mt19937_64 rng(1);
        std::normal_distribution<float> nd;
        for (std::size_t l = 0; l < kL; ++l)
            for (std::size_t j = 0; j < kD; ++j) v[l * kD + j] = 4 * nd(rng);
        for (std::size_t t = 1; t < kT; ++t)
            for (std::size_t i = 0; i < kL * kD; ++i) v[t * kL * kD + i] = v[(t - 1) * kL * kD + i] + 0.5f * nd(rng);
        return v;
    }();
    return h;
}

StatesView view() { return StatesView{states().data(), kT, kL, kD}; }

// §2 on the last layer (raw states): series, ratio_norm, late_ct, collapse, regime.
void BM_TokenAxis(benchmark::State& st) {
    const StatesView sv = view();
    for (auto _ : st) {
        TokenAxisResult r = token_axis(sv.layer(kL - 1));
        benchmark::DoNotOptimize(r.ratio_norm.v);
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(kT * kD));
}
BENCHMARK(BM_TokenAxis)->Unit(benchmark::kMillisecond);

// §2 with the clipped_mad state normalisation: the per-dimension medians and MADs (mad_scaling),
// then the series over the normalised rows, made one at a time. Issue #20's target: items/s ≥ 0.3
// of BM_TokenAxis in the same run.
void BM_TokenAxisClippedMad(benchmark::State& st) {
    const StatesView sv = view();
    TokenAxisOptions o;
    o.norm = NormMode::clipped_mad;
    for (auto _ : st) {
        TokenAxisResult r = token_axis(sv.layer(kL - 1), o);
        benchmark::DoNotOptimize(r.ratio_norm.v);
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(kT * kD));
}
BENCHMARK(BM_TokenAxisClippedMad)->Unit(benchmark::kMillisecond);

// The selection alone: median and MAD of every dimension (the part of BM_TokenAxisClippedMad that
// BM_TokenAxis does not do).
void BM_MadScaling(benchmark::State& st) {
    const StatesView sv = view();
    for (auto _ : st) {
        MadScaling m = mad_scaling(sv.layer(kL - 1));
        benchmark::DoNotOptimize(m.scale[0]);
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(kT * kD));
}
BENCHMARK(BM_MadScaling)->Unit(benchmark::kMillisecond);

// §3 for every token, with the summaries.
void BM_LayerAxis(benchmark::State& st) {
    const StatesView sv = view();
    for (auto _ : st) {
        LayerAxisResult r = layer_axis(sv);
        benchmark::DoNotOptimize(r.summary[0].n);
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(kT * kL * kD));
}
BENCHMARK(BM_LayerAxis)->Unit(benchmark::kMillisecond);

// The per-run summary as the CLI computes it by default (token axis on hf:L + layer axis on all
// tokens, no probability stats, no controls): the ≥ 1e9 floats/s target.
void BM_AnalyzeRun(benchmark::State& st) {
    const StatesView sv = view();
    for (auto _ : st) {
        RunSummary r = analyze_run(sv, {});
        benchmark::DoNotOptimize(r.token.ratio_norm.v);
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(kT * kL * kD));
}
BENCHMARK(BM_AnalyzeRun)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
