// Capture overhead benchmark: tokens/s of a plain llama.cpp decode loop (built from the same
// pinned source, same context settings), of phasemap's engine with capture off, with every
// layer captured, and with every layer captured and streamed to an NPZ file.
//
//   bench_capture MODEL.gguf [--tokens N] [--threads T] [--reps R] [--precision exact|fast] [--stats-only]
//
// Prints one line per mode: median tokens/s over R repetitions and the ratio to the plain loop.
// Then, per output-statistics path (--output-stats graph / host, issue 20), the engine at 1 and
// 16 sequences with capture off and hf:all, interleaved with the plain loop at 1 and 16: capture
// hf:all ÷ capture off at 1 and 16 sequences, and the engine's ×16 ÷ ×1 against plain
// llama.cpp's ×16 ÷ ×1 (the batching ceiling), all ratios of medians from the same run.
#include <llama.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common.hpp"
#include "plain_loop.hpp"
#include "phasemap/capture/capture.hpp"

using namespace phasemap::capture;
using Clock = pmbench::BenchClock;
using pmbench::cpu_seconds;
using pmbench::kPrompt;
using pmbench::median;
using pmbench::Timing;

namespace {

// The plain loop: kPrompt in one sequence, or in n_seq sequences decoded together (its tokens/s
// over the 1-sequence loop is what batching can give on this machine at all, the ceiling for
// phasemap's --parallel); plain_loop.hpp.
Timing plain_decode(llama_model* model, int n_tok, int threads, bool exact) {
    return pmbench::plain_generate(model, {pmbench::plain_tokenize(model, kPrompt)}, n_tok, threads, exact, 1);
}
Timing plain_decode_batched(llama_model* model, int n_tok, int threads, bool exact, int n_seq) {
    const std::vector<std::vector<llama_token>> prompts(size_t(n_seq), pmbench::plain_tokenize(model, kPrompt));
    return pmbench::plain_generate(model, prompts, n_tok, threads, exact, n_seq);
}

Timing engine_run(const std::shared_ptr<Model>& m, int n_tok, int threads, bool exact, const std::string& layers,
                  const std::filesystem::path& npz, OutputStats stats = OutputStats::automatic, int n_seq = 1) {
    return pmbench::engine_run(m, {.n_tok = n_tok, .threads = threads, .exact = exact, .layers = layers, .npz = npz,
                                   .output_stats = stats, .n_seq = n_seq});
}

// The statistics alone, 16 rows of V logits, in CPU time: the graph's ops on ggml's CPU backend
// on one thread (output_stats_on_cpu, including its context allocation) against the host's
// float64 pass (token_prob_stats; the engine spreads the rows over its threads, which leaves the
// CPU time as it is).
void stats_alone(int64_t V, int reps) {
    std::vector<float> rows(size_t(V) * 16);
    uint64_t x = 88172645463325252ull;
    for (float& v : rows) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v = float(double(x >> 11) / 9007199254740992.0 * 8.0 - 4.0);
    }
    std::vector<double> tg, th;
    double sink = 0;
    for (int r = 0; r < 2 * reps + 1; ++r) {
        double c0 = cpu_seconds();
        for (const auto& st : output_stats_on_cpu(rows, V, 1)) sink += st.entropy;
        const double g = cpu_seconds() - c0;
        c0 = cpu_seconds();
        for (int i = 0; i < 16; ++i)
            sink += phasemap::metrics::token_prob_stats(std::span<const float>(rows.data() + size_t(i) * size_t(V), size_t(V)),
                                                        phasemap::metrics::kChosenIsTop1).entropy;
        const double h = cpu_seconds() - c0;
        if (r == 0) continue;  // warm-up
        tg.push_back(g);
        th.push_back(h);
    }
    std::printf("  statistics of 16 rows × %lld logits: graph ops on the CPU backend %.2f ms cpu, host float64 %.2f ms cpu "
                "(graph ÷ host %.2f)%s\n",
                (long long)V, 1e3 * median(tg), 1e3 * median(th), median(tg) / median(th), sink == 0 ? " " : "");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [--tokens N] [--threads T] [--reps R] [--precision exact|fast]\n", argv[0]);
        return 2;
    }
    const char* path = argv[1];
    int n_tok = 64, threads = 1, reps = 5;
    bool exact = true, stats_only = false;
    for (int i = 2; i < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--stats-only") {  // only the statistics alone (no decoding): quick on a busy machine
            stats_only = true;
            --i;
            continue;
        }
        if (i + 1 >= argc) break;
        if (k == "--tokens") n_tok = std::atoi(argv[i + 1]);
        else if (k == "--threads") threads = std::atoi(argv[i + 1]);
        else if (k == "--reps") reps = std::atoi(argv[i + 1]);
        else if (k == "--precision") exact = std::string(argv[i + 1]) == "exact";
        else { std::fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    auto model = Model::load(path);
    if (stats_only) {
        stats_alone(model->info().n_vocab, reps);
        return 0;
    }
    // The plain loop's own model handle, loaded once like phasemap's: llama.cpp's default load
    // parameters, as Model::load (both map the same file, both repack weights alike).
    llama_model* plain_model = llama_model_load_from_file(path, llama_model_default_params());
    if (!plain_model) { std::fprintf(stderr, "cannot load %s\n", path); return 1; }
    const auto tmp = std::filesystem::temp_directory_path() / "phasemap-bench-capture.npz";
    std::vector<double> plain, off, cap, capnpz, cplain, coff, ccap, ccapnpz;
    // Interleave the modes so that drift (thermal, other load) hits all of them alike.
    for (int r = 0; r < reps + 1; ++r) {
        // Rotate the order of the modes from one repetition to the next.
        Timing v[4];
        for (int k = 0; k < 4; ++k) {
            switch ((k + r) % 4) {
                case 0: v[0] = plain_decode(plain_model, n_tok, threads, exact); break;
                case 1: v[1] = engine_run(model, n_tok, threads, exact, "none", {}); break;
                case 2: v[2] = engine_run(model, n_tok, threads, exact, "hf:all", {}); break;
                default: v[3] = engine_run(model, n_tok, threads, exact, "hf:all", tmp); break;
            }
        }
        if (r == 0) continue;  // warm-up
        plain.push_back(v[0].tok_s); off.push_back(v[1].tok_s); cap.push_back(v[2].tok_s); capnpz.push_back(v[3].tok_s);
        cplain.push_back(v[0].tok_cpu_s); coff.push_back(v[1].tok_cpu_s); ccap.push_back(v[2].tok_cpu_s);
        ccapnpz.push_back(v[3].tok_cpu_s);
    }
    std::filesystem::remove(tmp);
    // Batching ceiling of the plain loop: 16 sequences against 1, modes alternating.
    std::vector<double> one, many;
    for (int r = 0; r < reps + 1; ++r) {
        const Timing a = r % 2 ? plain_decode_batched(plain_model, n_tok, threads, exact, 16) : plain_decode(plain_model, n_tok, threads, exact);
        const Timing b = r % 2 ? plain_decode(plain_model, n_tok, threads, exact) : plain_decode_batched(plain_model, n_tok, threads, exact, 16);
        if (r == 0) continue;
        one.push_back(r % 2 ? b.tok_s : a.tok_s);
        many.push_back(r % 2 ? a.tok_s : b.tok_s);
    }
    llama_model_free(plain_model);
    const double base = median(plain);
    std::printf("model=%s arch=%s layers=%d d=%d threads=%d tokens=%d reps=%d precision=%s\n",
                std::filesystem::path(path).filename().c_str(), model->info().architecture.c_str(), model->info().n_layer,
                model->info().n_embd, threads, n_tok, reps, exact ? "exact" : "fast");
    const double cbase = median(cplain);
    std::printf("%-34s %10s %8s %12s %8s\n", "mode", "tok/s", "ratio", "tok/cpu-s", "ratio");
    auto line = [&](const char* name, const std::vector<double>& v, const std::vector<double>& c) {
        std::printf("%-34s %10.2f %8.3f %12.2f %8.3f\n", name, median(v), median(v) / base, median(c), median(c) / cbase);
    };
    line("plain llama.cpp decode loop", plain, cplain);
    line("phasemap capture off", off, coff);
    line("phasemap capture hf:all", cap, ccap);
    line("phasemap capture hf:all + NPZ", capnpz, ccapnpz);
    std::printf("capture overhead vs capture off: wall %.2f %%, cpu %.2f %%\n", 100.0 * (median(off) / median(cap) - 1.0),
                100.0 * (median(coff) / median(ccap) - 1.0));
    std::printf("capture+NPZ overhead vs capture off: wall %.2f %%, cpu %.2f %%\n", 100.0 * (median(off) / median(capnpz) - 1.0),
                100.0 * (median(coff) / median(ccapnpz) - 1.0));
    std::printf("capture overhead vs plain loop: wall %.2f %%, cpu %.2f %%\n", 100.0 * (base / median(cap) - 1.0),
                100.0 * (cbase / median(ccap) - 1.0));
    std::printf("plain llama.cpp batched decode: 16 sequences %.2f tok/s, 1 sequence %.2f tok/s, ratio %.3f\n", median(many),
                median(one), median(many) / median(one));

    // Output statistics in the graph against the host path: 10 modes per repetition, rotated.
    struct Mode {
        const char* name;
        OutputStats stats;
        int n_seq;
        const char* layers;  // nullptr: the plain loop
        std::vector<double> wall, cpu;
    };
    std::vector<Mode> modes{{"plain llama.cpp, 1 sequence", OutputStats::graph, 1, nullptr, {}, {}},
                            {"plain llama.cpp, 16 sequences", OutputStats::graph, 16, nullptr, {}, {}}};
    for (const OutputStats os : {OutputStats::graph, OutputStats::host})
        for (const int ns : {1, 16})
            for (const char* lay : {"none", "hf:all"}) modes.push_back({"", os, ns, lay, {}, {}});
    plain_model = llama_model_load_from_file(path, llama_model_default_params());
    for (int r = 0; r < reps + 1; ++r)
        for (size_t k = 0; k < modes.size(); ++k) {
            Mode& md = modes[(k + size_t(r)) % modes.size()];
            const Timing t = !md.layers ? (md.n_seq == 1 ? plain_decode(plain_model, n_tok, threads, exact)
                                                         : plain_decode_batched(plain_model, n_tok, threads, exact, md.n_seq))
                                        : engine_run(model, n_tok, threads, exact, md.layers, {}, md.stats, md.n_seq);
            if (r == 0) continue;  // warm-up
            md.wall.push_back(t.tok_s);
            md.cpu.push_back(t.tok_cpu_s);
        }
    llama_model_free(plain_model);
    auto find = [&](OutputStats os, int ns, const char* lay) -> const Mode& {
        for (const Mode& md : modes)
            if (md.stats == os && md.n_seq == ns && (lay ? md.layers && std::strcmp(md.layers, lay) == 0 : !md.layers)) return md;
        std::abort();
    };
    const Mode& p1 = find(OutputStats::graph, 1, nullptr);
    const Mode& p16 = find(OutputStats::graph, 16, nullptr);
    const double plain_ratio = median(p16.wall) / median(p1.wall), plain_ratio_cpu = median(p16.cpu) / median(p1.cpu);
    std::printf("output statistics (%d reps, rotated): %-8s %5s %-7s %10s %12s\n", reps, "path", "seqs", "layers", "tok/s", "tok/cpu-s");
    for (const Mode& md : modes)
        if (md.layers)
            std::printf("  %-8s %5d %-7s %10.2f %12.2f\n", output_stats_name(md.stats), md.n_seq, md.layers, median(md.wall), median(md.cpu));
    std::printf("  plain llama.cpp ×16 ÷ ×1: %.3f wall, %.3f cpu\n", plain_ratio, plain_ratio_cpu);
    for (const OutputStats os : {OutputStats::graph, OutputStats::host}) {
        const char* nm = output_stats_name(os);
        for (const int ns : {1, 16}) {
            const Mode& off16 = find(os, ns, "none");
            const Mode& cap16 = find(os, ns, "hf:all");
            std::printf("  %s: capture hf:all ÷ capture off at %2d sequences: %.3f wall, %.3f cpu (target ≥ 0.97)\n", nm, ns,
                        median(cap16.wall) / median(off16.wall), median(cap16.cpu) / median(off16.cpu));
        }
        const double r_w = median(find(os, 16, "hf:all").wall) / median(find(os, 1, "hf:all").wall);
        const double r_c = median(find(os, 16, "hf:all").cpu) / median(find(os, 1, "hf:all").cpu);
        std::printf("  %s: engine hf:all ×16 ÷ ×1 = %.3f wall (%.3f of plain's), %.3f cpu (%.3f of plain's; target ≥ 0.95)\n", nm, r_w,
                    r_w / plain_ratio, r_c, r_c / plain_ratio_cpu);
    }
    stats_alone(model->info().n_vocab, reps);
    for (const int ns : {1, 16})
        std::printf("  graph ÷ host, capture off, %2d sequences: %.3f wall, %.3f cpu\n", ns,
                    median(find(OutputStats::graph, ns, "none").wall) / median(find(OutputStats::host, ns, "none").wall),
                    median(find(OutputStats::graph, ns, "none").cpu) / median(find(OutputStats::host, ns, "none").cpu));
    return 0;
}
