// _phasemap: the pybind11 binding of phasemap's C++ library (the `phasemap` Python package,
// python/phasemap/). Everything computed here is the library's: the run plan, the capture engine,
// the run-file metadata, the metric registry and analysis, the panel runner and the results store.
// This file converts types, releases the GIL while the engine runs, and maps exceptions.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fmt/core.h>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "phasemap/audit/hypotheses.hpp"
#include "phasemap/audit/report.hpp"
#include "phasemap/audit/result.hpp"
#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/capture/version.hpp"
#include "phasemap/io/summary_json.hpp"
#include "phasemap/plan/report_run.hpp"
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/normalize.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/metrics/value.hpp"
#include "phasemap/metrics/registry.hpp"
#include "phasemap/panel/manifest.hpp"
#include "phasemap/plan/panel_run.hpp"
#include "phasemap/plan/run_plan.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/store/columns.hpp"
#include "phasemap/store/store.hpp"

namespace py = pybind11;
namespace fs = std::filesystem;
using namespace phasemap;
using capture::RunRecord;

namespace {

// ------------------------------------------------------------------ errors

// Python-visible error types: FileNotFoundError / ValueError / RuntimeError with the library's
// messages (the ones the CLI prints). std::invalid_argument and metrics::MetricError are bad
// options (ValueError); a missing input file is FileNotFoundError.
struct FileMissing : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void require_file(const std::string& path, const char* what) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw FileMissing(fmt::format("{} '{}' does not exist", what, path));
}

py::object json_to_py(const nlohmann::json& j) {
    // Leaked on purpose: a static py::object would be released after the interpreter finalised.
    static py::object* loads = new py::object(py::module_::import("json").attr("loads"));
    return (*loads)(capture::metadata_text(j));
}

nlohmann::json py_to_json(const py::handle& o) {
    static py::object* dumps = new py::object(py::module_::import("json").attr("dumps"));
    return nlohmann::json::parse(py::cast<std::string>((*dumps)(o)));
}

// A numpy array over `data` kept alive by `owner` (no copy).
template <class T, class Owner>
py::array_t<T> view_array(std::vector<size_t> shape, const T* data, std::shared_ptr<Owner> owner) {
    auto* keep = new std::shared_ptr<Owner>(std::move(owner));
    py::capsule cap(keep, [](void* p) { delete static_cast<std::shared_ptr<Owner>*>(p); });
    std::vector<py::ssize_t> sh(shape.begin(), shape.end()), st(shape.size());
    py::ssize_t s = sizeof(T);
    for (size_t i = shape.size(); i-- > 0;) {
        st[i] = s;
        s *= sh[i];
    }
    return py::array_t<T>(sh, st, data, cap);
}

template <class T>
py::array_t<T> owned_array(std::vector<T> v) {
    auto p = std::make_shared<std::vector<T>>(std::move(v));
    return view_array<T>({p->size()}, p->data(), p);
}

// ------------------------------------------------------------------ signals and stops

// Chained before any other controller of a request: stops the sequence when Python asked
// (KeyboardInterrupt at a token boundary, a closed stream), otherwise hands on.
struct StopController : capture::GenerationController {
    std::atomic<bool>* stop = nullptr;             // shared by every sequence of the call
    bool check_signals = false;                    // take the GIL after each token and check Ctrl-C
    std::shared_ptr<std::optional<py::error_already_set>> pending;  // the KeyboardInterrupt
    capture::GenerationController* next = nullptr;
    std::function<void(const capture::TokenRecord&, std::span<const float>)> on_token;

    capture::StepAction after_token(const capture::TokenRecord& rec, std::span<const float> states) override {
        if (check_signals && !stop->load()) {
            py::gil_scoped_acquire g;
            if (PyErr_CheckSignals() != 0) {
                *pending = py::error_already_set();
                stop->store(true);
            }
        }
        capture::StepAction act;
        if (!stop->load() && next) act = next->after_token(rec, states);
        if (on_token) on_token(rec, states);
        if (stop->load()) {
            act.stop = true;
            act.stop_reason = "interrupted";
        }
        return act;
    }
};

// ------------------------------------------------------------------ model and generation

struct PyModel {
    std::shared_ptr<capture::Model> model;
    int threads = 0;
    int gpu_layers = 0;
};

struct GenerateArgs {
    std::vector<std::string> prompts;
    int n = 64;
    std::string layers = "hf:all";
    float temperature = 0;
    int top_k = 0;
    float top_p = 1;
    uint64_t seed = 0;
    bool chat = false;
    int parallel = 1;
    std::string precision = "exact";
    bool save_logits = false;
    int ctx = 0;
    std::vector<std::string> interventions;
    std::vector<std::string> intervention_files;
    std::vector<std::string> control_vectors;
    std::map<std::string, py::object> hooks;
    std::string output_stats = "auto";  // capture::OutputStats by name
};

