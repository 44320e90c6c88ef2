// Panel runner benchmark on the Qwen2.5-0.5B-shaped random-weight model:
//   1. tokens/s with --parallel P (default 16) against --parallel 1 (target ≥ 3×), and that
//      speed-up against plain llama.cpp's on the same prompts, budget and threads (plain_loop.hpp:
//      greedy, the P prompts prefilled in one batch; issue #20's target: ≥ 0.95 of it);
//   2. storage overhead: the runner with DB writes against the same runner storing nothing
//      (target ≤ 5 %).
//
//   bench_panel [MODEL.gguf] [--runs N] [--tokens T] [--threads K] [--parallel P] [--layers SPEC]
//               [--reps R] [--no-db]
//
// Each comparison is measured R times (default 2) in alternating order (A B, B A, ...) and the
// rates are totals over the repetitions, so that a burst of load on a shared machine falls on
// both sides. --no-db skips the storage comparison.
//
// T (default 64, `generate`'s default budget) is the token budget of every run. Batching speeds
// up the one-token decode steps; a run's prompt is prefilled in one batch already at --parallel
// 1, so with budgets as short as the prompts (the general panel's are 9-24 tokens) the speed-up
// is bounded by the prefill share. The header line reports the prompt tokens for that reason.
//
// Without MODEL, writes `phasemap make-model --arch qwen2 --size real` to a temporary file
// (~1 GB, removed at exit). Reports wall-clock and CPU-time rates: on a shared machine the
// CPU-time figures are the less disturbed ones.
#include <algorithm>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "phasemap/capture/capture.hpp"
#include "phasemap/modelgen/modelgen.hpp"
#include "plain_loop.hpp"
#include "phasemap/panel/manifest.hpp"
#include "phasemap/panel/prompts.hpp"
#include "phasemap/plan/panel_run.hpp"
#include "phasemap/capture/version.hpp"

namespace fs = std::filesystem;
using namespace phasemap;
using namespace phasemap::panel;
using namespace phasemap::plan;

namespace {

struct Rate {
    double wall_tok_s = 0, cpu_tok_s = 0;
    int64_t tokens = 0;
    double seconds = 0, cpu_seconds = 0;
    Rate& operator+=(const Rate& o) {
        tokens += o.tokens;
        seconds += o.seconds;
        cpu_seconds += o.cpu_seconds;
        wall_tok_s = double(tokens) / seconds;
        cpu_tok_s = double(tokens) / cpu_seconds;
        return *this;
    }
};

Rate measure(const Manifest& m, int parallel, int threads, const fs::path& db) {
    RunnerOptions o;
    o.db = db;
    o.n_parallel = parallel;
    o.n_threads = threads;
    // Model loading is excluded: the runner times generation (with analysis and storage).
    const RunnerResult r = run_panel(m, o);
    Rate x;
    x.tokens = r.tokens;
    x.seconds = r.seconds;
    x.cpu_seconds = r.cpu_seconds;
    x.wall_tok_s = double(r.tokens) / r.seconds;
    x.cpu_tok_s = double(r.tokens) / r.cpu_seconds;
    if (r.tokens <= 0) throw std::runtime_error("the runner generated no tokens");
    return x;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // figures appear as they are measured
    std::string model;
    int runs = 16, tokens = 64, threads = 2, parallel = 16, reps = 2;
    bool with_db = true;
    std::string layers = "hf:all";
    for (int i = 1; i < argc; ++i) {
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (!std::strcmp(argv[i], "--runs")) runs = std::stoi(next());
        else if (!std::strcmp(argv[i], "--tokens")) tokens = std::stoi(next());
        else if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(next());
        else if (!std::strcmp(argv[i], "--parallel")) parallel = std::stoi(next());
        else if (!std::strcmp(argv[i], "--layers")) layers = next();
        else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::stoi(next()));
        else if (!std::strcmp(argv[i], "--no-db")) with_db = false;
        else if (argv[i][0] != '-') model = argv[i];
        else {
            fmt::print(stderr, "usage: bench_panel [MODEL.gguf] [--runs N] [--tokens T] [--threads K] [--parallel P] [--layers SPEC] "
                               "[--reps R] [--no-db]\n");
            return 2;
        }
    }
    const fs::path tmp = fs::temp_directory_path() / fmt::format("bench-panel-{}", ::getpid());
    fs::create_directories(tmp);
    struct Cleanup {
        fs::path p;
        ~Cleanup() { std::error_code ec; fs::remove_all(p, ec); }
    } cleanup{tmp};
    if (model.empty()) {
        const fs::path vocab = modelgen::default_vocab_dir(llama_commit());
        if (vocab.empty()) {
            fmt::print(stderr, "bench_panel: no llama.cpp vocab dir found; pass a MODEL.gguf\n");
            return 1;
        }
        model = (tmp / "qwen2-real.gguf").string();
        fmt::print("writing the Qwen2.5-0.5B-shaped random model to {} …\n", model);
        modelgen::write_random_model(modelgen::preset("qwen2", "real"), vocab, model);
    }

    // `runs` greedy prompts from the built-in general panel, one seed, one budget.
    Manifest m;
    m.name = "bench";
    m.file = tmp / "bench.toml";
    ModelEntry me;
    me.label = "model";
    me.path = model;
    me.gen.temperatures = {0.0};
    me.gen.n_predict = {tokens};
    me.gen.seeds = {1};
    me.gen.layers = layers;
    m.models.push_back(me);
    const auto all = parse_prompt_csv(builtin_panel_csv("general"), "general");
    for (size_t i = 0; i < all.size() && int(m.prompts.size()) < runs; ++i) m.prompts.push_back(all[(i * 7) % all.size()]);

