// The HTTP front of the engine loop: handlers (httplib worker threads) validate a request, queue
// it, and read its tokens from a per-request channel that the engine loop (one thread, in
// Engine::serve) fills as the request's sink.
#include "phasemap/serve/server.hpp"

#include <fmt/core.h>
#include <openssl/evp.h>
#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>

#include "phasemap/capture/layers.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "phasemap/capture/version.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/io/summary_json.hpp"
#include "phasemap/panel/run_analysis.hpp"
#include "phasemap/plan/request_plan.hpp"
#include "phasemap/store/store.hpp"
#include "phasemap/metrics/analyze.hpp"
#include "phasemap/metrics/views.hpp"
#include "phasemap/steer/spec.hpp"
#include "analysis_json.hpp"

namespace phasemap::serve {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A client error: the handler answers `status` with this message.
struct HttpError : std::runtime_error {
    int status;
    HttpError(int s, const std::string& m) : std::runtime_error(m), status(s) {}
};

// Compares a presented key with the configured one in time that depends only on the configured
// key's length.
bool same_key(std::string_view given, std::string_view key) {
    unsigned char d = given.size() != key.size();
    for (size_t i = 0; i < key.size(); ++i) d |= static_cast<unsigned char>((i < given.size() ? given[i] : 0) ^ key[i]);
    return d == 0;
}

json error_body(const std::string& msg, const char* type) { return json{{"error", {{"message", msg}, {"type", type}}}}; }

// A generated token's §2 geometry at the request's metric layer (delta_t for t ≥ 1, curvature_t
// and ct_t for t ≥ 2; NaN where undefined), computed as the token arrives.
struct Geometry {
    double delta = metrics::kNaN, curvature = metrics::kNaN, ct = metrics::kNaN;
};
// One token as the engine streamed it.
struct TokenEvent {
    capture::TokenRecord rec;
    Geometry g;
};

// The captured layers the run summary analyses (LIMEN's protocol: hf:0 left out when other
// layers are captured) and the captured-layer index of its token axis for a metric-layer choice.
struct AnalysedLayers {
    std::vector<std::string> names;  // analysed layers
    size_t first = 0;                // captured index of names[0] (1 when hf:0 is dropped)
    bool embedding_included = false;
};
AnalysedLayers analysed_layers(const std::vector<std::string>& captured) {
    AnalysedLayers a;
    a.names = captured;
    if (metrics::drops_embedding(captured, false)) {
        a.names.erase(a.names.begin());
        a.first = 1;
    }
    a.embedding_included = metrics::embedding_analysed(captured, false);
    return a;
}
// Base64 (RFC 4648, OpenSSL's EVP_EncodeBlock) of float32 values in little-endian byte order.
std::string base64_f32le(std::span<const float> v) {
    static_assert(std::endian::native == std::endian::little, "the float32 payload is written in host order, which must be little-endian");
    const size_t n = v.size() * sizeof(float);
    std::string out(4 * ((n + 2) / 3), '\0');
    const int w = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(v.data()), int(n));
    out.resize(size_t(w));
    return out;
}

std::int64_t metric_layer_option(const std::string& choice, const AnalysedLayers& a) {
    return choice.empty() ? std::int64_t(-1) : metrics::parse_layer_choice(choice, a.names);
}

// One request's sink: the engine loop writes, the HTTP handler reads. Keeps the run (its start,
// tokens, states, end) for the run summary and the DB row, which are computed once from it.
struct Channel final : capture::RunSink {
    std::mutex mu;
    std::condition_variable cv;
    capture::RunRecord rec;              // written by the loop under mu until closed, read-only after
    std::vector<Geometry> geometry;      // per token, beside rec.tokens
    std::deque<TokenEvent> pending;      // tokens the handler has not sent yet
    std::optional<capture::RunEnd> end_;
    std::string failure;                 // failed before or while running
    bool closed = false;                 // end_ or failure set
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    std::function<void(size_t)> on_token;  // metrics
    std::function<void()> on_end;          // after end(): the DB writer takes the run
    // What the DB row records (phasemap.store); set before admission.
    bool store = false;
    capture::Request request;
    std::string metric_layer;
    // The request's analysis options (phasemap.analysis, the layer of phasemap.metric_layer):
    // the run summary, the DB row and the streamed geometry (its curvature; none per token for
    // norm clipped_mad, whose values need the whole run).
    metrics::AnalysisOptions options;
    std::unique_ptr<steer::Monitor> monitor;  // the request's controller (phasemap.monitor)
    size_t geometry_layer = SIZE_MAX;         // captured index of the metric layer (SIZE_MAX: none)
    std::vector<size_t> hidden_layers;        // phasemap.return_hidden_states (captured indices)

    // Token t's states of hidden_layers, base64 float32 little-endian, [layers, d]; mu held.
    std::string hidden_states_b64(size_t t) const {
        const size_t L = rec.start.layers.size(), d = size_t(rec.start.n_embd);
        std::vector<float> v;
        v.reserve(hidden_layers.size() * d);
        for (size_t l : hidden_layers) {
            const float* src = rec.states.data() + (t * L + l) * d;
            v.insert(v.end(), src, src + d);
        }
        return base64_f32le(v);
    }

    bool extension = true;                    // phasemap.extension: per-token objects (no geometry without them)
    bool streams_geometry() const { return options.token.norm == metrics::NormMode::raw; }

    // The run summary (panel::analyse_recorded_run over the captured layers, LIMEN's protocol:
    // hf:0 left out): the final chunk's summary and the DB row. Computed once, by whichever of
    // the handler and the DB writer asks first; only after the run ended (the record is then
    // read-only).
    const metrics::RunSummary& analysis() {
        std::call_once(analysed, [this] { summary_ = panel::analyse_recorded_run(rec, captured_layers(), false, options); });
        return summary_;
    }
    std::vector<std::string> captured_layers() const {
        std::vector<std::string> names;
        for (const auto& l : rec.start.layers) names.push_back(l.label);
        return names;
    }
    std::once_flag analysed;
    metrics::RunSummary summary_;

