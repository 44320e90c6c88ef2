// Panel runner: grid → run plan → batched generation → analysis → one DB transaction per
// generation group (include/phasemap/plan/panel_run.hpp).
#include "phasemap/plan/panel_run.hpp"

#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <ctime>
#include <exception>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/capture/version.hpp"
#include "phasemap/io/crash_point.hpp"
#include "phasemap/io/files.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/panel/run_analysis.hpp"
#include "phasemap/plan/run_plan.hpp"
#include "phasemap/store/store.hpp"

namespace phasemap::plan {

using namespace phasemap::panel;

namespace {

using namespace phasemap::capture;
using Clock = std::chrono::steady_clock;

// Points of one generation group (they differ only in the normalisation).
struct Group {
    std::vector<const GridPoint*> points;
    std::vector<std::string> ids;
    std::vector<bool> stored;    // already in the DB (a group stored in part: see run_panel)
};

// Ctrl-C / SIGTERM during a panel run (report_interrupts). A commit in progress is finished
// before the process stops, so the count printed is exact: state idle → committing → idle, and a
// signal that arrives while committing is acted on when the commit ends.
namespace interrupt {
enum : int { kIdle = 0, kCommitting = 1, kPending = 2, kExiting = 3 };
std::atomic<int> state{kIdle};
std::atomic<int> pending_signal{0};
std::atomic<size_t> written{0}, stored{0}, total{0};
char panel_name[256] = "";
char db_path[2048] = "";
struct sigaction old_int {}, old_term {};
bool installed = false;

void put(char*& p, char* end, const char* s) {
    while (*s && p < end) *p++ = *s++;
}
void put_num(char*& p, char* end, size_t v) {
    char b[24];
    int n = 0;
    do b[n++] = char('0' + v % 10), v /= 10;
    while (v);
    while (n && p < end) *p++ = b[--n];
}

// Async-signal-safe: write(2), sigaction, raise only.
void report_and_die(int sig) {
    char buf[3072];
    char* p = buf;
    char* const end = buf + sizeof buf;
    const size_t w = written.load(), st = stored.load(), tot = total.load();
    put(p, end, "\npanel '");
    put(p, end, panel_name);
    put(p, end, sig == SIGINT ? "': interrupted (Ctrl-C): " : "': terminated: ");
    put_num(p, end, w);
    put(p, end, w == 1 ? " run written by this invocation" : " runs written by this invocation");
    if (tot > 0) {
        put(p, end, ", ");
        put_num(p, end, st + w);
        put(p, end, " of ");
        put_num(p, end, tot);
        put(p, end, " now in ");
    } else {
        put(p, end, "; results DB ");
    }
    put(p, end, db_path);
    if (tot > 0 && st + w >= tot) put(p, end, ". Every run of the panel is stored.\n");
    else put(p, end, ". The panel resumes: run the same command again (stored runs are skipped).\n");
    [[maybe_unused]] const ssize_t r = ::write(2, buf, size_t(p - buf));
    io::remove_temporaries_now();  // files being written atomically (their own handler may not be installed)
    const struct sigaction& old = sig == SIGINT ? old_int : old_term;
    ::sigaction(sig, &old, nullptr);
    if (old.sa_handler == SIG_DFL) {
        ::raise(sig);  // in the handler: delivered when it returns; otherwise now
        return;
    }
    // Another handler was installed before: let it run, and stop if it returns.
    if (old.sa_flags & SA_SIGINFO) old.sa_sigaction(sig, nullptr, nullptr);
    else old.sa_handler(sig);
    ::_exit(128 + sig);
}

void handler(int sig) {
    int st = state.load();
    for (;;) {
        if (st == kIdle) {
            if (state.compare_exchange_weak(st, kExiting)) return report_and_die(sig);
        } else if (st == kCommitting) {
            pending_signal.store(sig);
            if (state.compare_exchange_weak(st, kPending)) return;
        } else {
            return;  // already pending or exiting
        }
    }
}

// Around a commit and the count that follows it.
void enter_commit() {
    int st = kIdle;
    while (!state.compare_exchange_weak(st, kCommitting)) {
        if (st == kExiting)
            for (;;) ::pause();  // another thread reports and stops the process
        st = kIdle;
    }
}
void leave_commit() {
    int st = kCommitting;
    if (state.compare_exchange_strong(st, kIdle)) return;
    state.store(kExiting);  // kPending: a signal came during the commit
    report_and_die(pending_signal.load());
}
// enter_commit / leave_commit, also when the commit throws.
struct CommitGuard {
    CommitGuard() { enter_commit(); }
    ~CommitGuard() { leave_commit(); }
    CommitGuard(const CommitGuard&) = delete;
    CommitGuard& operator=(const CommitGuard&) = delete;
};
}  // namespace interrupt

// Receives one generated run, then analyses every normalisation of its group and commits them.
class PanelSink : public RunSink {
public:
    struct Shared {
        const Manifest* m = nullptr;
        store::Store* db = nullptr;
        const ModelEntry* model = nullptr;
        std::vector<std::string> layer_names;      // captured
        const EngineFacts* facts = nullptr;         // of the model's engine (precision, n_ctx)
        std::atomic<int64_t>* tokens = nullptr;
        size_t* done = nullptr;                    // runs written (counted after each commit)
        std::function<void()> on_commit;
        std::exception_ptr* error = nullptr;
    };
    PanelSink(Shared& sh, const Group& g, std::string states_rel) : sh_(sh), g_(g), states_rel_(std::move(states_rel)) {}

