// `phasemap generate`: run a model on one or more prompts, capture hidden states, write NPZ runs
// or print the text and a per-token table.
#include <fmt/core.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "phasemap/capture.hpp"
#include "phasemap/run_sinks.hpp"
#include "analysis_cli.hpp"
#include "phasemap/run_file.hpp"
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
    std::string out;
    bool compress = false;
    bool quiet = false;
    AnalysisArgs analyze;
};

std::string read_text_file(const std::string& path, const char* what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw UserError(fmt::format("cannot read {} '{}'", what, path));
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void check_writable(const fs::path& p) {
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw UserError(fmt::format("cannot write '{}': directory '{}' does not exist", p.string(), dir.string()));
    // Probe by creating a file: access(2) says yes to root even on read-only file systems.
    const fs::path probe = dir / fmt::format(".phasemap-probe-{}", ::getpid());
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) throw UserError(fmt::format("cannot write '{}': directory '{}' is not writable ({})", p.string(), dir.string(), std::strerror(errno)));
    ::close(fd);
    ::unlink(probe.c_str());
    if (fs::is_directory(p, ec)) throw UserError(fmt::format("cannot write '{}': it is a directory", p.string()));
}

std::string printable(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '\n') o += "\\n";
        else if (c == '\t') o += "\\t";
        else if (c < 0x20 || c == 0x7f) o += fmt::format("\\x{:02x}", c);
        else o.push_back(char(c));
    }
    return o;
}

// Prints the generated text and the per-token table of a finished run.
void print_run(const RunRecord& r, size_t n_runs) {
    if (n_runs > 1) fmt::print("=== run {} ===\n", r.start.run_index);
    fmt::print("{}{}\n\n", r.start.prompt_text, r.end.text);
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
    for (const auto& p : a.prompts) prompts.push_back(!p.empty() && p[0] == '@' ? read_text_file(p.substr(1), "prompt file") : p);
    if (!a.prompt_file.empty()) {
        std::istringstream in(read_text_file(a.prompt_file, "prompt file"));
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (!line.empty()) prompts.push_back(line);
        }
        if (prompts.empty()) throw UserError(fmt::format("prompt file '{}' holds no prompt", a.prompt_file));
    }
    if (prompts.empty()) throw UserError("no prompt given (use -p TEXT, -p @file.txt or -f prompts.txt)");
    if (a.n_predict < 1) throw UserError(fmt::format("-n must be at least 1 (got {})", a.n_predict));
    if (a.parallel < 1) throw UserError("--parallel must be at least 1");
    Precision precision;
    try { precision = parse_precision(a.precision); } catch (const std::exception& e) { throw UserError(e.what()); }
    if (!a.out.empty())
        for (size_t i = 0; i < prompts.size(); ++i) check_writable(numbered_path(a.out, i, prompts.size()));
    if (!a.analyze.json.empty()) {
        if (!a.analyze.enabled) throw UserError("--json writes the --analyze summary: add --analyze");
        for (size_t i = 0; i < prompts.size(); ++i) check_writable(numbered_path(a.analyze.json, i, prompts.size()));
    }
    if (a.analyze.enabled && (a.layers == "none" || a.layers.empty())) throw UserError("--analyze needs captured layers (--layers is none)");

    std::shared_ptr<Model> model;
    try { model = Model::load(a.model); } catch (const std::exception& e) { throw UserError(e.what()); }
    EngineOptions eo;
    eo.precision = precision;
    eo.n_ctx = a.ctx;
    eo.n_parallel = std::min<int>(a.parallel, int(prompts.size()));
    eo.n_threads = a.threads;
    eo.layers = a.layers;
    eo.save_logits = a.save_logits;
    std::unique_ptr<Engine> engine;
    try { engine = std::make_unique<Engine>(model, eo); }
    catch (const std::invalid_argument& e) { throw UserError(e.what()); }

    std::vector<Request> reqs;
    for (const auto& p : prompts) {
        Request r;
        r.prompt = p;
        r.chat = a.chat;
        r.n_predict = a.n_predict;
        r.sampling = {a.temp, a.top_k, a.top_p, a.seed};
        reqs.push_back(r);
    }
    nlohmann::json base = provenance_json(model->info(), engine->facts(), a.layers);
    base["chat_template_applied"] = a.chat;
    base["sampling"] = {{"temperature", a.temp}, {"top_k", a.top_k}, {"top_p", a.top_p}, {"seed", a.seed},
                        {"greedy", a.temp <= 0.0f}};
    base["n_predict"] = a.n_predict;
    base["save_logits"] = a.save_logits;
    base["n_parallel"] = eo.n_parallel;

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
    if (!a.out.empty() && !a.quiet)
        fmt::print(stderr, "wrote {} run file{} ({})\n", prompts.size(), prompts.size() == 1 ? "" : "s",
                   prompts.size() == 1 ? a.out : numbered_path(a.out, 0, prompts.size()).string() + " …");
    return 0;
}

Verb reg{"generate", "Generate text and capture hidden states at every generated token", [](CLI::App& app) {
    auto a = std::make_shared<GenerateArgs>();
    app.add_option("-m,--model", a->model, "GGUF model file")->required();
    app.add_option("-p,--prompt", a->prompts, "prompt text, or @FILE to read it from a file (repeatable)");
    app.add_option("-f,--prompt-file", a->prompt_file, "file with one prompt per line");
    app.add_option("-n,--n-predict", a->n_predict, "maximum number of tokens to generate")->capture_default_str();
    app.add_option("--temp", a->temp, "sampling temperature; 0 = greedy")->capture_default_str();
    app.add_option("--top-k", a->top_k, "top-k sampling (0 = off)")->capture_default_str();
    app.add_option("--top-p", a->top_p, "top-p sampling (1 = off)")->capture_default_str();
    app.add_option("--seed", a->seed, "sampling seed")->capture_default_str();
    app.add_flag("--chat", a->chat, "apply the model's chat template to the prompt (user turn + generation prompt)");
    app.add_option("--layers", a->layers, "layers to capture: hf:all, hf:N, hf:A-B, block:all, block:N, block:A-B, hf:last, none; comma-separated")
        ->capture_default_str();
    app.add_option("--precision", a->precision, "exact (F32 KV cache, no flash attention) or fast (llama.cpp defaults)")
        ->capture_default_str();
    app.add_option("--parallel", a->parallel, "prompts decoded together in one batch")->capture_default_str();
    app.add_option("-t,--threads", a->threads, "CPU threads (0 = all)")->capture_default_str();
    app.add_option("--ctx", a->ctx, "context length per sequence (0 = min(training context, 4096))")->capture_default_str();
    app.add_flag("--save-logits", a->save_logits, "store the full logits [T, V] in the NPZ");
    app.add_option("-o,--output", a->out, "NPZ output (several prompts: {i} in the name, or run.N.npz)");
    app.add_flag("--compress", a->compress, "deflate the NPZ members");
    app.add_flag("-q,--quiet", a->quiet, "print nothing but errors");
    a->analyze.add_options(app, true);
    return [a] { return run_generate(*a); };
}};

}  // namespace
}  // namespace phasemap::cli
