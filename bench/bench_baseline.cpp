// Same-run baseline for the metric throughput figures of BENCHMARKS.md (bench/run.sh): the rate
// at which one core streams the same [T = 4096, L' = 24, d = 896] float32 array as
// bench_metrics while doing the least useful work on it (a sum of squares, i.e. one norm pass,
// in double like the metric kernels). bench_metrics' items/s divided by this rate is a ratio
// that moves with the metric code, not with the machine's memory bandwidth.
//
//   bench_baseline --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

namespace {

constexpr std::size_t kT = 4096, kL = 24, kD = 896;

const std::vector<float>& states() {
    static const std::vector<float> h = [] {
        std::vector<float> v(kT * kL * kD);
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> u(-4.0f, 4.0f);
        for (auto& x : v) x = u(rng);
        return v;
    }();
    return h;
}

// One pass over every value: Σ x² in double, four accumulators (vectorisable).
void BM_StreamSumSquares(benchmark::State& st) {
    const std::vector<float>& h = states();
    for (auto _ : st) {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const float* p = h.data();
        const std::size_t n = h.size();
        for (std::size_t i = 0; i + 4 <= n; i += 4) {
            a0 += double(p[i]) * p[i];
            a1 += double(p[i + 1]) * p[i + 1];
            a2 += double(p[i + 2]) * p[i + 2];
            a3 += double(p[i + 3]) * p[i + 3];
        }
        double s = a0 + a1 + a2 + a3;
        benchmark::DoNotOptimize(s);
    }
    st.SetItemsProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(kT * kL * kD));
}
BENCHMARK(BM_StreamSumSquares)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