    void begin(const RunStart& s) override { rec_.begin(s); }
    void token(const TokenRecord& r, std::span<const float> st, std::span<const float> lg) override {
        rec_.token(r, st, lg);
        ++*sh_.tokens;
    }
    void end(const RunEnd& e) override {
        rec_.end(e);
        // An exception must not cross the engine's decode loop: keep the first one, skip later
        // commits, and let run_panel rethrow it after generation.
        if (!*sh_.error) {
            try {
                commit();
            } catch (...) {
                *sh_.error = std::current_exception();
            }
        }
        rec_.record = {};  // free the states
    }

private:
    void commit() {
        const RunRecord& r = rec_.record;
        const Manifest& m = *sh_.m;
        // LIMEN's protocol leaves the embedding output (hf:0) out of the analysed states
        // (run_analysis.hpp, shared with serve --db).
        const std::vector<std::string> names = analysed_layer_names(sh_.layer_names, m.include_embedding);
        const std::vector<store::TokenData> toks = token_rows(r);
        const auto& gen = sh_.model->gen;
        // Every normalisation of the generation not yet stored, then one transaction for all.
        std::vector<metrics::RunSummary> summaries;
        std::vector<store::RunRow> rows;
        std::vector<std::vector<store::LayerTokenData>> layers;
        summaries.reserve(g_.points.size());
        rows.reserve(g_.points.size());
        layers.reserve(g_.points.size());
        size_t analysed = 0;
        for (size_t k = 0; k < g_.points.size(); ++k) {
            if (g_.stored[k]) continue;
            ++analysed;
            const GridPoint& p = *g_.points[k];
            const metrics::AnalysisOptions opt = analysis_options(m, p.norm, names);
            metrics::RunSummary s = analyse_recorded_run(r, sh_.layer_names, m.include_embedding, opt);
            if (!sh_.db) continue;
            store::RunRow row = run_row(r, *sh_.facts, gen.layers);
            const Prompt& pr = m.prompts[p.prompt];
            row.run_id = g_.ids[k];
            row.model = sh_.model->label;
            row.category = pr.category;
            row.prompt_index = pr.index;
            row.prompt = pr.text;
            row.chat = gen.chat;
            row.temperature = p.temperature;
            row.top_k = gen.top_k;
            row.top_p = gen.top_p;
            row.seed = p.seed;
            row.n_predict = p.n_predict;
            row.norm = p.norm;
            row.metric_options = options_record_json(m, p.norm);
            row.states_path = states_rel_;
            layers.push_back(layer_token_series(r, sh_.layer_names, opt.token));
            rows.push_back(std::move(row));
            summaries.push_back(std::move(s));
        }
        size_t written = analysed;
        if (sh_.db) {
            std::vector<store::Store::RunWrite> w;
            for (size_t i = 0; i < rows.size(); ++i) w.push_back({&rows[i], &summaries[i], &toks, &layers[i]});
            crash_point("panel.before_commit");
            interrupt::CommitGuard guard;
            written = sh_.db->commit_group(w);
            crash_point("panel.after_commit");
            *sh_.done += written;
            interrupt::written += written;
        } else {
            *sh_.done += written;
        }
        if (sh_.on_commit) sh_.on_commit();
    }

