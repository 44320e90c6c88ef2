// `phasemap replicate`: runs one declared protocol twice (a fresh model load and a fresh Engine
// each time), compares every array bit for bit and writes a report in the layout of LIMEN's
// replication.json (schema limen.replication.v1, see include/phasemap/io/replicate.hpp).
//
// Exit status: 0 for EXACT_REPLICATION, 3 for NUMERICAL_DRIFT or DIVERGED (the report is written
// in every case), 1 for errors.
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/plan/run_plan.hpp"
#include "phasemap/io/replicate.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/capture/version.hpp"
#include "cli_util.hpp"
#include "thread_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

namespace fs = std::filesystem;
using namespace phasemap::capture;

struct ReplicateArgs {
    std::string model, prompt, out, layers = "hf:all", precision = "exact";
    int n_predict = 16, threads = 0, ctx = 0, top_k = 0;
    float temp = 0.0f, top_p = 1.0f;
    uint64_t seed = 0;
    bool chat = false, quiet = false;
};

// One execution of the protocol (a fresh model load and Engine from the run plan), captured in memory.
io::Replica execute(const plan::RunSettings& set, nlohmann::json& provenance) {
    plan::RunPlan run = plan::build_run(set);
    RecordingSink rec;
    run.generate([&](size_t) -> RunSink& { return rec; });
    const std::shared_ptr<Model>& model = run.model;
    const std::unique_ptr<Engine>& engine = run.engine;
    const RunRecord& r = rec.record;
    if (!r.finished) throw UserError("the run did not finish");
    const size_t T = r.tokens.size(), L = r.start.layers.size(), d = size_t(r.start.n_embd), V = size_t(r.start.n_vocab);
    io::Replica out;
    if (L) out.arrays["hidden_states"] = io::ReplicaArray::f32({T, L, d}, r.states);
    out.arrays["logits"] = io::ReplicaArray::f32({T, V}, r.logits);
    const capture::TokenColumns c = capture::token_columns(r);
    out.arrays["token_ids"] = io::ReplicaArray::i64({T}, c.token_ids);
    out.arrays["positions"] = io::ReplicaArray::i64({T}, c.positions);
    out.arrays["prompt_ids"] = io::ReplicaArray::i64({c.prompt_ids.size()}, c.prompt_ids);
    out.arrays["entropy"] = io::ReplicaArray::f64({T}, c.entropy);
    out.arrays["top1"] = io::ReplicaArray::f64({T}, c.top1);
    out.arrays["margin"] = io::ReplicaArray::f64({T}, c.margin);
    out.arrays["surprisal"] = io::ReplicaArray::f64({T}, c.surprisal);
    out.arrays_sha256 = io::replica_sha256(out);

    const ModelInfo& mi = model->info();
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : r.start.layers) layers.push_back(l.label);
    out.fixed_metadata = {
        {"model_id", mi.name.empty() ? mi.path.filename().string() : mi.name},
        {"model_sha256", mi.sha256},
        {"architecture", mi.architecture},
        {"engine", {{"precision", engine->facts().precision}, {"n_ctx", engine->facts().n_ctx},
                    {"n_batch", engine->facts().n_batch}, {"type_k", engine->facts().type_k},
                    {"type_v", engine->facts().type_v}, {"flash_attn", engine->facts().flash_attn},
                    {"n_threads", engine->facts().n_threads}}},
        {"layers", layers},
        {"prompt_text", r.start.prompt_text},
        {"stop_reason", r.end.stop_reason},
        {"n_generated", r.end.n_generated},
        {"generated_text", r.end.text},
    };
    provenance = run.provenance;
    return out;
}

int run_replicate(const ReplicateArgs& a) {
    const std::string prompt = read_prompt_arg(a.prompt);
    if (prompt.empty()) throw UserError("prompt is empty");
    if (a.n_predict < 1) throw UserError(fmt::format("-n must be at least 1 (got {})", a.n_predict));
    plan::RunSettings set;
    set.model = a.model;
    set.prompts = {prompt};
    set.chat = a.chat;
    set.n_predict = a.n_predict;
    set.sampling = {a.temp, a.top_k, a.top_p, a.seed};
    set.engine.precision = parse_precision(a.precision);
    set.engine.n_ctx = a.ctx;
    set.engine.n_threads = a.threads;
    set.engine.layers = a.layers;
    set.engine.save_logits = true;
    check_output(a.out, {a.model, !a.prompt.empty() && a.prompt[0] == '@' ? a.prompt.substr(1) : std::string()}, "-o");

    nlohmann::json prov_a, prov_b;
    const io::Replica ref = execute(set, prov_a);
    const io::Replica rep = execute(set, prov_b);
    const bool greedy = a.temp <= 0.0f;
    nlohmann::json protocol = {
        {"prompt", prompt},      {"chat", a.chat},     {"n_predict", a.n_predict}, {"layers", a.layers},
        {"precision", a.precision}, {"greedy", greedy}, {"temperature", a.temp},    {"top_k", a.top_k},
        {"top_p", a.top_p},      {"seed", a.seed},     {"executions", 2},
        {"fresh_engine_per_execution", true},
        {"phasemap_version", std::string(version())}, {"llama_cpp_commit", std::string(llama_commit())},
        {"provenance", prov_a},
    };
    const nlohmann::json report = io::replication_report(ref, rep, protocol);
    io::write_file_atomic(a.out, report.dump(2) + "\n");
    const std::string verdict = report["verdict"];
    if (!a.quiet) {
        const auto& mx = report["phasemap"]["max_absolute_difference"];
        fmt::print("{}: {} arrays compared, max |diff| {}, report {}\n", verdict, report["arrays"].size(),
                   mx.is_null() ? std::string("inf") : fmt::format("{:.3g}", mx.get<double>()), a.out);
    }
    return verdict == io::kExactReplication ? 0 : 3;
}

Verb reg{"replicate", "Run one protocol twice and compare every array bitwise (LIMEN replication.json layout)", [](CLI::App& app) {
    auto a = std::make_shared<ReplicateArgs>();
    app.add_option("-m,--model", a->model, "GGUF model file")->required()->check(kPath);
    app.add_option("-p,--prompt", a->prompt, "prompt text, or @FILE to read it from a file")->required();
    app.add_option("-n,--n-predict", a->n_predict, "tokens to generate per execution")->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--layers", a->layers, "layers to capture (see generate --layers)")->capture_default_str();
    app.add_option("--temp", a->temp, "sampling temperature; 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--top-k", a->top_k, "top-k sampling (0 = off)")->capture_default_str()->check(in(opt::kTopK));
    app.add_option("--top-p", a->top_p, "top-p sampling (1 = off)")->capture_default_str()->check(in(opt::kTopP));
    app.add_option("--seed", a->seed, "sampling seed (the same in both executions)")->capture_default_str();
    app.add_flag("--chat", a->chat, "apply the model's chat template");
    app.add_option("--precision", a->precision, "exact or fast")->capture_default_str()->check(one_of({"exact", "fast"}));
    app.add_option("-t,--threads", a->threads, "CPU threads (0 = $PHASEMAP_THREADS or the physical cores)")->capture_default_str()->check(in(opt::kThreads));
    bind_thread_flags(app, a->threads);
    app.add_option("--ctx", a->ctx, "context length (0 = min(training context, 4096))")->capture_default_str()->check(in(opt::kContext));
    app.add_option("-o,--output", a->out, "replication report (JSON)")->required()->check(kPath);
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    return [a] { return run_replicate(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