    void begin(const capture::RunStart& s) override {
        std::lock_guard lk(mu);
        rec.start = s;
        std::vector<std::string> names;
        for (const auto& l : s.layers) names.push_back(l.label);
        const AnalysedLayers a = analysed_layers(names);
        try {  // the choice was checked against the engine's layers when the request was parsed
            if (!a.names.empty()) geometry_layer = a.first + metrics::resolve_layer_index(options.layer, a.names.size());
        } catch (const std::exception&) {
            geometry_layer = SIZE_MAX;
        }
    }
    void token(const capture::TokenRecord& tr, std::span<const float> st, std::span<const float>) override {
        {
            std::lock_guard lk(mu);
            TokenEvent ev{tr, {}};
            auto& states = rec.states;
            states.insert(states.end(), st.begin(), st.end());
            // §2 at the metric layer over the states of tokens t−2 … t (a strided view of the
            // recorded states), with the metrics kernel and the request's curvature: what the
            // summary's token axis computes for raw norm. clipped_mad needs the whole run (none here).
            const size_t L = rec.start.layers.size(), d = size_t(rec.start.n_embd), n = rec.tokens.size() + 1;
            if (extension && streams_geometry() && geometry_layer < L && st.size() == L * d && n >= 2) {
                const size_t k = std::min<size_t>(n, 3);
                const metrics::RowsView<float> rows(states.data() + ((n - k) * L + geometry_layer) * d, k, d, L * d);
                try {
                    const metrics::TokenSeries ts = metrics::token_series(rows, options.token.curvature);
                    ev.g.delta = ts.delta.back();
                    if (k == 3) {
                        ev.g.curvature = ts.curvature.at(0);
                        ev.g.ct = ts.ct.at(0);
                    }
                } catch (const std::exception&) {  // a non-finite state: undefined here, as in the summary
                }
            }
            rec.tokens.push_back(tr);
            geometry.push_back(ev.g);
            pending.push_back(std::move(ev));
        }
        cv.notify_one();  // the one handler that reads this channel
        if (on_token) on_token(1);
    }
    void end(const capture::RunEnd& e) override {
        {
            std::lock_guard lk(mu);
            if (e.stop_reason == "error") failure = e.error;
            end_ = e;
            rec.end = e;
            rec.finished = true;
            closed = true;
        }
        cv.notify_all();
        if (on_end && e.stop_reason != "error") on_end();
    }
    void fail(const std::string& why) {
        {
            std::lock_guard lk(mu);
            failure = why;
            closed = true;
        }
        cv.notify_all();
    }
};

struct Job {
    capture::Request request;
    std::shared_ptr<Channel> ch;
};

}  // namespace

struct Server::Impl final : capture::RequestSource {
    std::shared_ptr<capture::Model> model;
    capture::EngineOptions eopt;
    ServerOptions opt;
    std::unique_ptr<capture::Engine> engine;
    httplib::Server http;
    int bound_port = 0;

    // The queue between handlers and the loop.
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Job> queue;
    std::unordered_map<Channel*, std::shared_ptr<Channel>> live;  // admitted, until closed
    bool stopping = false;
    size_t next_index = 0;

    // The results DB and its writer thread (ServerOptions::db).
    std::unique_ptr<store::Store> db;
    std::thread writer;
    // The runs to store: their own lock, so that the loop and the handlers never wait on the writer.
    std::mutex wmu;
    std::condition_variable wcv;
    std::deque<std::shared_ptr<Channel>> to_store;
    bool writer_stop = false;
    std::atomic<uint64_t> n_stored{0}, n_store_errors{0};
    std::string started_id;

    // Stores what ended, in groups: the runs that ended while the previous group was written go
    // into one transaction (Store::commit_group), which costs far less than one each.
    static constexpr size_t kMaxGroup = 64;
    static constexpr std::chrono::milliseconds kGather{250};
    void write_loop() {
        for (;;) {
            std::vector<std::shared_ptr<Channel>> group;
            {
                std::unique_lock lk(wmu);
                wcv.wait(lk, [&] { return !to_store.empty() || writer_stop; });
                if (to_store.empty()) return;
                // Runs end one by one: gather them for a moment, so that a group is not one run.
                wcv.wait_for(lk, kGather, [&] { return to_store.size() >= kMaxGroup || writer_stop; });
                while (!to_store.empty() && group.size() < kMaxGroup) {
                    group.push_back(std::move(to_store.front()));
                    to_store.pop_front();
                }
            }
            std::vector<StoredRun> runs;
            runs.reserve(group.size());
            for (const auto& c : group) {
                try {
                    runs.push_back(stored_run(*c));
                } catch (const std::exception& e) {
                    ++n_store_errors;
                    fmt::print(stderr, "phasemap serve: storing run {} failed: {}\n", c->rec.start.run_index, e.what());
                }
            }
            auto writes = [](std::span<const StoredRun> rs) {
                std::vector<store::Store::RunWrite> w;
                for (const StoredRun& r : rs) w.push_back({&r.row, &r.summary, &r.tokens, &r.layers});
                return w;
            };
            try {
                db->commit_group(writes(runs));
                n_stored += runs.size();
            } catch (const std::exception&) {
                // One by one, so that only the run that cannot be stored is lost (a group that
                // failed was rolled back as a whole).
                for (const StoredRun& r : runs) {
                    try {
                        db->commit_group(writes({&r, 1}));
                        ++n_stored;
                    } catch (const std::exception& e) {
                        ++n_store_errors;
                        fmt::print(stderr, "phasemap serve: storing run {} failed: {}\n", r.row.prompt_index, e.what());
                    }
                }
            }
        }
    }