    Shared& sh_;
    const Group& g_;
    std::string states_rel_;
    RecordingSink rec_;
};

double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

std::string fmt_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "--:--";
    const auto x = int64_t(std::llround(s));
    if (x >= 3600) return fmt::format("{}:{:02}:{:02}", x / 3600, (x / 60) % 60, x % 60);
    return fmt::format("{}:{:02}", x / 60, x % 60);
}

}  // namespace

void report_interrupts(const std::string& panel, const fs::path& db) {
    std::snprintf(interrupt::panel_name, sizeof interrupt::panel_name, "%s", panel.c_str());
    std::snprintf(interrupt::db_path, sizeof interrupt::db_path, "%s", db.c_str());
    if (interrupt::installed) return;
    struct sigaction sa {};
    sa.sa_handler = interrupt::handler;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    // A signal ignored on entry (SIGINT of a background job) stays ignored.
    for (auto [sig, old] : {std::pair{SIGINT, &interrupt::old_int}, std::pair{SIGTERM, &interrupt::old_term}}) {
        ::sigaction(sig, nullptr, old);
        if (old->sa_handler != SIG_IGN) ::sigaction(sig, &sa, nullptr);
    }
    interrupt::installed = true;
}

std::string progress_line(const Progress& p, bool tty) {
    const double tps = p.seconds > 0 ? double(p.tokens) / p.seconds : 0.0;
    const double eta = p.runs_done > 0 ? p.seconds / double(p.runs_done) * double(p.runs_total - p.runs_done) : NAN;
    if (tty) {
        const int W = 28;
        const int fill = p.runs_total ? int(double(W) * double(p.runs_done) / double(p.runs_total)) : W;
        return fmt::format("\r[{}{}] {}/{} runs  {:.1f} tok/s  ETA {}  {}\x1b[K", std::string(size_t(fill), '#'),
                           std::string(size_t(W - fill), '.'), p.runs_done, p.runs_total, tps, fmt_duration(eta), p.model);
    }
    return fmt::format("panel: {}/{} runs, {} tokens, {:.1f} tok/s, elapsed {}, ETA {} ({})\n", p.runs_done, p.runs_total,
                       p.tokens, tps, fmt_duration(p.seconds), fmt_duration(eta), p.model);
}

