// Intervention overhead benchmark: tokens/s of phasemap's engine generating with no intervention
// vs with one `add` intervention at a middle block on every token (prefill positions included),
// both with capture off, and both with the last layer captured.
//
//   bench_intervene MODEL.gguf [--tokens N] [--threads T] [--reps R]
//
// Prints median tokens/s (wall and CPU) over R repetitions per mode and the ratio with/without.
// Modes alternate within each repetition so drifting machine load hits both alike.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "common.hpp"
#include "phasemap/capture/capture.hpp"

using namespace phasemap::capture;
using Clock = pmbench::BenchClock;
using pmbench::cpu_seconds;
using pmbench::NullSink;

namespace {

struct Timing {
    double wall = 0, cpu = 0;
};

Timing one_run(Engine& e, const Request& r) {
    NullSink sink;
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    e.generate(std::span<const Request>(&r, 1), [&](size_t) -> RunSink& { return sink; });
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = cpu_seconds() - c0;
    return {double(sink.n) / wall, double(sink.n) / cpu};
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_intervene MODEL.gguf [--tokens N] [--threads T] [--reps R]\n");
        return 2;
    }
    int n_tok = 32, threads = 2, reps = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--tokens")) n_tok = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    auto model = Model::load(argv[1]);
    const auto& mi = model->info();
    std::printf("model %s (%s, %d blocks, n_embd %d), %d tokens, %d threads, %d reps\n", mi.path.filename().c_str(),
                mi.architecture.c_str(), mi.n_layer, mi.n_embd, n_tok, threads, reps);
    Intervention iv;
    iv.op = InterventionOp::add;
    iv.block = mi.n_layer / 2;
    iv.vec = random_direction(size_t(mi.n_embd), 1.0, 1);
    iv.strength = 0.5;
    iv.t_begin = 0;
    iv.t_end = INT_MAX;
    iv.prefill = true;
    for (const char* layers : {"none", "hf:last"}) {
        EngineOptions o;
        o.layers = layers;
        o.n_threads = threads;
        o.n_ctx = 512;
        Engine e(model, o);
        Request plain;
        plain.prompt = "The history of the city begins";
        plain.n_predict = n_tok;
        Request edited = plain;
        edited.interventions = {iv};
        one_run(e, plain);  // warm-up
        std::vector<double> pw, pc, ew, ec;
        for (int r = 0; r < reps; ++r) {
            const bool plain_first = r % 2 == 0;
            const Timing a = one_run(e, plain_first ? plain : edited);
            const Timing b = one_run(e, plain_first ? edited : plain);
            const Timing& p = plain_first ? a : b;
            const Timing& x = plain_first ? b : a;
            pw.push_back(p.wall); pc.push_back(p.cpu); ew.push_back(x.wall); ec.push_back(x.cpu);
        }
        std::printf("capture %-8s none: %8.2f tok/s (%8.2f tok/cpu-s)   add@block:%d every token: %8.2f tok/s (%8.2f tok/cpu-s)   "
                    "ratio %.4f (cpu %.4f)\n",
                    layers, median(pw), median(pc), iv.block, median(ew), median(ec), median(ew) / median(pw), median(ec) / median(pc));
    }
    return 0;
}