    // One served run as the DB stores it, analysed as a panel run (panel/run_analysis.hpp).
    struct StoredRun {
        store::RunRow row;
        metrics::RunSummary summary;
        std::vector<store::TokenData> tokens;
        std::vector<store::LayerTokenData> layers;
    };
    StoredRun stored_run(Channel& c) {
        const capture::RunRecord& r = c.rec;  // ended: read-only
        const std::vector<std::string> captured = c.captured_layers();
        const metrics::AnalysisOptions& ao = c.options;  // the request's (phasemap.analysis)
        StoredRun out;
        out.summary = c.analysis();
        out.tokens = panel::token_rows(r);
        out.layers = panel::layer_token_series(r, captured, ao.token);
        out.row = panel::run_row(r, engine->facts(), eopt.layers);
        store::RunRow& row = out.row;
        row.run_id = io::sha256_hex(fmt::format("{}:{}", started_id, r.start.run_index)).substr(0, 32);
        row.model = opt.model_id;
        row.category = "serve";
        row.prompt_index = int64_t(r.start.run_index);
        row.prompt = c.request.prompt;
        row.chat = c.request.chat;
        row.temperature = c.request.sampling.temperature;
        row.top_k = c.request.sampling.top_k;
        row.top_p = c.request.sampling.top_p;
        row.seed = c.request.sampling.seed;
        row.n_predict = c.request.n_predict;
        json mo = json::object();
        for (const auto& [k, v] : metrics::options_record(ao)) {
            mo[k] = v;
            if (k == "norm") row.norm = v;
        }
        mo["layer"] = c.metric_layer.empty() ? std::string("-1") : c.metric_layer;
        mo["include_embedding"] = "false";
        row.metric_options = mo.dump();
        return out;
    }

    void open_db() {
        const capture::ModelInfo& info = model->info();
        store::OpenOptions oo;
        oo.manifest_hash = "phasemap-serve:" + info.sha256;
        oo.meta = {{"manifest_name", "serve:" + opt.model_id}, {"phasemap_version", phasemap::version()}, {"llama_commit", phasemap::llama_commit()}};
        db = store::Store::open(opt.db, oo);
        db->put_model(panel::model_row(opt.model_id, info));
        started_id = fmt::format("{}:{}", info.sha256, std::chrono::system_clock::now().time_since_epoch().count());
        writer = std::thread([this] { write_loop(); });
    }

    // Prometheus counters.
    std::atomic<uint64_t> n_requests{0}, n_rejected{0}, n_tokens{0}, n_cancelled{0};
    std::atomic<int> n_active{0};
    Clock::time_point started = Clock::now();

    // RequestSource: called on the loop thread between steps.
    std::optional<capture::Admission> next(bool idle) override {
        std::unique_lock lk(mu);
        for (auto it = live.begin(); it != live.end();) {
            std::lock_guard cl(it->first->mu);
            if (it->first->closed) {
                if (it->first->end_ && it->first->end_->stop_reason == "cancelled") ++n_cancelled;
                it = live.erase(it);
                --n_active;
            } else {
                ++it;
            }
        }
        if (idle) cv.wait(lk, [&] { return !queue.empty() || stopping; });
        if (queue.empty()) return std::nullopt;
        Job j = std::move(queue.front());
        queue.pop_front();
        Channel* c = j.ch.get();
        live[c] = j.ch;
        ++n_active;
        capture::Admission a{std::move(j.request), c, next_index++};
        return a;
    }
    void failed(const capture::Admission& a, std::exception_ptr err) override {
        std::string why = "unknown error";
        try { std::rethrow_exception(err); }
        catch (const std::exception& e) { why = e.what(); }
        catch (...) {}
        static_cast<Channel*>(a.sink)->fail(why);
    }

    void enqueue(Job j) {
        {
            std::lock_guard lk(mu);
            if (stopping) throw HttpError(503, "the server is shutting down");
            if (queue.size() >= opt.queue) {
                ++n_rejected;
                throw HttpError(429, fmt::format("the queue is full ({} requests wait for a slot)", queue.size()));
            }
            queue.push_back(std::move(j));
        }
        cv.notify_all();
    }

    // --- request parsing -------------------------------------------------------------------
    struct Parsed {
        capture::Request req;
        bool stream = false;
        bool chat = false;
        bool analysis = true;
        std::string metric_layer;   // "" = the analysis default
        // phasemap.analysis as an object: its settings (the layer is metric_layer's), checked into
        // `options` (defaults when absent).
        metrics::AnalysisSettings settings;
        metrics::AnalysisOptions options;
        bool store = true;          // with --db
        bool extension = true;      // phasemap.extension: the per-token objects and the summary
        std::optional<plan::MonitorSettings> monitor;
        // phasemap.return_hidden_states: captured-layer indices and labels of the states returned per token
        std::vector<size_t> hidden_layers;
        std::vector<std::string> hidden_labels;
    };

    static const json& need(const json& b, const char* k) { return b.at(k); }

    static double number(const json& v, const char* name) {
        if (!v.is_number()) throw HttpError(400, fmt::format("'{}' must be a number", name));
        return v.get<double>();
    }
    static int integer(const json& v, const char* name) {
        if (!v.is_number_integer()) throw HttpError(400, fmt::format("'{}' must be an integer", name));
        const auto x = v.get<int64_t>();
        if (x < 0 || x > (1 << 24)) throw HttpError(400, fmt::format("'{}' = {} is out of range", name, x));
        return int(x);
    }