RunnerResult run_panel(const Manifest& m, const RunnerOptions& opt) {
    if (opt.n_parallel < 1) throw std::runtime_error("--parallel must be at least 1");
    const auto sha = model_hashes(m);
    const auto asha = adapter_hashes(m);
    const auto grid = expand_grid(m);
    RunnerResult res;
    res.grid_runs = grid.size();

    // Generation groups of this shard with their run ids.
    std::map<size_t, Group> groups;
    for (const auto& p : grid) {
        if (!opt.shard.contains(p.group)) continue;
        auto& g = groups[p.group];
        g.points.push_back(&p);
        g.ids.push_back(run_id(m, p, sha[p.model], asha[p.model]));
        ++res.shard_runs;
    }
    interrupt::total = res.shard_runs;

    std::unique_ptr<store::Store> db;
    std::set<std::string> have;
    if (!opt.db.empty()) {
        store::OpenOptions oo;
        oo.manifest_hash = grid_hash(m, sha, asha);
        oo.meta = {{"manifest_name", m.name},
                   {"manifest_file", m.file.filename().string()},
                   {"grid_runs", std::to_string(grid.size())},
                   {"phasemap_version", version()},
                   {"llama_commit", llama_commit()}};
        if (opt.shard.count > 1) oo.meta["shard"] = opt.shard.str();
        db = store::Store::open(opt.db, oo);
        have = db->run_ids();
    }

    // Pending groups by model (a group is pending unless every run of it is stored). A group
    // with some of its runs stored was left by a phasemap that committed each normalisation on
    // its own and was killed between two of them: it is generated again and its missing runs
    // are written, in one transaction; the stored ones are kept (the same run id is the same run).
    std::map<size_t, std::vector<const Group*>> pending;
    size_t pending_runs = 0;
    std::vector<std::string> repairs;
    for (auto& [gi, g] : groups) {
        size_t n_stored = 0;
        g.stored.assign(g.ids.size(), false);
        for (size_t k = 0; k < g.ids.size(); ++k)
            if (have.count(g.ids[k])) g.stored[k] = true, ++n_stored;
        res.skipped += n_stored;
        if (n_stored == g.ids.size()) continue;
        pending[g.points.front()->model].push_back(&g);
        pending_runs += g.ids.size() - n_stored;
        if (n_stored > 0) {
            const GridPoint& p = *g.points.front();
            std::string kept, missing;
            for (size_t k = 0; k < g.ids.size(); ++k) {
                std::string& to = g.stored[k] ? kept : missing;
                to += (to.empty() ? "" : ", ") + g.points[k]->norm;
            }
            repairs.push_back(fmt::format(
                "repairing a generation stored in part (model '{}', prompt {}#{}, temperature {}, seed {}, n_predict {}): "
                "{} of {} runs stored (norm {}), the missing {} (norm {}) will be written in one transaction",
                m.models[p.model].label, m.prompts[p.prompt].category, m.prompts[p.prompt].index, p.temperature, p.seed,
                p.n_predict, n_stored, g.ids.size(), kept, g.ids.size() - n_stored, missing));
        }
    }
    res.repaired = repairs.size();
    interrupt::stored = res.skipped;
    if (opt.on_repair)
        for (const auto& line : repairs) opt.on_repair(line);
    if (opt.on_plan) opt.on_plan(pending_runs, res.skipped);

    const fs::path states_dir = opt.db.empty() ? fs::path() : fs::path(opt.db.string() + ".states");
    if (m.save_states && db && !pending.empty()) fs::create_directories(states_dir);

    std::atomic<int64_t> tokens{0};
    Progress prog;
    prog.runs_total = pending_runs;
    double gen_seconds = 0;

    for (const auto& [mi, gs] : pending) {
        const ModelEntry& me = m.models[mi];
        // The model, its engine and one request per pending generation group, through the run
        // plan that generate and replicate use (run_plan.hpp).
        RunSettings rs;
        rs.model = me.path.string();
        for (const auto& a : me.adapters) rs.adapters.push_back({a.path, float(a.scale)});
        rs.chat = me.gen.chat;
        for (const Group* g : gs) {
            const GridPoint& p = *g->points.front();
            rs.prompts.push_back(m.prompts[p.prompt].text);
            rs.per_prompt.push_back({int(p.n_predict), {float(p.temperature), int(me.gen.top_k), float(me.gen.top_p), p.seed}});
        }
        rs.engine.precision = parse_precision(me.gen.precision);
        // n_ctx = 0: as many cells as the longest run needs (capped at the default), not the
        // default's 4096 per sequence; the runs come out the same (capture.hpp, context_for).
        rs.engine.n_ctx = me.gen.n_ctx > 0 ? int(me.gen.n_ctx) : 0;
        rs.fit_context = true;
        rs.engine.n_parallel = std::max(1, opt.n_parallel);
        rs.engine.n_threads = opt.n_threads;
        rs.engine.output_stats = opt.output_stats;
        rs.engine.layers = me.gen.layers;
        // MoE models: the routing channel too (docs/metrics-moe.md), unless the engine cannot read
        // this architecture's routing; then the panel runs without it (the routing columns NULL).
        rs.routing_if_moe = true;
        RunPlan rp;
        try {
            rp = build_run(rs);
        } catch (const std::exception& e) {
            throw std::runtime_error(fmt::format("model '{}': {}", me.label, e.what()));
        }
        const std::shared_ptr<Model>& model = rp.model;
        Engine* engine = rp.engine.get();
        if (db) {
            // The file's facts (run_analysis.hpp, as `serve --db` stores them) and the manifest's.
            store::ModelRow row = model_row(me.label, model->info());
            row.path = me.path.string();   // as the manifest resolved it
            row.sha256 = sha[mi];          // the hash in the run ids
            if (!me.architecture.empty()) row.architecture = me.architecture;
            row.family = me.family;
            row.size = me.size;
            row.variant_of = me.variant_of;
            row.covariates = me.covariates;
            nlohmann::json ad = nlohmann::json::array();
            for (size_t k = 0; k < me.adapters.size(); ++k)
                ad.push_back({{"path", me.adapters[k].path.string()}, {"sha256", asha[mi][k]}, {"scale", me.adapters[k].scale}});
            row.adapters = ad.dump();
            db->put_model(row);
        }
        PanelSink::Shared sh;
        sh.m = &m;
        sh.db = db.get();
        sh.model = &me;
        for (const auto& l : engine->layers()) sh.layer_names.push_back(l.label);
        sh.facts = &engine->facts();
        sh.tokens = &tokens;
        // The metric layer must exist among the captured layers: check before generating.
        {
            const std::vector<std::string> names = analysed_layer_names(sh.layer_names, m.include_embedding);
            try {
                (void)analysis_options(m, m.norms.front(), names);
            } catch (const std::exception& e) {
                throw std::runtime_error(fmt::format("model '{}': [metrics] layer: {}", me.label, e.what()));
            }
        }
        const nlohmann::json& prov = rp.provenance;
        prog.model = me.label;
        const auto t0 = Clock::now();
        const double before = gen_seconds;
        sh.on_commit = [&] {
            prog.runs_done = res.done;
            prog.tokens = tokens.load();
            prog.seconds = before + std::chrono::duration<double>(Clock::now() - t0).count();
            if (opt.on_progress) opt.on_progress(prog);
        };
        struct Slot {
            std::unique_ptr<PanelSink> panel;
            std::unique_ptr<NpzRunWriter> npz;
            std::unique_ptr<TeeSink> tee;
        };
        std::vector<Slot> slots(rp.requests.size());
        sh.done = &res.done;
        auto sink_for = [&](size_t i) -> RunSink& {
            const Group& g = *gs[i];
            std::string rel;
            std::vector<RunSink*> sinks;
            if (m.save_states && db) {
                rel = states_dir.filename().string() + "/" + g.ids.front() + ".npz";
                nlohmann::json meta = prov;
                meta["run_id"] = g.ids.front();
                meta["panel"] = m.name;
                slots[i].npz = std::make_unique<NpzRunWriter>(states_dir / (g.ids.front() + ".npz"), meta);
                sinks.push_back(slots[i].npz.get());
            }
            slots[i].panel = std::make_unique<PanelSink>(sh, g, rel);
            sinks.push_back(slots[i].panel.get());
            slots[i].tee = std::make_unique<TeeSink>(sinks);
            return *slots[i].tee;
        };
        std::exception_ptr error;
        sh.error = &error;
        const double c0 = process_cpu_seconds();
        rp.generate(sink_for);
        if (error) std::rethrow_exception(error);
        res.cpu_seconds += process_cpu_seconds() - c0;
        gen_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    res.tokens = tokens.load();
    res.seconds = gen_seconds;
    prog.runs_done = res.done;
    prog.tokens = res.tokens;
    prog.seconds = gen_seconds;
    // The last commit already reported a complete panel; otherwise report where it ended.
    if (opt.on_progress && pending_runs > 0 && res.done != pending_runs) opt.on_progress(prog);
    return res;
}

}  // namespace phasemap::plan