plan::RunSettings settings_of(const PyModel& m, const GenerateArgs& a) {
    plan::RunSettings s;
    s.model = m.model->info().path.string();
    s.prompts = a.prompts;
    s.chat = a.chat;
    s.n_predict = a.n;
    s.sampling = {a.temperature, a.top_k, a.top_p, a.seed};
    s.engine.precision = capture::parse_precision(a.precision);
    s.engine.n_ctx = a.ctx;
    s.engine.n_parallel = a.parallel;
    s.engine.n_threads = m.threads;
    s.engine.layers = a.layers;
    s.engine.save_logits = a.save_logits;
    s.engine.output_stats = capture::parse_output_stats(a.output_stats);
    s.intervene = a.interventions;
    s.intervene_files = a.intervention_files;
    s.control_vectors = a.control_vectors;
    return s;
}

// The hooks {"block:i": fn} as InterventionOp::hook edits of every request.
std::vector<capture::Intervention> hook_interventions(const GenerateArgs& a, int n_layer, int n_embd, nlohmann::json& meta) {
    std::vector<capture::Intervention> out;
    for (const auto& [key, fn] : a.hooks) {
        const std::vector<ResolvedLayer> r = resolve_layers(key, n_layer);
        if (r.size() != 1 || r[0].id.kind != metrics::LayerKind::block)
            throw std::invalid_argument(fmt::format("hook '{}': a hook edits one block's output: use block:N (0 ≤ N < {})", key, n_layer));
        if (!PyCallable_Check(fn.ptr())) throw std::invalid_argument(fmt::format("hook '{}': not callable", key));
        capture::Intervention iv;
        iv.op = capture::InterventionOp::hook;
        iv.block = r[0].id.index;
        iv.label = "python hook " + key;
        py::object f = fn;
        auto holder = std::make_shared<py::object>(std::move(f));
        iv.hook = [holder, n_embd](std::span<float> h, int t, uint64_t) {
            py::gil_scoped_acquire g;
            // A view of the graph tensor's row (no copy): edits in place reach the next block.
            py::capsule no_owner(h.data(), [](void*) {});
            py::array_t<float> arr({py::ssize_t(h.size())}, {py::ssize_t(sizeof(float))}, h.data(), no_owner);
            (*holder)(t, arr);
        };
        meta.push_back(key);
        out.push_back(std::move(iv));
    }
    return out;
}

py::dict run_to_py(std::shared_ptr<RunRecord> rec, const nlohmann::json& base) {
    const RunRecord& r = *rec;
    const size_t T = r.tokens.size(), Lp = r.start.layers.size(), d = size_t(r.start.n_embd);
    py::dict o;
    o["hidden_states"] = view_array<float>({T, Lp, d}, r.states.data(), rec);
    if (!r.logits.empty()) o["logits"] = view_array<float>({T, size_t(r.start.n_vocab)}, r.logits.data(), rec);
    else o["logits"] = py::none();
    capture::TokenColumns c = capture::token_columns(r);
    py::list tokens, layers;
    for (const auto& t : r.tokens) tokens.append(py::bytes(t.text).attr("decode")("utf-8", "replace"));
    for (const auto& l : r.start.layers) layers.append(l.label);
    o["token_ids"] = owned_array(std::move(c.token_ids));
    o["positions"] = owned_array(std::move(c.positions));
    o["prompt_ids"] = owned_array(std::move(c.prompt_ids));
    o["entropy"] = owned_array(std::move(c.entropy));
    o["top1"] = owned_array(std::move(c.top1));
    o["margin"] = owned_array(std::move(c.margin));
    o["surprisal"] = owned_array(std::move(c.surprisal));
    o["tokens"] = tokens;
    o["layers"] = layers;
    o["text"] = py::bytes(r.end.text).attr("decode")("utf-8", "replace");
    o["prompt_text"] = py::bytes(r.start.prompt_text).attr("decode")("utf-8", "replace");
    o["stop_reason"] = r.end.stop_reason;
    o["metadata"] = json_to_py(capture::run_metadata(base, r));
    return o;
}

// generate(): the run plan on the loaded model, one RecordingSink per prompt, GIL released.
py::list generate(PyModel& m, GenerateArgs a) {
    if (a.prompts.empty()) throw std::invalid_argument("no prompt given");
    for (const auto& f : a.intervention_files) require_file(f, "intervention file");
    for (const auto& c : a.control_vectors) require_file(steer::parse_file_scale(c, "--control-vector").path, "control vector");
    plan::RunPlan run = plan::build_run(settings_of(m, a), m.model);
    const capture::ModelInfo& mi = m.model->info();
    nlohmann::json hook_meta = nlohmann::json::array();
    const auto hooks = hook_interventions(a, mi.n_layer, mi.n_embd, hook_meta);
    if (!hooks.empty()) run.metadata["python_hooks"] = hook_meta;
    std::atomic<bool> stop{false};
    auto pending = std::make_shared<std::optional<py::error_already_set>>();
    std::vector<StopController> ctl(run.requests.size());
    for (size_t i = 0; i < run.requests.size(); ++i) {
        capture::Request& rq = run.requests[i];
        rq.interventions.insert(rq.interventions.end(), hooks.begin(), hooks.end());
        ctl[i].stop = &stop;
        ctl[i].check_signals = true;
        ctl[i].pending = pending;
        ctl[i].next = rq.controller;
        rq.controller = &ctl[i];
    }
    std::vector<std::shared_ptr<capture::RecordingSink>> sinks(run.requests.size());
    {
        py::gil_scoped_release nogil;
        run.generate([&](size_t i) -> capture::RunSink& {
            sinks[i] = std::make_shared<capture::RecordingSink>();
            return *sinks[i];
        });
    }
    if (pending->has_value()) throw **pending;  // KeyboardInterrupt between tokens
    py::list out;
    for (auto& s : sinks) {
        auto rec = std::shared_ptr<RunRecord>(s, &s->record);
        out.append(run_to_py(rec, run.metadata));
    }
    return out;
}