    Parsed parse(const std::string& body, bool chat) const {
        json b;
        try { b = json::parse(body); }
        catch (const std::exception& e) { throw HttpError(400, fmt::format("the body is not JSON: {}", e.what())); }
        if (!b.is_object()) throw HttpError(400, "the body must be a JSON object");
        Parsed p;
        p.chat = chat;
        capture::Request& r = p.req;
        r.chat = chat;
        r.n_predict = opt.max_tokens;
        static const std::vector<std::string> known_c{"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stream",
                                                      "n", "user", "stream_options", "phasemap"};
        static const std::vector<std::string> known_chat{"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                                                         "top_k", "seed", "stream", "n", "user", "stream_options", "phasemap"};
        const auto& known = chat ? known_chat : known_c;
        for (const auto& [k, v] : b.items())
            if (std::find(known.begin(), known.end(), k) == known.end())
                throw HttpError(400, fmt::format("unknown or unsupported field '{}'", k));
        if (chat) {
            if (!b.contains("messages") || !b["messages"].is_array() || b["messages"].empty())
                throw HttpError(400, "'messages' must be a non-empty array of {\"role\", \"content\"} messages");
            for (size_t i = 0; i < b["messages"].size(); ++i) {
                const json& m = b["messages"][i];
                if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") || !m["content"].is_string())
                    throw HttpError(400, fmt::format("messages[{}] must be {{\"role\": ROLE, \"content\": TEXT}}", i));
                for (const auto& [mk, mv] : m.items())
                    if (mk != "role" && mk != "content" && mk != "name") throw HttpError(400, fmt::format("messages[{}]: unsupported field '{}'", i, mk));
                const std::string role = m["role"].get<std::string>();
                if (role != "system" && role != "user" && role != "assistant")
                    throw HttpError(400, fmt::format("messages[{}]: role '{}' is not one of system, user, assistant", i, role));
                r.messages.push_back({role, m["content"].get<std::string>()});
            }
            if (!model->info().has_chat_template) throw HttpError(400, "the model has no chat template: use /v1/completions");
            // One user message: the prompt of generate --chat (the same request, the same tokens).
            if (r.messages.size() == 1 && r.messages[0].role == "user") {
                r.prompt = r.messages[0].content;
                r.messages.clear();
            } else {
                r.prompt = r.messages.back().content;  // what the run records as its prompt (the template's text is prompt_text)
            }
        } else {
            if (!b.contains("prompt") || !b["prompt"].is_string()) throw HttpError(400, "'prompt' must be a string");
            r.prompt = b["prompt"].get<std::string>();
        }
        for (const char* k : {"max_tokens", "max_completion_tokens"})
            if (b.contains(k) && !b[k].is_null()) r.n_predict = integer(b[k], k);
        if (b.contains("temperature") && !b["temperature"].is_null()) r.sampling.temperature = float(number(b["temperature"], "temperature"));
        if (b.contains("top_p") && !b["top_p"].is_null()) r.sampling.top_p = float(number(b["top_p"], "top_p"));
        if (b.contains("top_k") && !b["top_k"].is_null()) r.sampling.top_k = integer(b["top_k"], "top_k");
        if (b.contains("seed") && !b["seed"].is_null()) r.sampling.seed = uint64_t(integer(b["seed"], "seed"));
        if (b.contains("n") && !(b["n"].is_number_integer() && b["n"].get<int>() == 1)) throw HttpError(400, "'n' must be 1");
        if (b.contains("stream")) {
            if (!b["stream"].is_boolean()) throw HttpError(400, "'stream' must be true or false");
            p.stream = b["stream"].get<bool>();
        }
        if (b.contains("phasemap")) {
            const json& x = b["phasemap"];
            if (!x.is_object()) throw HttpError(400, "'phasemap' must be an object");
            for (const auto& [k, v] : x.items()) {
                if (k == "interventions") {
                    if (!v.is_array()) throw HttpError(400, "'phasemap.interventions' must be an array of intervention specs");
                    for (const json& s : v) {
                        if (!s.is_string()) throw HttpError(400, "'phasemap.interventions' entries are specs such as \"add:block:3:vec.npy:2\"");
                        steer::ParsedIntervention pi;
                        try { pi = steer::parse_intervention_spec(s.get<std::string>(), model->info().n_layer); }
                        catch (const std::exception& e) { throw HttpError(400, e.what()); }
                        if (!pi.prompts.empty()) throw HttpError(400, "prompts= does not apply to a served request");
                        r.interventions.push_back(pi.iv);
                    }
                } else if (k == "control_vectors") {
                    if (!v.is_array()) throw HttpError(400, "'phasemap.control_vectors' must be an array of \"FILE[:SCALE]\"");
                    std::vector<std::string> specs;
                    for (const json& c : v) {
                        if (!c.is_string()) throw HttpError(400, "'phasemap.control_vectors' entries are \"FILE[:SCALE]\" strings");
                        specs.push_back(c.get<std::string>());
                    }
                    try {
                        for (auto& iv : plan::request_control_vectors(specs, model->info())) r.interventions.push_back(std::move(iv));
                    } catch (const std::exception& e) { throw HttpError(400, e.what()); }
                } else if (k == "monitor") {
                    if (!v.is_object()) throw HttpError(400, "'phasemap.monitor' must be an object");
                    plan::MonitorSettings ms;
                    ms.enabled = true;
                    for (const auto& [mk, mv] : v.items()) {
                        auto str = [&](std::string& to) {
                            if (!mv.is_string()) throw HttpError(400, fmt::format("'phasemap.monitor.{}' must be a string", mk));
                            to = mv.get<std::string>();
                        };
                        if (mk == "triggers") {
                            if (!mv.is_array()) throw HttpError(400, "'phasemap.monitor.triggers' must be an array of trigger specs");
                            for (const json& t : mv) {
                                if (!t.is_string()) throw HttpError(400, "'phasemap.monitor.triggers' entries are strings such as \"collapse:window=8\"");
                                ms.triggers.push_back(t.get<std::string>());
                            }
                        } else if (mk == "on") str(ms.on);
                        else if (mk == "guard_text") str(ms.guard_text);
                        else if (mk == "on_intervene") str(ms.on_intervene);
                        else if (mk == "for") ms.for_tokens = integer(mv, "phasemap.monitor.for");
                        else if (mk == "cooldown") ms.cooldown = size_t(integer(mv, "phasemap.monitor.cooldown"));
                        else if (mk == "max_actions") ms.max_actions = size_t(integer(mv, "phasemap.monitor.max_actions"));
                        else throw HttpError(400, fmt::format("unknown field 'phasemap.monitor.{}'", mk));
                    }
                    p.monitor = ms;
                } else if (k == "metric_layer") {
                    if (v.is_string()) p.metric_layer = v.get<std::string>();
                    else if (v.is_number_integer()) p.metric_layer = std::to_string(v.get<int64_t>());
                    else throw HttpError(400, "'phasemap.metric_layer' must be a layer name or an integer");
                } else if (k == "store") {
                    if (!v.is_boolean()) throw HttpError(400, "'phasemap.store' must be true or false");
                    if (v.get<bool>() && opt.db.empty()) throw HttpError(400, "'phasemap.store' needs a server started with --db");
                    p.store = v.get<bool>();
                } else if (k == "extension") {
                    if (!v.is_boolean()) throw HttpError(400, "'phasemap.extension' must be true or false");
                    p.extension = v.get<bool>();
                } else if (k == "return_hidden_states") {
                    if (!v.is_string()) throw HttpError(400, "'phasemap.return_hidden_states' must be a layer spec such as \"hf:2,hf:-1\"");
                    std::vector<ResolvedLayer> want;
                    try { want = resolve_layers(v.get<std::string>(), model->info().n_layer); }
                    catch (const std::exception& e) { throw HttpError(400, fmt::format("phasemap.return_hidden_states: {}", e.what())); }
                    const auto& cap = engine->layers();
                    for (const auto& w : want) {
                        size_t i = 0;
                        while (i < cap.size() && cap[i].label != w.label) ++i;
                        if (i == cap.size() && w.hf_index >= 0)  // block:i is the state of hf:i+1 (capture/layers.hpp)
                            for (i = 0; i < cap.size() && cap[i].hf_index != w.hf_index; ++i) {
                            }
                        if (i == cap.size())
                            throw HttpError(400, fmt::format("phasemap.return_hidden_states: layer {} is not captured by this server (its --layers)", w.label));
                        p.hidden_layers.push_back(i);
                        p.hidden_labels.push_back(w.label);
                    }
                } else if (k == "analysis") {
                    if (v.is_boolean()) {
                        p.analysis = v.get<bool>();
                    } else if (v.is_object()) {
                        try { p.settings = analysis_settings(v); }
                        catch (const FieldError& e) { throw HttpError(400, e.what()); }
                    } else {
                        throw HttpError(400, "'phasemap.analysis' must be true, false or an object of analysis options (docs/serve.md)");
                    }
                } else {
                    throw HttpError(400, fmt::format("unknown or unsupported field 'phasemap.{}'", k));
                }
            }
        }
        // The analysis layer, named once: phasemap.metric_layer (also the monitor's layer, as
        // generate's --metric-layer) or phasemap.analysis.layer.
        std::string layer_field = "phasemap.metric_layer";
        if (!p.settings.layer.empty()) {
            if (!p.metric_layer.empty() && p.metric_layer != p.settings.layer)
                throw HttpError(400, fmt::format("phasemap.analysis.layer '{}' and phasemap.metric_layer '{}' differ: give the layer once",
                                                 p.settings.layer, p.metric_layer));
            p.metric_layer = p.settings.layer;
            layer_field = "phasemap.analysis.layer";
        }
        p.settings.layer = p.metric_layer;
        {
            std::vector<std::string> names;
            for (const auto& l : engine->layers()) names.push_back(l.label);
            const AnalysedLayers a = analysed_layers(names);
            if (!p.metric_layer.empty()) {
                try { (void)metric_layer_option(p.metric_layer, a); }
                catch (const std::exception& e) { throw HttpError(400, fmt::format("{}: {}", layer_field, e.what())); }
            }
            try { p.options = checked_analysis_options(p.settings, a.names); }
            catch (const FieldError& e) { throw HttpError(400, e.what()); }
        }
        if (p.monitor) {
            p.monitor->metric_layer = p.metric_layer;  // as generate binds --metric-layer
            try { (void)plan::request_monitor(*p.monitor, model->info(), engine->layers()); }
            catch (const std::exception& e) { throw HttpError(400, fmt::format("phasemap.monitor: {}", e.what())); }
        }
        if (!p.extension) {
            p.analysis = false;
            if (!p.hidden_layers.empty()) throw HttpError(400, "phasemap.return_hidden_states needs phasemap.extension");
        }
        if (!p.hidden_layers.empty()) {
            const double bytes = double(r.n_predict) * double(p.hidden_layers.size()) * double(model->info().n_embd) * 4.0;
            if (bytes > double(opt.max_hidden_states))
                throw HttpError(400, fmt::format("phasemap.return_hidden_states: {} tokens x {} layers x {} x 4 bytes exceed the limit of {} bytes (--max-hidden-states)",
                                                 r.n_predict, p.hidden_layers.size(), model->info().n_embd, opt.max_hidden_states));
        }
        try { engine->validate(r); }
        catch (const std::exception& e) { throw HttpError(400, e.what()); }
        // n beyond the context: the prompt and max_tokens must fit one sequence's context.
        size_t n_prompt = 0;
        try {
            n_prompt = !chat ? model->tokenize(r.prompt, true).size()
                             : model->tokenize(r.messages.empty() ? model->apply_chat_template(r.prompt) : model->apply_chat_template(r.messages), true, true).size();
        } catch (const std::exception& e) { throw HttpError(400, e.what()); }
        if (n_prompt + size_t(r.n_predict) > size_t(engine->facts().n_ctx))
            throw HttpError(400, fmt::format("the prompt ({} tokens) and max_tokens {} exceed the context of {} tokens", n_prompt, r.n_predict,
                                             engine->facts().n_ctx));
        return p;
    }

    // --- responses ---------------------------------------------------------------------------
    // Stated once per response: what each token's "hidden_states" string holds.
    json hidden_states_header(const Parsed& p) const {
        return json{{"layers", p.hidden_labels}, {"shape", {p.hidden_labels.size(), model->info().n_embd}},
                    {"dtype", "float32"}, {"byteorder", "little"}, {"encoding", "base64"}};
    }
    // Stated once per response (token 0's chunk, or the response): the layer and options of each
    // token's delta_t / curvature_t / ct_t, and why they are null when the norm needs the whole run.
    static json geometry_header(const Channel& c) {
        const metrics::TokenAxisOptions& t = c.options.token;
        json g{{"layer", c.geometry_layer < c.rec.start.layers.size() ? json(c.rec.start.layers[c.geometry_layer].label) : json(nullptr)},
               {"norm", metrics::to_string(t.norm)}, {"curvature", metrics::to_string(t.curvature)}, {"per_token", c.streams_geometry()}};
        if (!c.streams_geometry())
            g["missing_reason"] = fmt::format("norm {} standardises each dimension by its median and MAD over all of the run's states, so no "
                                              "token's value exists before the run ends: the series is the summary's per_token",
                                              metrics::to_string(t.norm));
        return g;
    }
    static json num_or_null(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }
    static json token_json(const capture::TokenRecord& t, const Geometry& g) {
        return json{{"t", t.t}, {"id", t.id}, {"text", t.text}, {"position", t.position}, {"entropy", t.stats.entropy},
                    {"top1", t.stats.top1}, {"margin", t.stats.margin}, {"surprisal", t.stats.surprisal},
                    {"delta_t", num_or_null(g.delta)}, {"curvature_t", num_or_null(g.curvature)}, {"ct_t", num_or_null(g.ct)}};
    }

    // The monitor's record (guard text decoded into the context, its log lines), when it acted.
    static void add_monitor(json& ext, const capture::RunEnd& e) {
        if (e.insertions.empty() && e.events.empty()) return;
        json ins = json::array();
        for (const auto& in : e.insertions)
            ins.push_back({{"after_t", in.after_t}, {"position", in.position}, {"text", in.text}, {"text_offset", in.text_offset}});
        ext["insertions"] = ins;
        ext["events"] = e.events;
    }

    static const char* finish_reason(const std::string& stop) {
        if (stop == "length" || stop == "context") return "length";
        return "stop";
    }

    // The run summary of the metrics code over the captured states (LIMEN's protocol: hf:0 left
    // out when other layers are captured), as generate --analyze --json writes it.
    json summary(Channel& c, const Parsed& p) const {
        const std::vector<std::string> names = c.captured_layers();
        if (names.empty() || c.rec.tokens.empty()) return json{{"missing_reason", "no captured layers or no tokens"}};
        io::SummaryContext ctx;
        for (const auto& t : c.rec.tokens) {
            ctx.token_texts.push_back(t.text);
            ctx.token_ids.push_back(t.id);
        }
        ctx.prompt = c.rec.start.prompt_text;
        ctx.generated_text = c.end_ ? c.end_->text : "";
        ctx.hidden_states_shape = {c.rec.tokens.size(), names.size(), size_t(c.rec.start.n_embd)};
        ctx.embedding_output_included = analysed_layers(names).embedding_included;
        // summary_json's per_token section: delta_t, curvature_t, ct_t (also streamed per token,
        // Geometry) and the output state of every token.
        return io::summary_json(c.analysis(), ctx);
    }

    json chunk(const std::string& id, bool chat, const std::string& text, const char* finish, const json& ext) const {
        json choice{{"index", 0}, {"finish_reason", finish ? json(finish) : json(nullptr)}};
        if (chat) choice["delta"] = text.empty() && finish ? json::object() : json{{"content", text}};
        else choice["text"] = text;
        if (!chat) choice["logprobs"] = nullptr;
        json j{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", std::time(nullptr)},
               {"model", opt.model_id}, {"choices", json::array({choice})}};
        if (!ext.is_null()) j["phasemap"] = ext;
        return j;
    }

    // The SSE event of a token chunk without writing the envelope through a json object each time:
    // the parts around the token's text and `phasemap` object are the same for every token of a
    // response, and are written once (the text json::dump gives the whole object: sorted keys).
    struct TokenFrame {
        std::string head, mid;  // "data: {...text": | TEXT | "...object":"..." | [,"phasemap":EXT] | "}\n\n"
    };
    TokenFrame token_frame(const std::string& id, bool chat, std::time_t created) const {
        const std::string c = json(chat ? "chat.completion.chunk" : "text_completion").dump(), m = json(opt.model_id).dump();
        TokenFrame f;
        f.head = chat ? "data: {\"choices\":[{\"delta\":{\"content\":" : "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"logprobs\":null,\"text\":";
        f.mid = fmt::format("{}],\"created\":{},\"id\":{},\"model\":{},\"object\":{}", chat ? "},\"finish_reason\":null,\"index\":0}" : "}", created,
                            json(id).dump(), m, c);
        return f;
    }
    static void append_token_event(std::string& out, const TokenFrame& f, const std::string& text, const json& ext) {
        out += f.head;
        out += json(text).dump();
        out += f.mid;
        if (!ext.is_null()) {
            out += ",\"phasemap\":";
            out += ext.dump();
        }
        out += "}\n\n";
    }

    void handle(const httplib::Request& hreq, httplib::Response& res, bool chat) {
        ++n_requests;
        Parsed p = parse(hreq.body, chat);
        auto ch = std::make_shared<Channel>();
        ch->on_token = [this](size_t n) { n_tokens += n; };
        if (db && p.store) {
            ch->store = true;
            ch->request = p.req;
            std::weak_ptr<Channel> w = ch;
            ch->on_end = [this, w] {
                if (auto c = w.lock()) {
                    {
                        std::lock_guard lk(wmu);
                        to_store.push_back(std::move(c));
                    }
                    wcv.notify_one();
                }
            };
        }
        ch->metric_layer = p.metric_layer;  // the layer of the streamed geometry and of the stored run
        ch->options = p.options;
        ch->extension = p.extension;
        ch->hidden_layers = p.hidden_layers;
        p.req.cancel = ch->cancel;
        if (p.monitor) {
            ch->monitor = plan::request_monitor(*p.monitor, model->info(), engine->layers());
            p.req.controller = ch->monitor.get();
        }
        const std::string id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", n_requests.load());
        enqueue(Job{p.req, ch});
        if (!p.stream) {
            std::unique_lock lk(ch->mu);
            ch->cv.wait(lk, [&] { return ch->closed; });
            if (!ch->failure.empty()) throw HttpError(500, ch->failure);
            json toks = json::array();
            for (size_t i = 0; i < ch->rec.tokens.size(); ++i) {
                toks.push_back(token_json(ch->rec.tokens[i], ch->geometry[i]));
                if (!ch->hidden_layers.empty()) toks.back()["hidden_states"] = ch->hidden_states_b64(i);
            }
            json ext{{"tokens", toks}, {"geometry", geometry_header(*ch)}, {"stop_reason", ch->end_->stop_reason}};
            if (!p.hidden_layers.empty()) ext["hidden_states"] = hidden_states_header(p);
            add_monitor(ext, *ch->end_);
            if (p.analysis) ext["summary"] = summary(*ch, p);
            if (!p.extension) ext = nullptr;
            json choice{{"index", 0}, {"finish_reason", finish_reason(ch->end_->stop_reason)}};
            if (chat) choice["message"] = json{{"role", "assistant"}, {"content", ch->end_->text}};
            else {
                choice["text"] = ch->end_->text;
                choice["logprobs"] = nullptr;
            }
            const size_t np = ch->rec.start.prompt_ids.size(), ng = ch->rec.tokens.size();
            json out{{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", std::time(nullptr)},
                     {"model", opt.model_id}, {"choices", json::array({choice})},
                     {"usage", {{"prompt_tokens", np}, {"completion_tokens", ng}, {"total_tokens", np + ng}}}};
            if (!ext.is_null()) out["phasemap"] = ext;
            res.set_content(out.dump(), "application/json");
            return;
        }
        // Streaming: one SSE event per token; the last carries finish_reason and the summary.
        struct State {
            bool role_sent = false;
            bool done = false;
        };
        auto st = std::make_shared<State>();
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, ch, st, id, p, frame = token_frame(id, p.chat, std::time(nullptr))](size_t, httplib::DataSink& sink) {
                // The events of one call go out in one write (one chunk, one send).
                std::string out;
                auto send = [&](const json& j) {
                    out += "data: ";
                    out += j.dump();
                    out += "\n\n";
                };
                auto flush = [&] {
                    if (out.empty() || sink.write(out.data(), out.size())) return true;
                    ch->cancel->store(true);
                    return false;
                };
                if (st->done) return false;
                if (p.chat && !st->role_sent) {
                    st->role_sent = true;
                    json c = chunk(id, true, "", nullptr, nullptr);
                    c["choices"][0]["delta"] = json{{"role", "assistant"}, {"content", ""}};
                    send(c);
                }
                std::unique_lock lk(ch->mu);
                while (ch->pending.empty() && !ch->closed) {
                    ch->cv.wait_for(lk, std::chrono::milliseconds(50));
                    if (!sink.is_writable()) {
                        ch->cancel->store(true);
                        return false;
                    }
                }
                std::deque<TokenEvent> toks;
                toks.swap(ch->pending);
                const bool closed = ch->closed;
                std::vector<std::string> hidden;  // copied out under the lock (the loop appends states)
                if (!ch->hidden_layers.empty())
                    for (size_t i = 0, t0 = ch->rec.tokens.size() - toks.size(); i < toks.size(); ++i) hidden.push_back(ch->hidden_states_b64(t0 + i));
                lk.unlock();
                for (size_t i = 0; i < toks.size(); ++i) {
                    const TokenEvent& t = toks[i];
                    json ext = nullptr;
                    if (p.extension) {
                        ext = json{{"token", token_json(t.rec, t.g)}};
                        if (t.rec.t == 0) ext["geometry"] = geometry_header(*ch);
                        if (!hidden.empty()) {
                            ext["token"]["hidden_states"] = std::move(hidden[i]);
                            if (t.rec.t == 0) ext["hidden_states"] = hidden_states_header(p);
                        }
                    }
                    append_token_event(out, frame, t.rec.text, ext);
                }
                if (!closed) return flush();
                std::lock_guard g(ch->mu);
                if (!ch->pending.empty()) return flush();  // tokens that came after the swap
                st->done = true;
                if (!ch->failure.empty()) {
                    send(error_body(ch->failure, "server_error"));
                } else {
                    json ext{{"stop_reason", ch->end_->stop_reason}, {"n_generated", ch->end_->n_generated}};
                    add_monitor(ext, *ch->end_);
                    if (p.analysis) ext["summary"] = summary(*ch, p);
                    send(chunk(id, p.chat, "", finish_reason(ch->end_->stop_reason), p.extension ? ext : json(nullptr)));
                }
                out += "data: [DONE]\n\n";
                if (!flush()) return false;
                sink.done();
                return true;
            },
            [ch](bool ok) {
                if (!ok) ch->cancel->store(true);
            });
    }

