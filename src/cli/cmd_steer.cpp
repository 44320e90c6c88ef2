// `phasemap steer build`: a llama.cpp-compatible control vector from contrastive prompts
// (mean difference or PCA of the paired states at the last prompt token, per block).
#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/steer/eval.hpp"
#include "cli_util.hpp"
#include "thread_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

struct SteerBuildArgs {
    std::string model, pos, neg, method = "mean-diff", layers = "all", out;
    bool chat = false;
    int threads = 0;
    bool quiet = false;
};


// "1,3,5-7" or "block:1-3" or "all" → block indices.
std::vector<int> parse_blocks(std::string s, int n_layer) {
    std::vector<int> out;
    if (s == "all") return out;
    if (s.empty()) throw UserError("--layers is empty (use all, N, A-B or a comma-separated list)");
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.rfind("block:", 0) == 0) item = item.substr(6);
        try {
            const size_t dash = item.find('-', 1);
            int a = 0, b = 0;
            if (dash == std::string::npos) a = b = std::stoi(item);
            else { a = std::stoi(item.substr(0, dash)); b = std::stoi(item.substr(dash + 1)); }
            if (a < 0) a += n_layer;
            if (b < 0) b += n_layer;
            if (a > b) throw UserError(fmt::format("--layers item '{}': the range is descending (write {}-{})", item, b, a));
            if (a < 1 || b >= n_layer)
                throw UserError(fmt::format("--layers item '{}': blocks run from 1 to {} for this model", item, n_layer - 1));
            for (int i = a; i <= b; ++i) out.push_back(i);
        } catch (const std::invalid_argument&) {
            throw UserError(fmt::format("--layers item '{}' is not a block index or range", item));
        } catch (const std::out_of_range&) {
            throw UserError(fmt::format("--layers item '{}' is not a block index or range", item));
        }
    }
    return out;
}

int run_build(const SteerBuildArgs& a) {
    using namespace phasemap::capture;
    steer::BuildOptions bo;
    check_output(a.out, {a.model, a.pos, a.neg}, "-o");
    bo.pos = read_prompt_lines(a.pos);
    bo.neg = read_prompt_lines(a.neg);
    try { bo.method = steer::parse_vector_method(a.method); } catch (const std::exception& e) { throw UserError(e.what()); }
    bo.chat = a.chat;
    bo.n_threads = a.threads;
    std::shared_ptr<Model> model;
    try { model = Model::load(a.model); } catch (const std::exception& e) { throw UserError(e.what()); }
    bo.blocks = parse_blocks(a.layers, model->info().n_layer);
    steer::ControlVector cv;
    try { cv = steer::build_control_vector(model, bo); } catch (const std::invalid_argument& e) { throw UserError(e.what()); }
    try { steer::write_control_vector(cv, a.out); } catch (const std::exception& e) { throw UserError(e.what()); }
    if (!a.quiet) {
        fmt::print("wrote {} ({} directions, n_embd {}, method {}, {} pairs)\n", a.out, cv.directions.size(), cv.n_embd, cv.method, bo.pos.size());
        for (const auto& [b, v] : cv.directions) {
            double n = 0;
            for (float x : v) n += double(x) * x;
            fmt::print("  direction.{}  ‖v‖ = {:.6g}\n", b, std::sqrt(n));
        }
    }
    return 0;
}

Verb reg{"steer", "Steering vectors: `steer build` makes a llama.cpp control vector from contrastive prompts", [](CLI::App& app) {
    auto a = std::make_shared<SteerBuildArgs>();
    app.require_subcommand(1);
    CLI::App* b = app.add_subcommand("build", "Build a control vector (GGUF, llama.cpp --control-vector format) from --pos/--neg prompt files");
    b->add_option("-m,--model", a->model, "GGUF model file")->required()->check(kPath);
    b->add_option("--pos", a->pos, "positive prompts, one per line")->required()->check(kPath);
    b->add_option("--neg", a->neg, "negative prompts, one per line (paired with --pos by line)")->required()->check(kPath);
    b->add_option("--method", a->method, "mean-diff or pca")->capture_default_str()->check(one_of({"mean-diff", "pca"}));
    b->add_option("--layers", a->layers, "blocks to build directions for: all (1..L-1), N, A-B, comma-separated");
    b->add_flag("--chat", a->chat, "apply the model's chat template to every prompt");
    b->add_option("-t,--threads", a->threads, "CPU threads (0 = $PHASEMAP_THREADS or the physical cores)")->check(in(opt::kThreads));
    bind_thread_flags(*b, a->threads);
    b->add_option("-o,--output", a->out, "control-vector GGUF to write")->required()->check(kPath);
    b->add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a] { return run_build(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
