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

#include "phasemap/capture.hpp"
#include "phasemap/run_sinks.hpp"
#include "analysis_cli.hpp"
#include "cli_util.hpp"
#include "phasemap/run_file.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/spec.hpp"
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


// FILE[:SCALE] (control vectors, LoRA adapters): a trailing ":number" is the scale (default 1);
// anything else after the last colon stays part of the file name.
std::pair<std::string, float> split_file_scale(const std::string& spec) {
    if (const size_t c = spec.rfind(':'); c != std::string::npos && c + 1 < spec.size()) {
        try {
            size_t used = 0;
            const float scale = std::stof(spec.substr(c + 1), &used);
            if (used == spec.size() - c - 1) {
                if (const std::string p = opt::domain_problem(scale, opt::kScale); !p.empty())
                    throw UserError(fmt::format("'{}': the scale {}", spec, p));
                return {spec.substr(0, c), scale};
            }
        } catch (const std::invalid_argument&) {
        } catch (const std::out_of_range&) {
            throw UserError(fmt::format("'{}': the scale is not a finite number (out of float range)", spec));
        }
    }
    return {spec, 1.0f};
}

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

int run_generate(GenerateArgs& a) {
    // Prompts: -p TEXT (repeatable; @path reads a file), -f FILE (one prompt per line).
    std::vector<std::string> prompts;
    for (const auto& p : a.prompts) prompts.push_back(read_prompt_arg(p));
    if (!a.prompt_file.empty())
        for (auto& line : read_prompt_lines(a.prompt_file)) prompts.push_back(std::move(line));
    if (prompts.empty()) throw UserError("no prompt given (use -p TEXT, -p @file.txt or -f prompts.txt)");
    if (a.n_predict < 1) throw UserError(fmt::format("-n must be at least 1 (got {})", a.n_predict));
    if (a.parallel < 1) throw UserError("--parallel must be at least 1");
    Precision precision;
    try { precision = parse_precision(a.precision); } catch (const std::exception& e) { throw UserError(e.what()); }
    // Every file this run reads: no output may be one of them (same file by device and inode).
    std::vector<std::string> inputs{a.model, a.prompt_file};
    for (const auto& p : a.prompts)
        if (!p.empty() && p[0] == '@') inputs.push_back(p.substr(1));
    for (const auto* v : {&a.intervene_files, &a.control_vectors, &a.loras})
        for (const auto& f : *v) inputs.push_back(v == &a.intervene_files ? f : split_file_scale(f).first);
    auto check_outputs = [&](const std::string& out, const char* opt) {
        for (size_t i = 0; i < prompts.size(); ++i) check_output(numbered_path(out, i, prompts.size()), inputs, opt);
    };
    if (!a.out.empty()) check_outputs(a.out, "-o");
    if (!a.analyze.json.empty()) {
        if (!a.analyze.enabled) throw UserError("--json writes the --analyze summary: add --analyze");
        check_outputs(a.analyze.json, "--json");
    }
    if (a.analyze.enabled && (a.layers == "none" || a.layers.empty())) throw UserError("--analyze needs captured layers (--layers is none)");

    ModelOptions mopt;
    for (const auto& spec : a.loras) {
        const auto [path, scale] = split_file_scale(spec);
        if (!std::isfinite(scale)) throw UserError(fmt::format("--lora '{}': the scale is not a finite number", spec));
        mopt.adapters.push_back({path, scale});
    }
    std::shared_ptr<Model> model;
    try { model = Model::load(a.model, mopt); } catch (const std::exception& e) { throw UserError(e.what()); }
    EngineOptions eo;
    eo.precision = precision;
    eo.n_ctx = a.ctx;
    eo.n_parallel = std::min<int>(a.parallel, int(prompts.size()));
    eo.n_threads = a.threads;
    eo.layers = a.layers;
    eo.save_logits = a.save_logits;
    eo.routing = a.routing;
    std::unique_ptr<Engine> engine;
    try { engine = std::make_unique<Engine>(model, eo); }
    catch (const std::invalid_argument& e) { throw UserError(e.what()); }

    // Interventions and control vectors: parsed and checked against the model before generating.
    const ModelInfo& mi = model->info();
    std::vector<steer::ParsedIntervention> parsed;
    nlohmann::json iv_meta = nlohmann::json::array();
    try {
        for (const auto& spec : a.intervene) parsed.push_back(steer::parse_intervention_spec(spec, mi.n_layer));
        for (const auto& f : a.intervene_files)
            for (auto& p : steer::parse_intervention_file(f, mi.n_layer)) parsed.push_back(std::move(p));
        std::vector<Intervention> all;
        for (const auto& p : parsed) {
            for (int k : p.prompts)
                if (k >= int(prompts.size()))
                    throw std::invalid_argument(fmt::format("intervention '{}': prompt index {} out of range ({} prompts)", p.iv.label, k, prompts.size()));
            all.push_back(p.iv);
        }
        resolve_interventions(all, mi.n_layer, mi.n_embd);
        for (size_t i = 0; i < parsed.size(); ++i)
            iv_meta.push_back({{"intervention", all[i].describe()}, {"prompts", parsed[i].prompts}});
    } catch (const std::invalid_argument& e) {
        throw UserError(e.what());
    }
    nlohmann::json cv_meta = nlohmann::json::array();
    if (!a.control_vectors.empty()) {
        std::vector<float> sum;
        for (const auto& spec : a.control_vectors) {
            const auto [path, scale] = split_file_scale(spec);
            try {
                const steer::ControlVector cv = steer::read_control_vector(path);
                steer::check_control_vector(cv, mi.architecture, mi.n_layer, mi.n_embd);
                const std::vector<float> f = cv.flat(scale);
                if (f.size() > sum.size()) sum.resize(f.size(), 0.0f);
                for (size_t i = 0; i < f.size(); ++i) sum[i] += f[i];
                cv_meta.push_back({{"path", path}, {"scale", scale}, {"sha256", io::file_sha256(path)}, {"method", cv.method}});
            } catch (const std::exception& e) {
                const std::string what = e.what();  // read errors already name the file
                throw UserError(what.find("'" + path + "'") != std::string::npos ? what
                                                                               : fmt::format("control vector '{}': {}", path, what));
            }
        }
        try { engine->set_control_vector(sum); } catch (const std::exception& e) { throw UserError(e.what()); }
    }
    // Monitor and guard.
    std::optional<steer::MonitorOptions> mon;
    const bool monitor_opts = !a.triggers.empty() || a.on != "log" || !a.monitor_json.empty() || !a.on_intervene.empty();
    if (monitor_opts && !a.monitor) throw UserError("--trigger/--on/--on-intervene/--monitor-json need --monitor");
    if (a.monitor) {
        if (engine->layers().empty()) throw UserError("--monitor needs captured layers (--layers is none)");
        steer::MonitorOptions mo;
        try {
            for (const auto& t : a.triggers) mo.triggers.push_back(steer::parse_trigger(t));
            if (a.on == "log") mo.action = steer::ActionKind::log;
            else if (a.on == "stop") mo.action = steer::ActionKind::stop;
            else if (a.on == "guard") mo.action = steer::ActionKind::guard;
            else if (a.on == "intervene") mo.action = steer::ActionKind::intervene;
            else throw std::invalid_argument(fmt::format("--on '{}': use log, stop, guard or intervene", a.on));
            mo.guard_text = a.guard_text;
            mo.for_tokens = a.for_tokens;
            mo.cooldown = a.monitor_cooldown;
            mo.max_actions = a.monitor_max_actions;
            if (!a.analyze.layer.empty()) {  // --metric-layer: the same layer the analysis uses (layer_id.hpp rule)
                std::vector<std::string> names;
                for (const auto& l : engine->layers()) names.push_back(l.label);
                mo.layer = metrics::resolve_layer_index(metrics::parse_layer_choice(a.analyze.layer, names), names.size());
            }
            if (mo.action == steer::ActionKind::intervene) {
                if (a.on_intervene.empty()) throw std::invalid_argument("--on intervene needs --on-intervene SPEC");
                mo.intervention = steer::parse_intervention_spec(a.on_intervene, mi.n_layer).iv;
                std::vector<Intervention> chk{mo.intervention};
                resolve_interventions(chk, mi.n_layer, mi.n_embd);
                mo.intervention = chk[0];
            }
            mo.validate();
        } catch (const std::invalid_argument& e) {
            throw UserError(e.what());
        }
        mon = mo;
        if (!a.monitor_json.empty()) check_outputs(a.monitor_json, "--monitor-json");
    }
    std::vector<std::unique_ptr<steer::Monitor>> monitors;

    std::vector<Request> reqs;
    for (size_t i = 0; i < prompts.size(); ++i) {
        Request r;
        r.prompt = prompts[i];
        r.chat = a.chat;
        r.n_predict = a.n_predict;
        r.sampling = {a.temp, a.top_k, a.top_p, a.seed};
        for (const auto& p : parsed)
            if (p.prompts.empty() || std::find(p.prompts.begin(), p.prompts.end(), int(i)) != p.prompts.end())
                r.interventions.push_back(p.iv);
        if (mon) {
            monitors.push_back(std::make_unique<steer::Monitor>(*mon, engine->layers().size(), size_t(mi.n_embd)));
            r.controller = monitors.back().get();
        }
        reqs.push_back(r);
    }
    nlohmann::json base = provenance_json(model->info(), engine->facts(), a.layers);
    base["chat_template_applied"] = a.chat;
    base["sampling"] = {{"temperature", a.temp}, {"top_k", a.top_k}, {"top_p", a.top_p}, {"seed", a.seed},
                        {"greedy", a.temp <= 0.0f}};
    base["n_predict"] = a.n_predict;
    base["save_logits"] = a.save_logits;
    base["n_parallel"] = eo.n_parallel;
    if (!iv_meta.empty()) base["interventions"] = iv_meta;
    if (!cv_meta.empty()) base["control_vectors"] = cv_meta;
    if (mon) base["monitor"] = {{"action", steer::action_name(mon->action)}, {"triggers", a.triggers}, {"guard_text", mon->guard_text}};

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
    try {
        engine->generate(reqs, sink_for);
    } catch (const std::exception& e) {
        throw UserError(e.what());
    }
    // Print the remaining runs in order.
    for (size_t i = printed; i < runs.size(); ++i) {
        if (runs[i].rec) {
            if (a.out.empty() && !a.quiet) print_run(runs[i].rec->record, runs.size());
            if (a.analyze.enabled) analyze_record(runs[i].rec->record, runs[i].npz.get(), a, runs.size());
        }
    }
    if (!a.monitor_json.empty())
        for (size_t i = 0; i < monitors.size(); ++i) {
            const steer::Monitor& m = *monitors[i];
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
    app.add_option("-t,--threads", a->threads, "CPU threads (0 = $PHASEMAP_THREADS or all)")->capture_default_str()->check(in(opt::kThreads));
    app.add_option("--ctx", a->ctx, "context length per sequence (0 = min(training context, 4096))")->capture_default_str()->check(in(opt::kContext));
    app.add_flag("--save-logits", a->save_logits, "store the full logits [T, V] in the NPZ");
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