    std::string prometheus() {
        size_t qlen = 0;
        {
            std::lock_guard lk(mu);
            qlen = queue.size();
        }
        const double up = std::chrono::duration<double>(Clock::now() - started).count();
        std::string s;
        s += "# HELP phasemap_requests_total Completion requests received.\n# TYPE phasemap_requests_total counter\n";
        s += fmt::format("phasemap_requests_total {}\n", n_requests.load());
        s += "# HELP phasemap_requests_rejected_total Requests refused because the queue was full (429).\n# TYPE phasemap_requests_rejected_total counter\n";
        s += fmt::format("phasemap_requests_rejected_total {}\n", n_rejected.load());
        s += "# HELP phasemap_requests_cancelled_total Sequences cancelled (client disconnected).\n# TYPE phasemap_requests_cancelled_total counter\n";
        s += fmt::format("phasemap_requests_cancelled_total {}\n", n_cancelled.load());
        s += "# HELP phasemap_runs_stored_total Served runs written to the results DB (--db).\n# TYPE phasemap_runs_stored_total counter\n";
        s += fmt::format("phasemap_runs_stored_total {}\n", n_stored.load());
        s += "# HELP phasemap_tokens_generated_total Tokens generated.\n# TYPE phasemap_tokens_generated_total counter\n";
        s += fmt::format("phasemap_tokens_generated_total {}\n", n_tokens.load());
        s += "# HELP phasemap_active_sequences Sequences in the engine's batch.\n# TYPE phasemap_active_sequences gauge\n";
        s += fmt::format("phasemap_active_sequences {}\n", n_active.load());
        s += "# HELP phasemap_queue_length Requests waiting for a slot.\n# TYPE phasemap_queue_length gauge\n";
        s += fmt::format("phasemap_queue_length {}\n", qlen);
        s += "# HELP phasemap_tokens_per_second Tokens generated per second since the server started.\n# TYPE phasemap_tokens_per_second gauge\n";
        s += fmt::format("phasemap_tokens_per_second {:.3f}\n", up > 0 ? double(n_tokens.load()) / up : 0.0);
        return s;
    }