// ------------------------------------------------------------------ streaming

struct Step {
    int t = 0;
    int32_t id = 0;
    std::string text;
    int position = 0;
    metrics::TokenProbStats stats;
    std::vector<float> states;
    std::string output_state;
    double ct = std::nan("");
};

// model.stream(): the generation on a worker thread, handing over one token at a time (a slot of
// one). Closing (break, close(), garbage collection, Ctrl-C) sets the stop flag, which the
// request's StopController turns into a stop at the next token; then the thread is joined and
// the engine (with its sequence) freed.
struct Stream {
    plan::RunPlan run;
    std::unique_ptr<steer::Monitor> monitor;
    StopController ctl;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Step> slot;
    bool finished = false;
    std::exception_ptr error;
    std::shared_ptr<capture::RecordingSink> sink = std::make_shared<capture::RecordingSink>();
    std::thread worker;
    size_t Lp = 0, d = 0;

    // The run's sink: records the run, feeds the (log-only) monitor and hands the token over. The
    // engine calls the sink for every token, the controller only between tokens (not after the last).
    struct Sink : capture::RunSink {
        Stream* s = nullptr;
        void begin(const capture::RunStart& st) override { s->sink->begin(st); }
        void token(const capture::TokenRecord& rec, std::span<const float> states, std::span<const float> logits) override {
            s->sink->token(rec, states, logits);
            if (s->monitor) s->monitor->after_token(rec, states);
            s->push(rec, states);
        }
        void end(const capture::RunEnd& e) override { s->sink->end(e); }
    } feed;

    void start() {
        feed.s = this;
        worker = std::thread([this] {
            try {
                run.generate([this](size_t) -> capture::RunSink& { return feed; });
            } catch (...) {
                std::lock_guard<std::mutex> lk(mu);
                error = std::current_exception();
            }
            std::lock_guard<std::mutex> lk(mu);
            finished = true;
            cv.notify_all();
        });
    }

    void push(const capture::TokenRecord& rec, std::span<const float> states) {
        Step s;
        s.t = rec.t;
        s.id = rec.id;
        s.text = rec.text;
        s.position = rec.position;
        s.stats = rec.stats;
        s.states.assign(states.begin(), states.end());
        if (monitor) {
            if (!monitor->states().empty()) s.output_state = std::string(metrics::to_string(monitor->states().back()));
            if (rec.t >= 2 && size_t(rec.t - 2) < monitor->ct().size()) s.ct = monitor->ct()[size_t(rec.t - 2)];
        }
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return !slot.has_value() || stop.load(); });
        if (stop.load()) return;
        slot = std::move(s);
        cv.notify_all();
    }

    void close() {
        stop.store(true);
        cv.notify_all();
        if (worker.joinable()) {
            py::gil_scoped_release nogil;
            worker.join();
        }
    }
    ~Stream() {
        stop.store(true);
        cv.notify_all();
        if (worker.joinable()) worker.join();
    }
};

std::shared_ptr<Stream> make_stream(PyModel& m, GenerateArgs a) {
    if (a.prompts.size() != 1) throw std::invalid_argument("stream() takes one prompt");
    if (!a.hooks.empty()) throw std::invalid_argument("stream() does not take hooks (use generate(hooks=...))");
    auto s = std::make_shared<Stream>();
    s->run = plan::build_run(settings_of(m, a), m.model);
    s->Lp = s->run.engine->layers().size();
    s->d = size_t(m.model->info().n_embd);
    if (s->Lp > 0) {
        steer::MonitorOptions mo;  // log only: ct_t at the last captured layer and the output states
        mo.validate();
        s->monitor = std::make_unique<steer::Monitor>(mo, s->Lp, s->d);
    }
    s->ctl.stop = &s->stop;
    s->ctl.next = s->run.requests[0].controller;  // none today (stream takes no monitor options)
    s->run.requests[0].controller = &s->ctl;
    s->start();
    return s;
}

py::object stream_next(Stream& s) {
    std::optional<Step> step;
    for (;;) {
        {
            py::gil_scoped_release nogil;
            std::unique_lock<std::mutex> lk(s.mu);
            s.cv.wait_for(lk, std::chrono::milliseconds(50), [&] { return s.slot.has_value() || s.finished; });
            if (s.slot) {
                step = std::move(s.slot);
                s.slot.reset();
                s.cv.notify_all();
            }
        }
        if (step) break;
        bool fin;
        std::exception_ptr err;
        {
            std::lock_guard<std::mutex> lk(s.mu);
            fin = s.finished;
            err = s.error;
        }
        if (fin) {
            s.close();
            if (err) std::rethrow_exception(err);
            throw py::stop_iteration();
        }
        if (PyErr_CheckSignals() != 0) {
            py::error_already_set e;
            s.close();
            throw e;
        }
    }
    py::dict o;
    o["t"] = step->t;
    o["token_id"] = step->id;
    o["text"] = py::bytes(step->text).attr("decode")("utf-8", "replace");
    o["position"] = step->position;
    o["entropy"] = step->stats.entropy;
    o["top1"] = step->stats.top1;
    o["margin"] = step->stats.margin;
    o["surprisal"] = step->stats.surprisal;
    auto st = std::make_shared<std::vector<float>>(std::move(step->states));
    o["states"] = view_array<float>({s.Lp, s.d}, st->data(), st);
    o["output_state"] = step->output_state.empty() ? py::object(py::none()) : py::object(py::str(step->output_state));
    o["ct"] = step->ct;
    return o;
}