    size_t prompt_tokens = 0;
    {
        const auto mdl = capture::Model::load(model, {});
        for (const auto& p : m.prompts) prompt_tokens += mdl->tokenize(p.text, true, false).size();
    }
    // The plain loop's model (llama.cpp's default load parameters, as Model::load) and prompts.
    llama_model* plain_model = llama_model_load_from_file(model.c_str(), llama_model_default_params());
    if (!plain_model) {
        fmt::print(stderr, "bench_panel: llama.cpp cannot load {}\n", model);
        return 1;
    }
    std::vector<std::vector<llama_token>> plain_prompts;
    for (const auto& p : m.prompts) plain_prompts.push_back(pmbench::plain_tokenize(plain_model, p.text));
    const auto plain = [&](int n_seq) {
        const pmbench::Timing t = pmbench::plain_generate(plain_model, plain_prompts, tokens, threads, true, n_seq);
        Rate x;
        x.tokens = int64_t(plain_prompts.size()) * tokens;
        x.seconds = double(x.tokens) / t.tok_s;
        x.cpu_seconds = double(x.tokens) / t.tok_cpu_s;
        x.wall_tok_s = t.tok_s;
        x.cpu_tok_s = t.tok_cpu_s;
        return x;
    };
    fmt::print("panel: {} runs × ≤ {} tokens ({} prompt tokens in all), layers {}, {} threads, {} reps in alternating order, model {}\n",
               m.prompts.size(), tokens, prompt_tokens, layers, threads, reps, model);
    // --parallel 1 against each batch size (4, then `parallel`), alternating the order per repetition.
    std::vector<int> sizes;
    for (const int p : {4, parallel})
        if (p > 1 && p <= parallel && std::find(sizes.begin(), sizes.end(), p) == sizes.end()) sizes.push_back(p);
    Rate seq, plain1, plainp;
    std::vector<Rate> par(sizes.size());
    for (int r = 0; r < reps; ++r) {
        if (r % 2 == 0) seq += measure(m, 1, threads, {}), plain1 += plain(1);
        for (size_t k = 0; k < sizes.size(); ++k) par[k] += measure(m, sizes[k], threads, {});
        plainp += plain(parallel);
        if (r % 2 == 1) plain1 += plain(1), seq += measure(m, 1, threads, {});
    }
    llama_model_free(plain_model);
    fmt::print("no DB,  --parallel 1 : {:8.2f} tok/s wall  {:8.2f} tok/CPU-s  ({} tokens per repetition)\n", seq.wall_tok_s, seq.cpu_tok_s,
               seq.tokens / reps);
    for (size_t k = 0; k < sizes.size(); ++k) {
        const int p = sizes[k];
        fmt::print("no DB,  --parallel {:<2}: {:8.2f} tok/s wall  {:8.2f} tok/CPU-s\n", p, par[k].wall_tok_s, par[k].cpu_tok_s);
        fmt::print("speed-up parallel {} / 1: {:.2f}× wall, {:.2f}× CPU{}\n", p, par[k].wall_tok_s / seq.wall_tok_s,
                   par[k].cpu_tok_s / seq.cpu_tok_s, p == 16 ? " (target ≥ 3×)" : "");
    }
    const double plain_up = plainp.wall_tok_s / plain1.wall_tok_s, plain_up_cpu = plainp.cpu_tok_s / plain1.cpu_tok_s;
    fmt::print("plain llama.cpp, same prompts and budget: --parallel 1 {:.2f} tok/s, --parallel {} {:.2f} tok/s: speed-up {:.2f}× wall, {:.2f}× CPU\n",
               plain1.wall_tok_s, parallel, plainp.wall_tok_s, plain_up, plain_up_cpu);
    const Rate& pp = sizes.empty() ? seq : par.back();
    fmt::print("panel speed-up ÷ plain llama.cpp's, parallel {}: {:.3f} wall, {:.3f} CPU (target ≥ 0.95)\n", parallel,
               pp.wall_tok_s / seq.wall_tok_s / plain_up, pp.cpu_tok_s / seq.cpu_tok_s / plain_up_cpu);
    if (!with_db) return 0;
    // The runner writing the results DB against the same runner storing nothing, alternating.
    Rate db, nodb;
    for (int r = 0; r < reps; ++r) {
        const fs::path path = tmp / fmt::format("bench-{}.duckdb", r);
        if (r % 2 == 0) nodb += measure(m, parallel, threads, {});
        db += measure(m, parallel, threads, path);
        if (r % 2 == 1) nodb += measure(m, parallel, threads, {});
        std::error_code ec;
        fs::remove(path, ec);
        fs::remove(fs::path(path.string() + ".wal"), ec);
    }
    fmt::print("DB,     --parallel {:<2}: {:8.2f} tok/s wall  {:8.2f} tok/CPU-s\n", parallel, db.wall_tok_s, db.cpu_tok_s);
    fmt::print("no DB,  --parallel {:<2}: {:8.2f} tok/s wall  {:8.2f} tok/CPU-s\n", parallel, nodb.wall_tok_s, nodb.cpu_tok_s);
    fmt::print("storage overhead (DB vs none): {:+.1f} % wall, {:+.1f} % CPU (target ≤ 5 %)\n",
               100.0 * (nodb.wall_tok_s / db.wall_tok_s - 1.0), 100.0 * (nodb.cpu_tok_s / db.cpu_tok_s - 1.0));
    return 0;
}