    int listen_fd = -1;

    void routes() {
        // cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed in Debian's
        // library): a burst of clients overflows it and connections are reset. The socket is
        // kept here (with SO_REUSEADDR, httplib's default option) and listen() is called again
        // with SOMAXCONN after the bind, which Linux takes as the new backlog.
        http.set_socket_options([this](socket_t sock) {
            int yes = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
            listen_fd = sock;
        });
        http.set_payload_max_length(opt.max_body);
        const int nt = opt.http_threads;
        http.new_task_queue = [nt] { return new httplib::ThreadPool(size_t(nt)); };
        http.set_pre_routing_handler([this](const httplib::Request& r, httplib::Response& res) {
            if (opt.api_key.empty() || r.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
            const std::string auth = r.get_header_value("Authorization");
            const std::string pre = "Bearer ";
            if (auth.rfind(pre, 0) == 0 && same_key(std::string_view(auth).substr(pre.size()), opt.api_key))
                return httplib::Server::HandlerResponse::Unhandled;
            res.status = 401;
            res.set_content(error_body("missing or wrong API key (Authorization: Bearer KEY)", "authentication_error").dump(), "application/json");
            return httplib::Server::HandlerResponse::Handled;
        });
        auto wrap = [this](bool chat) {
            return [this, chat](const httplib::Request& r, httplib::Response& res) {
                try {
                    handle(r, res, chat);
                } catch (const HttpError& e) {
                    res.status = e.status;
                    if (e.status == 429) res.set_header("Retry-After", "1");
                    res.set_content(error_body(e.what(), e.status >= 500 ? "server_error" : "invalid_request_error").dump(), "application/json");
                } catch (const std::exception& e) {
                    res.status = 500;
                    res.set_content(error_body(e.what(), "server_error").dump(), "application/json");
                }
            };
        };
        http.Post("/v1/completions", wrap(false));
        http.Post("/v1/chat/completions", wrap(true));
        http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
            json m{{"object", "list"}, {"data", json::array({json{{"id", opt.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "phasemap"}}})}};
            res.set_content(m.dump(), "application/json");
        });
        http.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("{\"status\":\"ok\"}", "application/json"); });
        http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { res.set_content(prometheus(), "text/plain; version=0.0.4"); });
        http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return;
            const char* msg = res.status == 413 ? "the request body exceeds the size limit" : res.status == 404 ? "no such endpoint" : "bad request";
            res.set_content(error_body(msg, "invalid_request_error").dump(), "application/json");
        });
    }
};