// ------------------------------------------------------------------ analysis

// The analysis options by the CLI's option names (--norm → norm, …) into
// metrics::AnalysisSettings, then the metric library's one parser (metrics::analysis_options), as
// `phasemap analyze` does; only the keyword → field table is the binding's.
metrics::AnalysisOptions analysis_options(const py::dict& kw, std::span<const std::string> names, bool& include_embedding) {
    metrics::AnalysisSettings st;
    include_embedding = false;
    for (auto [k, v] : kw) {
        const std::string key = py::cast<std::string>(k);
        if (key == "layer" || key == "metric_layer")
            st.layer = py::isinstance<py::int_>(v) ? std::to_string(py::cast<long long>(v)) : py::cast<std::string>(v);
        else if (key == "norm") st.norm = py::cast<std::string>(v);
        else if (key == "curvature") st.curvature = py::cast<std::string>(v);
        else if (key == "mad_k") st.mad_k = py::cast<double>(v);
        else if (key == "ct_clip") st.ct_clip = py::cast<bool>(v);
        else if (key == "ct_clip_k") st.ct_clip_k = py::cast<double>(v);
        else if (key == "late_window") st.late_window = py::cast<double>(v);
        else if (key == "collapse_threshold") st.collapse_threshold = py::cast<double>(v);
        else if (key == "regime_cuts") st.regime_cuts = py::cast<std::string>(v);
        else if (key == "layer_axis") st.layer_axis = py::cast<bool>(v);
        else if (key == "no_layer_axis") st.layer_axis = !py::cast<bool>(v);
        else if (key == "collapse_top1") st.collapse_top1 = py::cast<double>(v);
        else if (key == "rivalry_margin") st.rivalry_margin = py::cast<double>(v);
        else if (key == "diffuse_entropy") st.diffuse_entropy = py::cast<double>(v);
        else if (key == "shuffles") st.shuffles = py::cast<size_t>(v);
        else if (key == "control_seed") st.control_seed = py::cast<uint64_t>(v);
        else if (key == "include_embedding") include_embedding = py::cast<bool>(v);
        else throw std::invalid_argument(fmt::format("analyze: unknown option '{}'", key));
    }
    return metrics::analysis_options(st, names);
}

