// `phasemap generate`: run a model on one or more prompts, capture hidden states, write NPZ runs
// or print the text and a per-token table.
#include <fmt/core.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <fstream>
#include <memory>
#include <sstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "analysis_cli.hpp"
#include "cli_util.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/plan/run_plan.hpp"
#include "phasemap/steer/monitor.hpp"
#include "engine_flags.hpp"
#include "thread_options.hpp"
#include "options.hpp"
#include "verb.hpp"

namespace phasemap::cli {
namespace {

namespace fs = std::filesystem;
using namespace phasemap::capture;

struct GenerateArgs {
    std::string model;
    std::vector<std::string> prompts;
    std::string prompt_file;
    int n_predict = 64;
    float temp = 0.0f;
    int top_k = 0;
    float top_p = 1.0f;
    uint64_t seed = 0;
    bool chat = false;
    std::string layers = "hf:all";
    std::string precision = "exact";
    int parallel = 1;
    int threads = 0;
    int ctx = 0;
    bool save_logits = false;
    std::string output_stats = "auto";
    bool routing = false;
    std::string out;
    bool compress = false;
    bool quiet = false;
    AnalysisArgs analyze;
    // interventions, control vectors, monitor (docs/interventions.md)
    std::vector<std::string> intervene;
    std::vector<std::string> intervene_files;
    std::vector<std::string> control_vectors;     // FILE[:SCALE]
    std::vector<std::string> loras;               // LoRA adapters FILE[:SCALE]
    bool monitor = false;
    std::vector<std::string> triggers;
    std::string on = "log";
    std::string guard_text = "\n";
    std::string on_intervene;
    int for_tokens = 8;
    size_t monitor_cooldown = 16;
    size_t monitor_max_actions = 1;
    std::string monitor_json;
};


// The generated text with guard insertions marked ⟦guard: …⟧ where they entered the context.
std::string marked_text(const RunEnd& e) {
    std::string out;
    size_t at = 0;
    for (const auto& in : e.insertions) {
        const size_t off = std::min(in.text_offset, e.text.size());
        out += e.text.substr(at, off - at);
        out += "⟦guard: " + in.text + "⟧";
        at = off;
    }
    return out + e.text.substr(std::min(at, e.text.size()));
}

// Prints the generated text and the per-token table of a finished run.
void print_run(const RunRecord& r, size_t n_runs) {
    if (n_runs > 1) fmt::print("=== run {} ===\n", r.start.run_index);
    fmt::print("{}{}\n\n", r.start.prompt_text, marked_text(r.end));
    for (const auto& ev : r.end.events) fmt::print("monitor: {}\n", ev);
    if (!r.end.events.empty()) fmt::print("\n");
    fmt::print("{:>4}  {:<16} {:>8} {:>7} {:>7} {:>9}\n", "t", "token", "entropy", "top1", "margin", "surprisal");
    for (const auto& t : r.tokens)
        fmt::print("{:>4}  {:<16} {:>8.4f} {:>7.4f} {:>7.4f} {:>9.4f}\n", t.t, "'" + printable(t.text) + "'", t.stats.entropy,
                   t.stats.top1, t.stats.margin, t.stats.surprisal);
    fmt::print("stop: {} after {} tokens\n", r.end.stop_reason, r.end.n_generated);
}

// `--analyze`: the same analysis `phasemap analyze` runs on the written file, on the in-memory run.
void analyze_record(const RunRecord& r, const NpzRunWriter* npz, const GenerateArgs& a, size_t n_runs) {
    RunInput in;
    in.label = npz ? npz->path().filename().string() : fmt::format("run {}", r.start.run_index);
    in.states = r.states.data();
    in.tokens = r.tokens.size();
    in.layers = r.start.layers.size();
    in.dim = size_t(r.start.n_embd);
    for (const auto& l : r.start.layers) in.layer_names.push_back(l.label);
    for (const auto& t : r.tokens) {
        in.stats.push_back(t.stats);
        in.ctx.token_texts.push_back(t.text);
        in.ctx.token_ids.push_back(t.id);
    }
    if (in.layers == 0) throw UserError("--analyze needs captured layers (--layers is none)");
    in.routing_blocks = r.start.routing.blocks;  // --routing: the routing metrics too
    in.routing_k = size_t(r.start.routing.n_expert_used);
    in.routing_n_expert = size_t(r.start.routing.n_expert);
    for (const auto& t : r.tokens) {
        in.routing_experts.insert(in.routing_experts.end(), t.experts.begin(), t.experts.end());
        in.routing_weights.insert(in.routing_weights.end(), t.expert_weights.begin(), t.expert_weights.end());
    }
    in.ctx.prompt = r.start.prompt_text;
    in.ctx.generated_text = r.end.text;
    in.ctx.hidden_states_shape = {in.tokens, in.layers, in.dim};
    if (a.save_logits) in.ctx.logits_shape = {in.tokens, size_t(r.start.n_vocab)};
    if (npz) {
        in.ctx.source_npz_sha256 = io::file_sha256(npz->path());
        in.ctx.provenance = npz->metadata();
    }
    AnalysisArgs aa = a.analyze;
    aa.quiet = a.quiet;
    analyze_and_report(in, aa, r.start.run_index, n_runs);
}

// The run plan's settings from the flags.
plan::RunSettings settings(const GenerateArgs& a, std::vector<std::string> prompts) {
    plan::RunSettings s;
    s.model = a.model;
    s.loras = a.loras;
    s.control_vectors = a.control_vectors;
    s.prompts = std::move(prompts);
    s.chat = a.chat;
    s.n_predict = a.n_predict;
    s.sampling = {a.temp, a.top_k, a.top_p, a.seed};
    s.engine.precision = parse_precision(a.precision);
    s.engine.n_ctx = a.ctx;
    s.engine.n_parallel = a.parallel;
    s.engine.n_threads = a.threads;
    s.engine.layers = a.layers;
    s.engine.save_logits = a.save_logits;
    s.engine.output_stats = parse_output_stats(a.output_stats);
    s.engine.routing = a.routing;
    s.intervene = a.intervene;
    s.intervene_files = a.intervene_files;
    s.monitor = {a.monitor, a.triggers, a.on, a.guard_text, a.on_intervene, a.for_tokens, a.monitor_cooldown, a.monitor_max_actions};
    s.monitor.metric_layer = a.analyze.settings.layer;   // --metric-layer: the monitor watches the layer the analysis uses
    return s;
}

int run_generate(GenerateArgs& a) {
    // Prompts: -p TEXT (repeatable; @path reads a file), -f FILE (one prompt per line).
    std::vector<std::string> prompts;
    for (const auto& p : a.prompts) prompts.push_back(read_prompt_arg(p));
    if (!a.prompt_file.empty())
        for (auto& line : read_prompt_lines(a.prompt_file)) prompts.push_back(std::move(line));
    if (prompts.empty()) throw UserError("no prompt given (use -p TEXT, -p @file.txt or -f prompts.txt)");
    if (a.n_predict < 1) throw UserError(fmt::format("-n must be at least 1 (got {})", a.n_predict));
    if (a.parallel < 1) throw UserError("--parallel must be at least 1");
    const plan::RunSettings set = settings(a, prompts);
    // Every file this run reads: no output may be one of them (same file by device and inode).
    std::vector<std::string> inputs = plan::input_files(set);
    inputs.push_back(a.prompt_file);
    for (const auto& p : a.prompts)
        if (!p.empty() && p[0] == '@') inputs.push_back(p.substr(1));
    auto check_outputs = [&](const std::string& out, const char* opt) {
        for (size_t i = 0; i < prompts.size(); ++i) check_output(numbered_path(out, i, prompts.size()), inputs, opt);
    };
    if (!a.out.empty()) check_outputs(a.out, "-o");
    if (!a.analyze.json.empty()) {
        if (!a.analyze.enabled) throw UserError("--json writes the --analyze summary: add --analyze");
        check_outputs(a.analyze.json, "--json");
    }
    if (a.analyze.enabled && (a.layers == "none" || a.layers.empty())) throw UserError("--analyze needs captured layers (--layers is none)");
    if ((set.monitor.any_option() || !a.monitor_json.empty()) && !a.monitor)
        throw UserError("--trigger/--on/--on-intervene/--monitor-json need --monitor");

    plan::RunPlan run = plan::build_run(set);
    if (run.monitor && !a.monitor_json.empty()) check_outputs(a.monitor_json, "--monitor-json");
    const nlohmann::json& base = run.metadata;

    // Per run: an NPZ writer (with -o), a recorder (for printing / analysis), tee'd together.
    struct DoneFlag : RunSink {
        bool done = false;
        void begin(const RunStart&) override {}
        void token(const TokenRecord&, std::span<const float>, std::span<const float>) override {}
        void end(const RunEnd&) override { done = true; }
    };
    struct PerRun {
        DoneFlag flag;
        std::unique_ptr<NpzRunWriter> npz;
        std::unique_ptr<RecordingSink> rec;
        std::unique_ptr<TeeSink> tee;
    };
    std::vector<PerRun> runs(prompts.size());
    const bool keep = a.out.empty() || a.analyze.enabled;
    size_t printed = 0;
    auto flush_finished = [&] {
        // Print/analyse finished runs in order, then drop them (memory stays bounded per batch).
        while (printed < runs.size() && runs[printed].tee && runs[printed].flag.done) {
            if (runs[printed].rec) {
                const RunRecord& r = runs[printed].rec->record;
                if (a.out.empty() && !a.quiet) print_run(r, runs.size());
                if (a.analyze.enabled) analyze_record(r, runs[printed].npz.get(), a, runs.size());
            }
            runs[printed].npz.reset();
            runs[printed].rec.reset();
            ++printed;
        }
    };
    auto sink_for = [&](size_t i) -> RunSink& {
        flush_finished();
        PerRun& pr = runs[i];
        std::vector<RunSink*> sinks;
        sinks.push_back(&pr.flag);
        if (!a.out.empty()) {
            pr.npz = std::make_unique<NpzRunWriter>(numbered_path(a.out, i, prompts.size()), base, a.compress);
            sinks.push_back(pr.npz.get());
        }
        if (keep) {
            pr.rec = std::make_unique<RecordingSink>();
            sinks.push_back(pr.rec.get());
        }
        pr.tee = std::make_unique<TeeSink>(sinks);
        return *pr.tee;
    };
    run.generate(sink_for);
    // Print the remaining runs in order.
    for (size_t i = printed; i < runs.size(); ++i) {
        if (runs[i].rec) {
            if (a.out.empty() && !a.quiet) print_run(runs[i].rec->record, runs.size());
            if (a.analyze.enabled) analyze_record(runs[i].rec->record, runs[i].npz.get(), a, runs.size());
        }
    }
    if (!a.monitor_json.empty())
        for (size_t i = 0; i < run.monitors.size(); ++i) {
            const steer::Monitor& m = *run.monitors[i];
            nlohmann::json j;
            j["run_index"] = i;
            j["ct"] = nlohmann::json::array();
            for (double x : m.ct()) j["ct"].push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
            j["ct_star"] = nlohmann::json::array();
            for (double x : m.ct_star()) j["ct_star"].push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
            j["ct_first_t"] = 2;
            j["states"] = nlohmann::json::array();
            for (auto st : m.states()) j["states"].push_back(std::string(metrics::to_string(st)));
            j["events"] = nlohmann::json::array();
            for (const auto& ev : m.events())
                j["events"].push_back({{"t", ev.t}, {"trigger", ev.trigger}, {"action", ev.action}, {"value", ev.value}, {"detail", ev.detail}});
            io::write_file_atomic(numbered_path(a.monitor_json, i, prompts.size()), j.dump(2) + "\n");
        }
    if (!a.out.empty() && !a.quiet)
        fmt::print(stderr, "wrote {} run file{} ({})\n", prompts.size(), prompts.size() == 1 ? "" : "s",
                   prompts.size() == 1 ? a.out : numbered_path(a.out, 0, prompts.size()).string() + " …");
    return 0;
}

Verb reg{"generate", "Generate text and capture hidden states at every generated token", [](CLI::App& app) {
    auto a = std::make_shared<GenerateArgs>();
    app.add_option("-m,--model", a->model, "GGUF model file")->required()->check(kPath);
    app.add_option("-p,--prompt", a->prompts, "prompt text, or @FILE to read it from a file (repeatable)");
    app.add_option("-f,--prompt-file", a->prompt_file, "file with one prompt per line")->check(kPath);
    app.add_option("-n,--n-predict", a->n_predict, "maximum number of tokens to generate")->capture_default_str()->check(in(opt::kNPredict));
    app.add_option("--temp", a->temp, "sampling temperature; 0 = greedy")->capture_default_str()->check(in(opt::kTemperature));
    app.add_option("--top-k", a->top_k, "top-k sampling (0 = off)")->capture_default_str()->check(in(opt::kTopK));
    app.add_option("--top-p", a->top_p, "top-p sampling (1 = off)")->capture_default_str()->check(in(opt::kTopP));
    app.add_option("--seed", a->seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", a->chat, "apply the model's chat template to the prompt (user turn + generation prompt)");
    app.add_option("--layers", a->layers, "layers to capture: hf:all, hf:N, hf:A-B, block:all, block:N, block:A-B, hf:last, none; comma-separated")
        ->capture_default_str();
    app.add_option("--precision", a->precision, "exact (F32 KV cache, no flash attention) or fast (llama.cpp defaults)")
        ->capture_default_str()->check(one_of({"exact", "fast"}));
    app.add_option("--parallel", a->parallel, "prompts decoded together in one batch")->capture_default_str()->check(in(opt::kParallel));
    app.add_option("-t,--threads", a->threads, "CPU threads (0 = $PHASEMAP_THREADS or the physical cores)")->capture_default_str()->check(in(opt::kThreads));
    bind_thread_flags(app, a->threads);
    app.add_option("--ctx", a->ctx, "context length per sequence (0 = min(training context, 4096))")->capture_default_str()->check(in(opt::kContext));
    app.add_flag("--save-logits", a->save_logits, "store the full logits [T, V] in the NPZ");
    bind_output_stats(app, a->output_stats);
    app.add_flag("--routing", a->routing,
                 "MoE models: store per token and MoE block the selected experts and their weights (routing_experts / routing_weights [T, M, k])");
    app.add_option("-o,--output", a->out, "NPZ output (several prompts: {i} in the name, or run.N.npz)")->check(kPath);
    app.add_flag("--compress", a->compress, "deflate the NPZ members");
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    a->analyze.add_options(app, true);
    app.add_option("--intervene", a->intervene,
                   "hidden-state edit OP:block:N[:ARG...][@t=A-B,prefill,seed=N,prompts=I+J] (repeatable; docs/interventions.md), "
                   "e.g. add:block:3:vec.npy:2.0@t=0-10");
    app.add_option("--intervene-file", a->intervene_files, "TOML file with [[intervention]] tables (repeatable)")->check(kPath);
    app.add_option("--lora", a->loras,
                   "LoRA adapter GGUF FILE[:SCALE] (default scale 1) applied through llama.cpp's adapter API (repeatable)");
    app.add_option("--control-vector", a->control_vectors,
                   "llama.cpp control-vector GGUF FILE[:SCALE], applied through llama.cpp's cvec path (repeatable: summed)");
    app.add_flag("--monitor", a->monitor, "online monitor: ct_t on the --metric-layer layer (default the last captured) and output states while generating");
    app.add_option("--trigger", a->triggers,
                   "monitor trigger: collapse[:window=8][:threshold=0.001], spike[:k=5][:min=8], streak[:n=8] (repeatable; default: all three)");
    app.add_option("--on", a->on, "monitor action when a trigger fires: log, stop, guard, intervene")->capture_default_str()->check(one_of({"log", "stop", "guard", "intervene"}));
    app.add_option("--guard-text", a->guard_text, "text the guard inserts into the context (--on guard)");
    app.add_option("--on-intervene", a->on_intervene, "intervention the monitor applies (--on intervene), same grammar as --intervene");
    app.add_option("--for", a->for_tokens, "tokens an --on intervene edit lasts")->capture_default_str()->check(in({1, 1 << 24, false, true}));
    app.add_option("--monitor-cooldown", a->monitor_cooldown, "tokens before a trigger may fire again")->capture_default_str();
    app.add_option("--monitor-max-actions", a->monitor_max_actions, "stop/guard/intervene actions per run")->capture_default_str();
    app.add_option("--monitor-json", a->monitor_json, "write the monitor's ct_t, states and events per run (JSON)")->check(kPath);
    return [a] { return run_generate(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