Server::Server(std::shared_ptr<capture::Model> model, const capture::EngineOptions& engine, const ServerOptions& opt)
    : impl_(std::make_unique<Impl>()) {
    Impl& s = *impl_;
    s.model = std::move(model);
    s.eopt = engine;
    s.opt = opt;
    if (s.opt.model_id.empty()) s.opt.model_id = s.model->info().path.stem().string();
    if (opt.queue < 1) throw std::invalid_argument("--queue must be at least 1");
    s.engine = std::make_unique<capture::Engine>(s.model, engine);
    if (!opt.db.empty()) s.open_db();
    s.routes();
    if (opt.port == 0) s.bound_port = s.http.bind_to_any_port(opt.host);
    else s.bound_port = s.http.bind_to_port(opt.host, opt.port) ? opt.port : -1;
    if (s.bound_port <= 0) throw std::runtime_error(fmt::format("cannot listen on {}:{}", opt.host, opt.port));
    if (s.listen_fd >= 0) ::listen(s.listen_fd, SOMAXCONN);
}

Server::~Server() {
    if (impl_->writer.joinable()) {
        {
            std::lock_guard lk(impl_->wmu);
            impl_->writer_stop = true;
        }
        impl_->wcv.notify_all();
        impl_->writer.join();
    }
}

int Server::port() const { return impl_->bound_port; }

void Server::run() {
    Impl& s = *impl_;
    std::thread loop([&s] { s.engine->serve(s); });
    s.http.listen_after_bind();
    // The listener stopped (stop()): the loop finishes what it holds, then returns when idle.
    {
        std::lock_guard lk(s.mu);
        s.stopping = true;
    }
    s.cv.notify_all();
    loop.join();
    // Every finished run is stored before run() returns; then the DB closes with the server.
    if (s.writer.joinable()) {
        {
            std::lock_guard lk(s.wmu);
            s.writer_stop = true;
        }
        s.wcv.notify_all();
        s.writer.join();
    }
}

void Server::stop() {
    Impl& s = *impl_;
    {
        std::lock_guard lk(s.mu);
        s.stopping = true;
        // Requests still waiting for a slot will not run.
        for (auto& j : s.queue) j.ch->fail("the server is shutting down");
        s.queue.clear();
    }
    s.cv.notify_all();
    s.http.stop();
}

}  // namespace phasemap::serve