nlohmann::json analyze_array(py::array states_in, py::object logits_in, py::object ids_in, py::object stats_in, py::object names_in,
                              py::object run_ctx, py::dict kw) {
    if (states_in.ndim() != 3)
        throw std::invalid_argument(fmt::format("hidden_states has rank {}, expected 3 ([tokens, layers, dim])", states_in.ndim()));
    const py::dtype dt = states_in.dtype();
    if (dt.kind() != 'f') throw std::invalid_argument(fmt::format("hidden_states has dtype {}, expected float16, float32 or float64", py::cast<std::string>(dt.attr("name"))));
    const size_t T = size_t(states_in.shape(0)), L = size_t(states_in.shape(1)), d = size_t(states_in.shape(2));
    if (T == 0 || L == 0 || d == 0) throw std::invalid_argument(fmt::format("hidden_states is empty (shape [{}, {}, {}])", T, L, d));
    if (dt.itemsize() == 8) {  // as the run-file reader: float64 beyond float32's range is refused
        auto a64 = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(states_in);
        const double* p = a64.data();
        for (size_t i = 0, n = size_t(a64.size()); i < n; ++i)
            if (std::isfinite(p[i]) && std::fabs(p[i]) > double(std::numeric_limits<float>::max()))
                throw std::invalid_argument(fmt::format("hidden_states (float64) holds {:g}, beyond float32's range, which the analysis computes in; rescale the states", p[i]));
    }
    auto st = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(states_in);
    const float* data = st.data();
    for (size_t i = 0, n = size_t(st.size()); i < n; ++i)
        if (!std::isfinite(data[i]))
            throw std::invalid_argument(fmt::format("hidden_states holds a non-finite value ({}) at [{}, {}, {}]", data[i], i / (L * d), (i / d) % L, i % d));
    std::vector<std::string> names;
    if (!names_in.is_none()) names = py::cast<std::vector<std::string>>(names_in);
    if (!names.empty() && names.size() != L)
        throw std::invalid_argument(fmt::format("layers has {} names, hidden_states {} layers", names.size(), L));
    if (names.empty())
        for (size_t l = 0; l < L; ++l) names.push_back(fmt::format("layer[{}]", l));
    io::SummaryContext ctx;
    ctx.hidden_states_shape = {T, L, d};
    if (!run_ctx.is_none()) {  // a Run: what `phasemap analyze` reads from its NPZ's metadata
        const py::dict rc = run_ctx;
        ctx.prompt = py::cast<std::string>(rc["prompt_text"]);
        ctx.generated_text = py::cast<std::string>(rc["text"]);
        ctx.token_texts = py::cast<std::vector<std::string>>(rc["tokens"]);
        ctx.provenance = py_to_json(rc["metadata"]);
    }
    std::vector<int64_t> ids;
    if (!ids_in.is_none()) {
        auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids_in);
        if (!a || a.ndim() != 1 || size_t(a.shape(0)) != T)
            throw std::invalid_argument(fmt::format("token_ids must have shape [{}]", T));
        ids.assign(a.data(), a.data() + T);
        ctx.token_ids = ids;
    }
    std::vector<metrics::TokenProbStats> stats;
    if (!stats_in.is_none()) {  // (entropy, top1, margin, surprisal) arrays of a Run
        auto tup = py::cast<std::vector<py::array_t<double, py::array::c_style | py::array::forcecast>>>(stats_in);
        if (tup.size() != 4) throw std::invalid_argument("stats: (entropy, top1, margin, surprisal)");
        for (auto& a : tup)
            if (a.ndim() != 1 || size_t(a.shape(0)) != T) throw std::invalid_argument(fmt::format("stats arrays must have shape [{}]", T));
        stats.resize(T);
        for (size_t t = 0; t < T; ++t) {
            stats[t].entropy = tup[0].data()[t];
            stats[t].top1 = tup[1].data()[t];
            stats[t].margin = tup[2].data()[t];
            stats[t].surprisal = tup[3].data()[t];
            stats[t].top1_id = -1;
        }
    }
    if (!logits_in.is_none()) {
        auto lg = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(logits_in);
        if (!lg || lg.ndim() != 2 || size_t(lg.shape(0)) != T)
            throw std::invalid_argument(fmt::format("logits must have shape [{}, vocab]", T));
        const size_t V = size_t(lg.shape(1));
        ctx.logits_shape = {T, V};
        if (stats.empty()) {
            stats.resize(T);
            for (size_t t = 0; t < T; ++t)
                stats[t] = metrics::token_prob_stats(std::span<const float>(lg.data() + t * V, V), ids.empty() ? -1 : int32_t(ids[t]));
        }
    }
    bool include_embedding = false;
    // LIMEN's protocol leaves hf:0 out of the analysed states (as `phasemap analyze` does).
    py::dict kw2 = kw;
    if (kw2.contains("include_embedding")) include_embedding = py::cast<bool>(kw2["include_embedding"]);
    metrics::StatesView view = metrics::StatesView{data, T, L, d, names}.analysed(include_embedding);
    ctx.embedding_output_included = metrics::embedding_analysed(names, include_embedding);
    const std::vector<std::string> an(view.layer_names.begin(), view.layer_names.end());
    view.layer_names = an;
    bool ie = false;
    const metrics::AnalysisOptions opt = analysis_options(kw, an, ie);
    metrics::RunSummary s;
    {
        py::gil_scoped_release nogil;
        s = metrics::analyze_run(view, stats, opt);
    }
    return io::summary_json(s, ctx);
}

// ------------------------------------------------------------------ store

py::dict columns_to_py(const store::Columns& c) {
    py::dict out;
    for (const auto& col : c.columns) {
        py::dict d;
        d["sql_type"] = col.sql_type;
        d["valid"] = owned_array(std::vector<uint8_t>(col.valid)).attr("astype")("bool");
        switch (col.kind) {
            case store::Column::Kind::boolean: d["values"] = owned_array(std::vector<uint8_t>(col.b)).attr("astype")("bool"); break;
            case store::Column::Kind::int64: d["values"] = owned_array(std::vector<int64_t>(col.i64)); break;
            case store::Column::Kind::uint64: d["values"] = owned_array(std::vector<uint64_t>(col.u64)); break;
            case store::Column::Kind::float32: d["values"] = owned_array(std::vector<float>(col.f32)); break;
            case store::Column::Kind::float64: d["values"] = owned_array(std::vector<double>(col.f64)); break;
            case store::Column::Kind::text: {
                py::list l;
                for (size_t i = 0; i < col.text.size(); ++i)
                    l.append(col.valid[i] ? py::object(py::bytes(col.text[i]).attr("decode")("utf-8", "replace")) : py::object(py::none()));
                d["values"] = l;
                break;
            }
        }
        out[py::str(col.name)] = d;
    }
    return out;
}

struct PyStore {
    std::unique_ptr<store::Store> s;
};

// ------------------------------------------------------------------ panel

