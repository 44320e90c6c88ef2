// MoE capture overhead: tokens/s of phasemap's engine on a mixture-of-experts model with capture
// off, with every layer captured, with every layer and the routing channel (EngineOptions::routing:
// ffn_moe_topk-N and the routing weights of every MoE block), and with both streamed to an NPZ.
// The baseline is capture off in the same run (bench_capture measures capture off against a plain
// llama.cpp loop on a dense model).
//
//   bench_capture_moe MOE_MODEL.gguf [--tokens N] [--threads T] [--reps R]
//
// The model: `phasemap make-model --arch llama --experts 8 --experts-used 2 --n-embd 512 --n-ff 1024`
// (bench/run.sh). Prints one line per mode: median tokens/s over R repetitions (wall and CPU) and
// the ratio to capture off; the modes rotate within each repetition so that drift hits them alike.
#include <llama.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common.hpp"
#include "phasemap/capture/capture.hpp"

using namespace phasemap::capture;
using pmbench::Timing;
using pmbench::median;

namespace {

// One engine run (bench/common.hpp); a routing run whose tokens carry no experts ends the benchmark.
Timing engine_run(const std::shared_ptr<Model>& m, int n_tok, int threads, const std::string& layers, bool routing,
                  const std::filesystem::path& npz) {
    size_t routed = 0;
    const Timing t = pmbench::engine_run(m, {.n_tok = n_tok, .threads = threads, .exact = true, .layers = layers, .routing = routing, .npz = npz},
                                         &routed);
    if (npz.empty() && routing && routed == 0) {
        std::fprintf(stderr, "routing was asked for but no token carried experts\n");
        std::exit(1);
    }
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MOE_MODEL.gguf [--tokens N] [--threads T] [--reps R]\n", argv[0]);
        return 2;
    }
    const char* path = argv[1];
    int n_tok = 32, threads = 1, reps = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--tokens") n_tok = std::atoi(argv[i + 1]);
        else if (k == "--threads") threads = std::atoi(argv[i + 1]);
        else if (k == "--reps") reps = std::atoi(argv[i + 1]);
        else { std::fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (n_tok < 1 || threads < 1 || reps < 1) { std::fprintf(stderr, "--tokens, --threads and --reps must be ≥ 1\n"); return 2; }
    llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    auto model = Model::load(path);
    const auto tmp = std::filesystem::temp_directory_path() / "phasemap-bench-capture-moe.npz";
    constexpr int kModes = 4;
    const char* names[kModes] = {"phasemap capture off", "phasemap capture hf:all", "phasemap capture hf:all + routing",
                                 "phasemap capture hf:all + routing + NPZ"};
    std::vector<double> wall[kModes], cpu[kModes];
    int n_blocks = 0, n_expert = 0, k_used = 0;
    {
        EngineOptions o;
        o.routing = true;
        o.n_ctx = 512;
        o.n_threads = threads;
        o.layers = "none";
        Engine e(model, o);  // refuses a dense model with the reason
        n_blocks = int(e.routing().blocks.size());
        n_expert = e.routing().n_expert;
        k_used = e.routing().n_expert_used;
    }
    for (int r = 0; r < reps + 1; ++r) {
        Timing v[kModes];
        for (int j = 0; j < kModes; ++j) {
            switch ((j + r) % kModes) {
                case 0: v[0] = engine_run(model, n_tok, threads, "none", false, {}); break;
                case 1: v[1] = engine_run(model, n_tok, threads, "hf:all", false, {}); break;
                case 2: v[2] = engine_run(model, n_tok, threads, "hf:all", true, {}); break;
                default: v[3] = engine_run(model, n_tok, threads, "hf:all", true, tmp); break;
            }
        }
        if (r == 0) continue;  // warm-up
        for (int j = 0; j < kModes; ++j) wall[j].push_back(v[j].tok_s), cpu[j].push_back(v[j].tok_cpu_s);
    }
    std::filesystem::remove(tmp);
    std::printf("model=%s arch=%s layers=%d d=%d moe_blocks=%d experts=%d k=%d threads=%d tokens=%d reps=%d precision=exact\n",
                std::filesystem::path(path).filename().c_str(), model->info().architecture.c_str(), model->info().n_layer,
                model->info().n_embd, n_blocks, n_expert, k_used, threads, n_tok, reps);
    std::printf("%-42s %10s %8s %12s %8s\n", "mode", "tok/s", "ratio", "tok/cpu-s", "ratio");
    const double bw = median(wall[0]), bc = median(cpu[0]);
    for (int j = 0; j < kModes; ++j)
        std::printf("%-42s %10.2f %8.3f %12.2f %8.3f\n", names[j], median(wall[j]), median(wall[j]) / bw, median(cpu[j]),
                    median(cpu[j]) / bc);
    std::printf("MoE capture+routing overhead vs capture off: wall %.2f %%, cpu %.2f %%\n", 100.0 * (bw / median(wall[2]) - 1.0),
                100.0 * (bc / median(cpu[2]) - 1.0));
    return 0;
}