py::dict panel_run(const std::string& manifest, const std::string& db, int parallel, int threads, const std::string& shard,
                   py::object progress) {
    require_file(manifest, "manifest");
    if (parallel < 1) throw std::invalid_argument("--parallel must be at least 1");
    if (threads < 0) throw std::invalid_argument("--threads must be ≥ 0");
    plan::RunnerOptions o;
    o.shard = panel::parse_shard(shard);
    capture::default_threads();  // a bad PHASEMAP_THREADS before the DB is touched
    const panel::Manifest m = panel::load_manifest(manifest);
    o.db = db;
    o.n_parallel = parallel;
    o.n_threads = threads;
    // After each committed generation: the GIL for a moment, Ctrl-C checked (the exception leaves
    // run_panel between commits: what is stored stays, a later run resumes), progress shown.
    o.on_progress = [&](const plan::Progress& p) {
        py::gil_scoped_acquire g;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (!progress.is_none()) progress(p.runs_done, p.runs_total, p.tokens, p.seconds, p.model, plan::progress_line(p, false));
    };
    plan::RunnerResult r;
    {
        py::gil_scoped_release nogil;
        r = plan::run_panel(m, o);
    }
    py::dict d;
    d["grid_runs"] = r.grid_runs;
    d["shard_runs"] = r.shard_runs;
    d["skipped"] = r.skipped;
    d["done"] = r.done;
    d["repaired"] = r.repaired;
    d["tokens"] = r.tokens;
    d["seconds"] = r.seconds;
    return d;
}

// ------------------------------------------------------------------ audit

// `phasemap audit DB`: the same sections over the DB's PanelTable, the same AuditResult document
// (to_json), written back into the DB unless store is false.
py::object run_audit(const std::string& db, std::vector<std::string> sections, const audit::Options& opt, const std::string& hypotheses,
                     bool store_back) {
    require_file(db, "results DB");
    if (!hypotheses.empty()) require_file(hypotheses, "hypotheses file");
    opt.validate();
    if (!opt.norm.empty() && !metrics::parse_norm_mode(opt.norm))
        throw std::invalid_argument(fmt::format("--norm '{}': unknown normalisation (use raw or clipped_mad)", opt.norm));
    const bool all = sections.empty();
    if (all) sections = audit::section_names();
    std::optional<audit::HypothesisFile> hyp;
    if (!hypotheses.empty()) hyp = audit::load_hypotheses(hypotheses);
    else if (!all && std::find(sections.begin(), sections.end(), "hypotheses") != sections.end())
        throw std::invalid_argument("audit: --section hypotheses needs --hypotheses FILE");
    audit::AuditResult out;
    std::vector<store::AuditEntry> entries;
    {
        py::gil_scoped_release nogil;
        const PanelTable panel = store::load_panel_table(db);
        out.phasemap_version = version_string();
        out.source = db;
        out.options = opt;
        out.panel_models = panel.models.size();
        out.panel_runs = panel.runs.size();
        const nlohmann::json options = audit::options_json(opt);
        for (const auto& sec : sections) {
            if (sec == "hypotheses" && !hyp && all) continue;  // not asked for
            const auto r = audit::run_section(sec, panel, opt, hyp ? &*hyp : nullptr);
            out.sections.push_back(r.section);
            entries.push_back({.kind = "audit", .name = sec, .ok = r.ok, .reason = r.reason, .options = options, .data = r.data,
                               .source = hypotheses.empty() ? std::string() : "hypotheses: " + hypotheses});
        }
        if (store_back) store::Store::open(db)->put_audits(entries);
    }
    return json_to_py(audit::to_json(out));
}

}  // namespace

PYBIND11_MODULE(_phasemap, mod) {
    mod.doc() = "phasemap's C++ library (use the `phasemap` package, not this module)";

    // Exceptions: ValueError for bad options, FileNotFoundError for missing inputs, RuntimeError
    // for everything else (the library's message unchanged).
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FileMissing& e) {
            PyErr_SetString(PyExc_FileNotFoundError, e.what());
        } catch (const std::invalid_argument& e) {  // metrics::MetricError too
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const panel::ManifestError& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    mod.def("version", &phasemap::version);
    mod.def("llama_commit", &phasemap::llama_commit);
    mod.def("version_string", &phasemap::version_string);

    py::class_<PyModel>(mod, "Model")
        .def(py::init([](const std::string& path, int threads, int gpu_layers, std::vector<std::pair<std::string, float>> lora) {
                 require_file(path, "model file");
                 for (const auto& [p, s] : lora) require_file(p, "LoRA adapter");
                 capture::ModelOptions mo;
                 mo.n_gpu_layers = gpu_layers;
                 for (const auto& [p, s] : lora) mo.adapters.push_back({p, s});
                 auto pm = std::make_unique<PyModel>();
                 {
                     py::gil_scoped_release nogil;
                     pm->model = capture::Model::load(path, mo);
                 }
                 pm->threads = threads;
                 pm->gpu_layers = gpu_layers;
                 return pm;
             }),
             py::arg("path"), py::arg("threads") = 0, py::arg("gpu_layers") = 0, py::arg("lora") = std::vector<std::pair<std::string, float>>{})
        .def_property_readonly("info", [](const PyModel& m) {
            const capture::ModelInfo& i = m.model->info();
            py::dict d;
            d["path"] = i.path.string();
            d["sha256"] = i.sha256;
            d["architecture"] = i.architecture;
            d["name"] = i.name;
            d["description"] = i.description;
            d["n_layer"] = i.n_layer;
            d["n_embd"] = i.n_embd;
            d["n_vocab"] = i.n_vocab;
            d["n_ctx_train"] = i.n_ctx_train;
            d["recurrent"] = i.recurrent;
            d["has_chat_template"] = i.has_chat_template;
            d["n_params"] = i.n_params;
            d["n_expert"] = i.n_expert;
            py::list ad;
            for (const auto& a : i.adapters) {
                py::dict x;
                x["path"] = a.path.string();
                x["sha256"] = a.sha256;
                x["scale"] = a.scale;
                x["alpha"] = a.alpha;
                x["n_weights"] = a.n_weights;
                ad.append(x);
            }
            d["adapters"] = ad;
            return d;
        })
        .def("tokenize", [](const PyModel& m, const std::string& text, bool add_special, bool parse_special) {
            return m.model->tokenize(text, add_special, parse_special);
        }, py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = false)
        .def("detokenize", [](const PyModel& m, std::vector<int32_t> ids) {
            return py::bytes(m.model->detokenize(ids)).attr("decode")("utf-8", "replace");
        }, py::arg("ids"))
        .def("token_text", [](const PyModel& m, int32_t id) { return py::bytes(m.model->token_text(id)).attr("decode")("utf-8", "replace"); })
        .def("apply_chat_template", [](const PyModel& m, const std::string& msg) { return m.model->apply_chat_template(msg); }, py::arg("message"))
        .def("_generate", [](PyModel& m, std::vector<std::string> prompts, int n, std::string layers, float temperature, int top_k, float top_p,
                             uint64_t seed, bool chat, int parallel, std::string precision, bool save_logits, int ctx,
                             std::vector<std::string> interventions, std::vector<std::string> intervention_files,
                             std::vector<std::string> control_vectors, std::map<std::string, py::object> hooks, std::string output_stats) {
            GenerateArgs a{std::move(prompts), n, std::move(layers), temperature, top_k, top_p, seed, chat, parallel, std::move(precision),
                           save_logits, ctx, std::move(interventions), std::move(intervention_files), std::move(control_vectors), std::move(hooks),
                           std::move(output_stats)};
            return generate(m, std::move(a));
        })
        .def("_stream", [](PyModel& m, std::string prompt, int n, std::string layers, float temperature, int top_k, float top_p, uint64_t seed,
                           bool chat, std::string precision, int ctx, std::vector<std::string> interventions,
                           std::vector<std::string> control_vectors, std::string output_stats) {
            GenerateArgs a;
            a.prompts = {std::move(prompt)};
            a.n = n;
            a.layers = std::move(layers);
            a.temperature = temperature;
            a.top_k = top_k;
            a.top_p = top_p;
            a.seed = seed;
            a.chat = chat;
            a.precision = std::move(precision);
            a.ctx = ctx;
            a.interventions = std::move(interventions);
            a.control_vectors = std::move(control_vectors);
            a.output_stats = std::move(output_stats);
            return make_stream(m, std::move(a));
        });

    py::class_<Stream, std::shared_ptr<Stream>>(mod, "_Stream")
        .def("__iter__", [](std::shared_ptr<Stream> s) { return s; })
        .def("__next__", [](Stream& s) { return stream_next(s); })
        .def("close", [](Stream& s) { s.close(); })
        .def("_run", [](Stream& s) -> py::object {
            if (!s.sink->record.finished) return py::none();
            auto rec = std::shared_ptr<RunRecord>(s.sink, &s.sink->record);
            return run_to_py(rec, s.run.metadata);
        });

    mod.def("_analyze", [](py::array states, py::object logits, py::object token_ids, py::object stats, py::object layers, py::object run_ctx,
                           py::dict kw) {
        return json_to_py(analyze_array(states, logits, token_ids, stats, layers, run_ctx, kw));
    });

    mod.def("_metric_registry", [] {
        py::list l;
        for (const auto& m : metrics::metric_registry()) {
            py::dict d;
            d["name"] = std::string(m.name);
            d["unit"] = std::string(m.unit);
            d["axis"] = std::string(metrics::to_string(m.axis));
            d["shape"] = std::string(metrics::to_string(m.shape));
            d["spec"] = std::string(m.spec);
            d["description"] = std::string(m.description);
            py::list opts;
            for (auto o : m.options) opts.append(std::string(o));
            d["options"] = opts;
            d["limen_name"] = std::string(m.limen_name);
            l.append(d);
        }
        return l;
    });
    // One registry metric of an array (the same analysis as analyze(), read through the registry's accessor).
    mod.def("_metric", [](const std::string& name, py::array states, py::object logits, py::object token_ids, py::object layers, py::dict kw) -> py::object {
        const metrics::MetricInfo* mi = metrics::find_metric(name);
        if (!mi) throw std::invalid_argument(fmt::format("no metric '{}' in the registry", name));
        // The summary of the array (analyze_array's path), then the registry accessor on it.
        if (states.ndim() != 3) throw std::invalid_argument(fmt::format("hidden_states has rank {}, expected 3 ([tokens, layers, dim])", states.ndim()));
        auto st = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(states);
        const size_t T = size_t(st.shape(0)), L = size_t(st.shape(1)), d = size_t(st.shape(2));
        for (size_t i = 0, n = size_t(st.size()); i < n; ++i)
            if (!std::isfinite(st.data()[i])) throw std::invalid_argument("hidden_states holds a non-finite value");
        std::vector<std::string> names = layers.is_none() ? std::vector<std::string>() : py::cast<std::vector<std::string>>(layers);
        if (names.empty())
            for (size_t l = 0; l < L; ++l) names.push_back(fmt::format("layer[{}]", l));
        std::vector<metrics::TokenProbStats> stats;
        if (!logits.is_none()) {
            auto lg = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(logits);
            std::vector<int64_t> ids;
            if (!token_ids.is_none()) ids = py::cast<std::vector<int64_t>>(token_ids);
            const size_t V = size_t(lg.shape(1));
            for (size_t t = 0; t < T; ++t)
                stats.push_back(metrics::token_prob_stats(std::span<const float>(lg.data() + t * V, V), ids.empty() ? -1 : int32_t(ids[t])));
        }
        bool ie = false;
        const metrics::AnalysisOptions opt = analysis_options(kw, names, ie);
        const metrics::StatesView view{st.data(), T, L, d, names};
        metrics::RunSummary s;
        {
            py::gil_scoped_release nogil;
            s = metrics::analyze_run(view, stats, opt);
        }
        switch (mi->shape) {
            case metrics::Shape::per_token: return owned_array(mi->per_token(s));
            case metrics::Shape::per_token_label: return py::cast(mi->per_token_label(s));
            case metrics::Shape::scalar: {
                const metrics::Value v = mi->scalar(s);
                return v.ok() ? py::object(py::float_(v.v)) : py::object(py::none());
            }
            case metrics::Shape::label: {
                std::string why;
                const std::string l = mi->label(s, why);
                return why.empty() ? py::object(py::str(l)) : py::object(py::none());
            }
            case metrics::Shape::table: break;
        }
        throw std::invalid_argument(fmt::format("metric '{}' is a table: read it from analyze()", name));
    });

    py::class_<PyStore>(mod, "_Store")
        .def(py::init([](const std::string& db) {
            require_file(db, "results DB");
            store::OpenOptions o;
            o.read_only = true;
            auto s = std::make_unique<PyStore>();
            s->s = store::Store::open(db, o);
            return s;
        }))
        .def("table", [](PyStore& s, const std::string& t, const std::string& order) { return columns_to_py(store::read_table(*s.s, t, order)); })
        .def("query", [](PyStore& s, const std::string& sql) { return columns_to_py(store::read_columns(*s.s, sql)); })
        .def("meta", [](PyStore& s) { return s.s->meta(); })
        .def("count", [](PyStore& s, const std::string& t) { return s.s->count(t); });

    mod.def("_audit", [](const std::string& db, std::vector<std::string> sections, const std::string& metric, const std::string& factor,
                         const std::string& norm, size_t bootstrap, size_t reml_bootstrap, size_t permutations, uint64_t seed,
                         double robust_share, const std::string& hypotheses, bool store_back) {
        audit::Options o;
        o.metric = metric;
        o.factor = factor;
        o.norm = norm;
        o.bootstrap = bootstrap;
        o.reml_bootstrap = reml_bootstrap;
        o.permutations = permutations;
        o.seed = seed;
        o.robust_share = robust_share;
        return run_audit(db, std::move(sections), o, hypotheses, store_back);
    });

    // phasemap.report: plan::write_report, the whole of `phasemap report` (same request fields).
    mod.def("_report", [](const std::string& db, const std::string& out, const std::string& hypotheses, const std::string& panel_json,
                          const std::string& audit_json, std::vector<std::string> runs_json, std::vector<std::string> control_json,
                          std::vector<std::string> monitor_json, const std::string& svg, const std::string& png,
                          const std::string& regime_cuts, py::object title, size_t max_series, size_t max_points, size_t bootstrap) {
        plan::ReportRequest q{.db = db, .hypotheses = hypotheses, .out = out, .panel_json = panel_json, .audit_json = audit_json,
                                .runs_json = std::move(runs_json), .control_json = std::move(control_json),
                                .monitor_json = std::move(monitor_json), .svg_dir = svg, .png_dir = png, .regime_cuts = regime_cuts};
        auto need = [](const std::string& p, const char* what) {
            if (!p.empty()) require_file(p, what);
        };
        need(q.db, "results DB");
        need(q.hypotheses, "hypotheses file");
        need(q.panel_json, "panel JSON");
        need(q.audit_json, "audit JSON");
        for (const auto& p : q.runs_json) need(p, "per-run summary JSON");
        for (const auto& p : q.control_json) need(p, "control-audit JSON");
        for (const auto& p : q.monitor_json) need(p, "monitor-eval JSON");
        if (!title.is_none()) q.opt.title = title.cast<std::string>();
        q.opt.max_series = max_series;
        q.opt.max_points = max_points;
        q.opt.bootstrap = bootstrap;
        q.opt.generator = version_string();
        plan::ReportResult r;
        {
            py::gil_scoped_release nogil;
            r = plan::write_report(q);
        }
        py::dict d;
        d["path"] = q.out;
        d["bytes"] = r.bytes;
        d["figures"] = r.figures;
        return d;
    });

    mod.def("_panel_run", &panel_run, py::arg("manifest"), py::arg("db"), py::arg("parallel") = 1, py::arg("threads") = 0,
            py::arg("shard") = "1/1", py::arg("progress") = py::none());
}
