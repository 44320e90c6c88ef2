// Issue 6 acceptance: intervention exactness, control vectors vs llama.cpp's own loader and cvec
// path, damping, control audit end to end (JSON and results DB), online monitor and guard, the
// monitor/guard evaluation, input errors.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "common.h"  // llama.cpp's common_control_vector_load (compiled from the pinned source)
#include "phasemap/capture.hpp"
#include "phasemap/metrics/token_axis.hpp"
#include "phasemap/run_file.hpp"
#include "phasemap/run_sinks.hpp"
#include "phasemap/steer/control_vector.hpp"
#include "phasemap/steer/eval.hpp"
#include "phasemap/steer/monitor.hpp"
#include "phasemap/steer/results.hpp"
#include "phasemap/steer/spec.hpp"
#include "phasemap/steer/vectors.hpp"
#include "phasemap/store.hpp"
#include "support/generation.hpp"
#include "support/paths.hpp"

using namespace phasemap;
using namespace phasemap::capture;

namespace {

std::shared_ptr<Model> load_shared(const std::string& file) {
    static std::map<std::string, std::shared_ptr<Model>> cache;
    const auto p = pmtest::shared_model(file);
    if (p.empty()) return nullptr;
    auto& m = cache[file];
    if (!m) m = Model::load(p);
    return m;
}

#define NEED(var, file)                                   \
    auto var = load_shared(file);                         \
    if (!var) GTEST_SKIP() << "../shared/models/" file " is not present"

using pmtest::req;
using pmtest::run;

Intervention add_at(int block, std::vector<float> v, double s, int t0, int t1) {
    Intervention iv;
    iv.op = InterventionOp::add;
    iv.block = block;
    iv.vec = std::move(v);
    iv.strength = s;
    iv.t_begin = t0;
    iv.t_end = t1;
    return iv;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const char* kA = "Once upon a time";
const char* kB = "Lily and Tom went to the park";

}  // namespace

TEST(Intervene, AddChangesCapturedStateByExactlyVForOneTokenAndSequence) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:2,block:4";
    o.n_parallel = 2;
    Engine e(model, o);
    const auto base = run(e, {req(kA, 8), req(kB, 8)});
    const std::vector<float> v = random_direction(size_t(d), 3.0, 7);
    auto r0 = req(kA, 8);
    r0.interventions = {add_at(2, v, 1.5, 3, 4)};
    const auto got = run(e, {r0, req(kB, 8)});
    const size_t Lp = 2;
    // tokens before t = 3 untouched; at t = 3 block:2 moved by exactly 1.5·v
    for (int t = 0; t < 3; ++t)
        for (int j = 0; j < int(Lp) * d; ++j) ASSERT_EQ(got[0].states[size_t(t) * Lp * d + j], base[0].states[size_t(t) * Lp * d + j]);
    double maxerr = 0;
    for (int j = 0; j < d; ++j) {
        const size_t k = size_t(3) * Lp * d + size_t(j);
        maxerr = std::max(maxerr, std::abs(double(got[0].states[k]) - base[0].states[k] - 1.5 * v[size_t(j)]));
    }
    EXPECT_LE(maxerr, 1e-5);
    // the edit reached later layers at that token
    double moved = 0;
    for (int j = 0; j < d; ++j) moved += std::abs(got[0].states[size_t(3) * Lp * d + d + j] - base[0].states[size_t(3) * Lp * d + d + j]);
    EXPECT_GT(moved, 0.0);
    // the other sequence of the batch is bitwise unchanged (states, tokens, logits-derived stats)
    EXPECT_TRUE(bitwise_equal(got[1].states, base[1].states));
    EXPECT_EQ(got[1].end.text, base[1].end.text);
}

TEST(Intervene, ZeroStrengthIsBitwiseIdentical) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "hf:all";
    o.n_parallel = 2;
    o.save_logits = true;
    Engine e(model, o);
    const auto base = run(e, {req(kA, 10), req(kB, 10)});
    auto r0 = req(kA, 10), r1 = req(kB, 10);
    r0.interventions = {add_at(1, random_direction(size_t(d), 5.0, 1), 0.0, 0, INT_MAX)};
    r0.interventions[0].prefill = true;
    Intervention pz;
    pz.op = InterventionOp::project_out;
    pz.block = 3;
    pz.vec = random_direction(size_t(d), 1.0, 2);
    pz.strength = 0.0;
    r1.interventions = {pz};
    const auto got = run(e, {r0, r1});
    for (int k = 0; k < 2; ++k) {
        EXPECT_TRUE(bitwise_equal(got[size_t(k)].states, base[size_t(k)].states));
        EXPECT_TRUE(bitwise_equal(got[size_t(k)].logits, base[size_t(k)].logits));
        EXPECT_EQ(got[size_t(k)].end.text, base[size_t(k)].end.text);
    }
}

TEST(Intervene, EditsPersistThroughTheKvCache) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:0";
    o.save_logits = true;
    Engine e(model, o);
    const auto base = run(e, {req(kA, 6)});
    auto r = req(kA, 6);
    r.interventions = {add_at(0, random_direction(size_t(d), 4.0, 3), 1.0, 2, 3)};
    const auto got = run(e, {r});
    // token 3 is not edited, its block:0 state depends only on its own input token if that is
    // unchanged — but its logits see the edited position 2 through attention
    ASSERT_EQ(got[0].tokens[3].id == base[0].tokens[3].id, got[0].tokens[2].id == base[0].tokens[2].id);
    double diff = 0;
    for (int j = 0; j < model->info().n_vocab; ++j)
        diff += std::abs(got[0].logits[size_t(3 * model->info().n_vocab + j)] - base[0].logits[size_t(3 * model->info().n_vocab + j)]);
    EXPECT_GT(diff, 0.0);
}

TEST(Intervene, DampAlphaOneAtTheLastBlockFreezesTheState) {
    NEED(model, "stories260K.gguf");
    const int L = model->info().n_layer, d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:last";
    Engine e(model, o);
    auto r = req(kA, 12);
    Intervention iv;
    iv.op = InterventionOp::damp;
    iv.block = L - 1;
    iv.strength = 1.0;
    r.interventions = {iv};
    const auto got = run(e, {r});
    const auto& st = got[0].states;
    for (size_t t = 1; t < got[0].tokens.size(); ++t)
        for (int j = 0; j < d; ++j) ASSERT_EQ(st[t * size_t(d) + size_t(j)], st[size_t(j)]) << "t=" << t;
    const auto ts = metrics::token_series(metrics::RowsView<float>(st.data(), got[0].tokens.size(), size_t(d)));
    ASSERT_FALSE(ts.ct.empty());
    for (double c : ts.ct) EXPECT_EQ(c, 0.0);
}

TEST(Intervene, OtherOpsDoWhatTheySay) {
    NEED(model, "stories260K.gguf");
    const int d = model->info().n_embd;
    EngineOptions o;
    o.layers = "block:2";
    Engine e(model, o);
    const auto base = run(e, {req(kA, 3)});
    auto norm = [&](const float* h) {
        double s = 0;
        for (int j = 0; j < d; ++j) s += double(h[j]) * h[j];
        return std::sqrt(s);
    };
    {  // scale at t = 0
        Intervention iv;
        iv.op = InterventionOp::scale;
        iv.block = 2;
        iv.strength = 0.5;
        iv.t_end = 1;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g = run(e, {r});
        for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(g[0].states[size_t(j)], 0.5f * base[0].states[size_t(j)]);
    }
    {  // clamp
        Intervention iv;
        iv.op = InterventionOp::clamp_norm;
        iv.block = 2;
        iv.strength = 0.25 * norm(base[0].states.data());
        iv.t_end = 1;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g = run(e, {r});
        EXPECT_NEAR(norm(g[0].states.data()), iv.strength, 1e-4 * iv.strength);
    }
    {  // project-out: the captured state is orthogonal to u
        Intervention iv;
        iv.op = InterventionOp::project_out;
        iv.block = 2;
        iv.vec = random_direction(size_t(d), 1.0, 11);
        iv.t_end = 1;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g = run(e, {r});
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += double(g[0].states[size_t(j)]) * iv.vec[size_t(j)];
        EXPECT_LE(std::abs(dot), 1e-4 * norm(base[0].states.data()));
    }
    {  // noise: seeded, reproducible, and a different seed differs
        Intervention iv;
        iv.op = InterventionOp::noise;
        iv.block = 2;
        iv.strength = 0.1;
        iv.seed = 5;
        auto r = req(kA, 3);
        r.interventions = {iv};
        const auto g1 = run(e, {r}), g2 = run(e, {r});
        EXPECT_TRUE(bitwise_equal(g1[0].states, g2[0].states));
        r.interventions[0].seed = 6;
        const auto g3 = run(e, {r});
        EXPECT_FALSE(bitwise_equal(g1[0].states, g3[0].states));
    }
    {  // random-direction control: equal norm, another direction
        Intervention iv = add_at(2, random_direction(size_t(d), 2.0, 9), 1.0, 0, 1);
        std::vector<Intervention> v{iv};
        v[0].random_direction = true;
        v[0].seed = 123;
        resolve_interventions(v, model->info().n_layer, d);
        EXPECT_NEAR(norm(v[0].vec.data()), 2.0, 1e-5);
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += double(v[0].vec[size_t(j)]) * iv.vec[size_t(j)];
        EXPECT_LT(std::abs(dot) / 4.0, 0.9);
    }
}

TEST(Intervene, BadInputIsRejectedBeforeGeneration) {
    NEED(model, "stories260K.gguf");
    const int L = model->info().n_layer, d = model->info().n_embd;
    Engine e(model, EngineOptions{});
    struct CountingSink : RecordingSink {
        int begins = 0;
        void begin(const RunStart& s) override { ++begins; RecordingSink::begin(s); }
    } sink;
    auto expect_error = [&](Intervention iv, const std::string& needle) {
        auto r = req(kA, 4);
        r.interventions = {iv};
        try {
            e.generate(std::vector<Request>{r}, [&](size_t) -> RunSink& { return sink; });
            ADD_FAILURE() << "no error for " << needle;
        } catch (const std::runtime_error& ex) {
            EXPECT_NE(std::string(ex.what()).find(needle), std::string::npos) << ex.what();
        }
        EXPECT_EQ(sink.begins, 0);
    };
    expect_error(add_at(1, std::vector<float>(size_t(d) + 1, 0.1f), 1, 0, 1), "n_embd");
    expect_error(add_at(L, std::vector<float>(size_t(d), 0.1f), 1, 0, 1), "out of range");
    Intervention damp;
    damp.op = InterventionOp::damp;
    damp.block = 1;
    damp.strength = 1.5;
    expect_error(damp, "outside [0, 1]");
    EXPECT_THROW(steer::parse_intervention_spec("add:block:9:x.npy", L), std::invalid_argument);
    EXPECT_THROW(steer::parse_intervention_spec("twist:block:1:2", L), std::invalid_argument);
    EXPECT_THROW(steer::parse_intervention_spec("damp:block:1:0.5@t=5-2", L), std::invalid_argument);
    const auto ok = steer::parse_intervention_spec("damp:block:-1:0.5@t=2-4,prefill,prompts=0+2", L);
    EXPECT_EQ(ok.iv.block, L - 1);
    EXPECT_EQ(ok.iv.t_begin, 2);
    EXPECT_EQ(ok.iv.t_end, 5);
    EXPECT_TRUE(ok.iv.prefill);
    EXPECT_EQ(ok.prompts, (std::vector<int>{0, 2}));
}

TEST(ControlVector, BuiltByPhasemapLoadsInLlamaCppAndMatchesTheCallback) {
    NEED(model, "stories260K.gguf");
    const auto& mi = model->info();
    steer::BuildOptions bo;
    bo.pos = {"Lily was happy and she laughed", "The sun was bright and warm", "Tom smiled at his friend"};
    bo.neg = {"Lily was sad and she cried", "The night was dark and cold", "Tom was angry at his friend"};
    for (auto method : {steer::VectorMethod::mean_diff, steer::VectorMethod::pca}) {
        bo.method = method;
        const steer::ControlVector cv = steer::build_control_vector(model, bo);
        ASSERT_EQ(int(cv.directions.size()), mi.n_layer - 1);
        pmtest::TempDir dir;
        const auto path = dir / "cv.gguf";
        steer::write_control_vector(cv, path);
        const float scale = 2.0f;
        // llama.cpp's own loader (common/common.cpp, pinned source) and cvec path
        const common_control_vector_data loaded = common_control_vector_load({{scale, path.string()}});
        ASSERT_EQ(loaded.n_embd, mi.n_embd);
        EngineOptions o;
        o.layers = "hf:all";
        o.save_logits = true;
        Engine e1(model, o);
        e1.set_control_vector(loaded.data, 1, mi.n_layer - 1);
        const auto a = run(e1, {req(kA, 12)});
        Engine e2(model, o);
        auto r = req(kA, 12);
        r.interventions = steer::control_vector_interventions(steer::read_control_vector(path), scale);
        const auto b = run(e2, {r});
        Engine e3(model, o);
        const auto base = run(e3, {req(kA, 12)});
        ASSERT_EQ(a[0].logits.size(), b[0].logits.size());
        double maxd = 0, moved = 0;
        for (size_t i = 0; i < a[0].logits.size(); ++i) {
            maxd = std::max(maxd, double(std::abs(a[0].logits[i] - b[0].logits[i])));
            moved = std::max(moved, double(std::abs(a[0].logits[i] - base[0].logits[i])));
        }
        EXPECT_LE(maxd, 1e-4) << steer::method_name(method);
        EXPECT_GT(moved, 1e-3) << "the control vector changes nothing";
        EXPECT_EQ(a[0].end.text, b[0].end.text);
    }
}

TEST(ControlVector, ForAnotherModelIsRejected) {
    NEED(model, "stories260K.gguf");
    const auto& mi = model->info();
    steer::ControlVector cv;
    cv.n_embd = mi.n_embd;
    cv.model_hint = mi.architecture;
    cv.directions[1] = std::vector<float>(size_t(mi.n_embd), 0.1f);
    EXPECT_NO_THROW(steer::check_control_vector(cv, mi.architecture, mi.n_layer, mi.n_embd));
    auto other = cv;
    other.model_hint = "rwkv7";
    EXPECT_THROW(steer::check_control_vector(other, mi.architecture, mi.n_layer, mi.n_embd), std::invalid_argument);
    other = cv;
    other.n_embd = 128;
    other.directions[1].resize(128);
    EXPECT_THROW(steer::check_control_vector(other, mi.architecture, mi.n_layer, mi.n_embd), std::invalid_argument);
    other = cv;
    other.directions[mi.n_layer] = std::vector<float>(size_t(mi.n_embd), 0.1f);
    EXPECT_THROW(steer::check_control_vector(other, mi.architecture, mi.n_layer, mi.n_embd), std::invalid_argument);
    // through the CLI: a vector for another model fails before generation
    pmtest::TempDir dir;
    other = cv;
    other.model_hint = "rwkv7";
    steer::write_control_vector(other, dir / "rw.gguf");
    const auto res = pmtest::run_phasemap({"generate", "-m", pmtest::shared_model("stories260K.gguf").string(), "-p", kA, "-n", "4",
                                           "--control-vector", (dir / "rw.gguf").string() + ":1.5"});
    EXPECT_EQ(res.exit_code, 1);
    EXPECT_NE(res.err.find("built for a 'rwkv7' model"), std::string::npos) << res.err;
    EXPECT_EQ(res.out, "");
}

TEST(ControlAudit, EndToEndWithRandomDirectionControls) {
    for (const char* file : {"stories260K.gguf", "tiny-rwkv7-834K.gguf"}) {
        auto model = load_shared(file);
        if (!model) GTEST_SKIP() << file << " is not present";
        const int d = model->info().n_embd;
        steer::AuditOptions ao;
        ao.prompts = {"Once upon a time", "Lily and Tom went to the park", "The little dog was sad"};
        ao.interventions = {add_at(2, random_direction(size_t(d), 4.0, 42), 1.0, 0, INT_MAX)};
        ao.n_predict = 16;
        ao.bootstrap = 200;
        const auto truth = pmtest::shared_models_dir().parent_path() / "datasets" / "geometry-of-truth" / "cities.csv";
        if (std::filesystem::exists(truth)) {
            ao.truth_csv = truth.string();
            ao.truth_limit = 6;
        }
        const nlohmann::json r = steer::run_control_audit(model, ao);
        ASSERT_EQ(r["arms"], nlohmann::json({"baseline", "intervened", "random", "zero"})) << file;
        EXPECT_EQ(r["per_prompt"].size(), 3u);
        for (const auto& p : r["per_prompt"]) {
            EXPECT_EQ(p["baseline"]["token_match_rate"].get<double>(), 1.0);
            EXPECT_EQ(p["zero"]["token_match_rate"].get<double>(), 1.0) << file << ": zero-strength twin differs";
            EXPECT_EQ(p["zero"]["text"], p["baseline"]["text"]);
        }
        EXPECT_TRUE(r["summary"]["random"].contains("delta_mean_ct"));
        EXPECT_TRUE(r["summary"]["intervened"]["delta_ratio_norm"].contains("ci95"));
        // twins on different rows of one batch agree to float rounding (the unified KV cache sums
        // attention over differently placed cells), not bitwise: the zero arm shows that floor
        EXPECT_LE(std::abs(r["summary"]["zero"]["delta_mean_ct"]["mean"].get<double>()), 1e-6);
        if (!ao.truth_csv.empty()) {
            EXPECT_EQ(r["truth"]["n"].get<size_t>(), 6u);
        }
        EXPECT_FALSE(r["headline"].get<std::string>().empty());
    }
}

TEST(ControlAudit, ForkedTwinsEqualSeparatePrefill) {
    NEED(model, "stories260K.gguf");
    EngineOptions o;
    o.layers = "hf:last";
    o.n_parallel = 3;
    o.share_prompt_prefix = true;
    Engine forked(model, o);
    const auto a = run(forked, {req(kA, 12), req(kA, 12), req(kB, 12)});
    EngineOptions s;
    s.layers = "hf:last";
    Engine single(model, s);
    const auto b = run(single, {req(kA, 12)});
    EXPECT_EQ(a[0].end.text, b[0].end.text);
    EXPECT_EQ(a[1].end.text, b[0].end.text);
    ASSERT_EQ(a[0].states.size(), b[0].states.size());
    double maxd = 0, maxv = 0;
    for (size_t i = 0; i < a[0].states.size(); ++i) {
        maxd = std::max({maxd, double(std::abs(a[0].states[i] - b[0].states[i])), double(std::abs(a[1].states[i] - b[0].states[i]))});
        maxv = std::max(maxv, double(std::abs(b[0].states[i])));
    }
    EXPECT_LE(maxd, 1e-5 * maxv);
}

namespace {
steer::Monitor* add_monitor(std::vector<std::unique_ptr<steer::Monitor>>& keep, steer::MonitorOptions mo, const Engine& e, int d) {
    keep.push_back(std::make_unique<steer::Monitor>(mo, e.layers().size(), size_t(d)));
    return keep.back().get();
}
}  // namespace

TEST(Monitor, CollapseFiresOnRwkvGreedyNotOnStories) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    NEED(stories, "stories260K.gguf");
    steer::MonitorOptions mo;
    mo.triggers = {steer::parse_trigger("collapse")};
    std::vector<std::unique_ptr<steer::Monitor>> keep;
    {
        EngineOptions o;
        o.layers = "hf:last";
        Engine e(rwkv, o);
        auto r = req("Once upon a time, ", 48);
        r.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
        const auto g = run(e, {r});
        EXPECT_TRUE(keep.back()->fired()) << g[0].end.text;
        EXPECT_FALSE(g[0].end.events.empty());
    }
    for (const char* p : {"Once upon a time", "Lily and Tom went to the park", "The little dog was sad", "One day, a girl named Sue"}) {
        EngineOptions o;
        o.layers = "hf:last";
        Engine e(stories, o);
        auto r = req(p, 64);
        r.controller = add_monitor(keep, mo, e, stories->info().n_embd);
        const auto g = run(e, {r});
        EXPECT_FALSE(keep.back()->fired()) << p << ": " << g[0].end.text;
    }
}

TEST(Monitor, GuardTextIsDecodedIntoTheContextAndMarked) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    steer::MonitorOptions mo;
    mo.triggers = {steer::parse_trigger("collapse")};
    mo.action = steer::ActionKind::guard;
    mo.guard_text = " Lily saw a cat.";
    EngineOptions o;
    o.layers = "hf:last";
    Engine e(rwkv, o);
    std::vector<std::unique_ptr<steer::Monitor>> keep;
    auto r = req("Once upon a time, ", 40);
    r.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
    const auto g = run(e, {r});
    ASSERT_EQ(g[0].end.insertions.size(), 1u);
    const Insertion& in = g[0].end.insertions[0];
    EXPECT_EQ(in.text, mo.guard_text);
    // positions jump over the inserted tokens; token records stay one per generated token
    ASSERT_EQ(int(g[0].tokens.size()), 40);
    const auto& tk = g[0].tokens;
    EXPECT_EQ(tk[size_t(in.after_t) + 1].position, tk[size_t(in.after_t)].position + 1 + int(in.ids.size()));
    // CLI marks it
    const auto res = pmtest::run_phasemap({"generate", "-m", pmtest::shared_model("tiny-rwkv7-834K.gguf").string(), "-p", "Once upon a time, ",
                                           "-n", "40", "--monitor", "--trigger", "collapse", "--on", "guard", "--guard-text", " Lily saw a cat."});
    EXPECT_EQ(res.exit_code, 0) << res.err;
    EXPECT_NE(res.out.find("⟦guard:  Lily saw a cat.⟧"), std::string::npos) << res.out;
    EXPECT_NE(res.out.find("collapse trigger"), std::string::npos) << res.out;
    // The run file records the insertion (where, which tokens, what text) and the monitor's log.
    pmtest::TempDir dir;
    const auto npz = dir / "guard.npz";
    const auto saved = pmtest::run_phasemap({"generate", "-m", pmtest::shared_model("tiny-rwkv7-834K.gguf").string(), "-p",
                                             "Once upon a time, ", "-n", "40", "--layers", "hf:last", "--monitor", "--trigger",
                                             "collapse", "--on", "guard", "--guard-text", " Lily saw a cat.", "-o", npz.string()});
    ASSERT_EQ(saved.exit_code, 0) << saved.err;
    const auto rf = phasemap::io::load_run_npz(npz);
    ASSERT_TRUE(rf.metadata.contains("insertions")) << rf.metadata.dump();
    const auto& ji = rf.metadata["insertions"];
    ASSERT_EQ(ji.size(), 1u);
    EXPECT_EQ(ji[0]["text"], mo.guard_text);
    EXPECT_EQ(ji[0]["after_t"], in.after_t);
    EXPECT_EQ(ji[0]["token_ids"].get<std::vector<int32_t>>(), in.ids);
    EXPECT_EQ(ji[0]["position"], in.position);
    ASSERT_TRUE(rf.metadata.contains("monitor_events"));
    EXPECT_GE(rf.metadata["monitor_events"].size(), 1u);
}

TEST(Monitor, StopAndInterveneActions) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    EngineOptions o;
    o.layers = "hf:last";
    Engine e(rwkv, o);
    std::vector<std::unique_ptr<steer::Monitor>> keep;
    steer::MonitorOptions mo;
    mo.triggers = {steer::parse_trigger("collapse")};
    mo.action = steer::ActionKind::stop;
    auto r = req("Once upon a time, ", 48);
    r.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
    auto g = run(e, {r});
    EXPECT_EQ(g[0].end.stop_reason, "monitor:collapse");
    EXPECT_LT(g[0].end.n_generated, 48);
    mo.action = steer::ActionKind::intervene;
    mo.intervention.op = InterventionOp::noise;
    mo.intervention.block = 5;
    mo.intervention.strength = 2.0;
    mo.for_tokens = 6;
    auto r2 = req("Once upon a time, ", 40);
    r2.controller = add_monitor(keep, mo, e, rwkv->info().n_embd);
    const auto base = run(e, {req("Once upon a time, ", 40)});
    g = run(e, {r2});
    ASSERT_TRUE(keep.back()->fired());
    const int t_fire = keep.back()->events().front().t;
    for (int t = 0; t <= t_fire; ++t) EXPECT_EQ(g[0].tokens[size_t(t)].id, base[0].tokens[size_t(t)].id);
    EXPECT_NE(g[0].end.text, base[0].end.text);
}

namespace {

void write_text(const std::filesystem::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
}

nlohmann::json read_json_file(const std::filesystem::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

// One CSV field, quoted (RFC 4180).
std::string csv_field(const std::string& s) {
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

// The first run of ≥ 3 letters in s ("" when none).
std::string first_word(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        size_t j = i;
        while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
        if (j - i >= 3) return s.substr(i, j - i);
        i = j + 1;
    }
    return "";
}

bool in_ci(const nlohmann::json& stat) {
    const double m = stat["mean"].get<double>();
    return stat["ci95"][0].is_number() && stat["ci95"][1].is_number() && stat["ci95"][0].get<double>() <= m + 1e-12 &&
           m <= stat["ci95"][1].get<double>() + 1e-12;
}

const std::vector<std::string> kMonitorPrompts = {"Once upon a time, ", "Lily and Tom went to the park", "The little dog was sad"};
const char* kGuard = " Lily saw a cat.";

// Labelled prompts for monitor-eval on `model`: the first prompt's answer is a word of its own
// greedy continuation (n tokens), so the baseline arm answers it; the others can never be answered.
// Returns the plain greedy generations.
std::vector<RunRecord> write_monitor_data(const std::shared_ptr<Model>& model, int n, const std::filesystem::path& csv) {
    std::vector<RunRecord> plain;
    EngineOptions o;
    o.layers = "hf:last";
    Engine e(model, o);
    for (const auto& p : kMonitorPrompts) plain.push_back(run(e, {req(p, n)})[0]);
    const std::string word = first_word(plain[0].end.text);
    EXPECT_FALSE(word.empty()) << plain[0].end.text;
    std::string text = "prompt,answer\r\n";
    for (size_t i = 0; i < kMonitorPrompts.size(); ++i)
        text += csv_field(kMonitorPrompts[i]) + "," + csv_field(i == 0 ? word : "zqxjv never said") + "\r\n";
    write_text(csv, text);
    return plain;
}

}  // namespace

TEST(MonitorEval, FourArmsOnLabelledPrompts) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    pmtest::TempDir dir;
    const int n = 40;
    const auto plain = write_monitor_data(rwkv, n, dir / "qa.csv");
    steer::MonitorEvalOptions o;
    o.data_csv = (dir / "qa.csv").string();
    o.n_predict = n;
    o.monitor.triggers = {steer::parse_trigger("collapse")};
    o.monitor.guard_text = kGuard;
    o.guard_at = 8;
    o.bootstrap = 300;
    const nlohmann::json r = steer::run_monitor_eval(rwkv, o);
    const std::vector<std::string> arms = {"baseline", "monitor_only", "guard_only", "monitor_guard"};
    ASSERT_EQ(r["arms"], nlohmann::json(arms));
    EXPECT_EQ(r["n"].get<size_t>(), kMonitorPrompts.size());
    ASSERT_EQ(r["per_prompt"].size(), kMonitorPrompts.size());
    for (const auto& a : arms) {
        const auto& s = r["summary"][a];
        for (const char* k : {"accuracy", "trigger_rate", "insertion_rate"}) {
            EXPECT_EQ(s[k]["n"].get<size_t>(), kMonitorPrompts.size()) << a << " " << k;
            const double m = s[k]["mean"].get<double>();
            EXPECT_GE(m, 0.0) << a << " " << k;
            EXPECT_LE(m, 1.0) << a << " " << k;
            EXPECT_TRUE(in_ci(s[k])) << a << " " << k << ": " << s[k].dump();
        }
        EXPECT_EQ(s.contains("delta_accuracy"), a != "baseline") << a;
    }
    // The baseline arm is a plain greedy generation: it answers the first prompt only.
    EXPECT_NEAR(r["summary"]["baseline"]["accuracy"]["mean"].get<double>(), 1.0 / 3.0, 1e-12);
    size_t fired = 0;
    for (size_t i = 0; i < kMonitorPrompts.size(); ++i) {
        const auto& p = r["per_prompt"][i];
        EXPECT_EQ(p["baseline"]["text"], plain[i].end.text) << i;
        EXPECT_EQ(p["baseline"]["correct"], i == 0) << i;
        EXPECT_EQ(p["baseline"]["insertions"], 0) << i;
        EXPECT_FALSE(p["baseline"]["fired"].get<bool>());
        // Logging changes nothing in the generation.
        EXPECT_EQ(p["monitor_only"]["text"], plain[i].end.text) << i;
        EXPECT_EQ(p["monitor_only"]["insertions"], 0) << i;
        // guard-only: the guard text after token guard_at, whatever the dynamics.
        EXPECT_EQ(p["guard_only"]["insertion_after_t"], nlohmann::json({o.guard_at})) << i;
        EXPECT_EQ(p["guard_only"]["insertion_text"], nlohmann::json({kGuard})) << i;
        // monitor+guard: the guard text exactly when the trigger fires (it fires on the same
        // tokens as in the monitor-only arm: the two are identical up to the first firing).
        const bool f = p["monitor_only"]["fired"].get<bool>();
        fired += f;
        EXPECT_EQ(p["monitor_guard"]["fired"].get<bool>(), f) << i;
        EXPECT_EQ(p["monitor_guard"]["insertion_text"], f ? nlohmann::json({kGuard}) : nlohmann::json::array()) << i;
        if (f) {
            EXPECT_NE(p["monitor_guard"]["text"], plain[i].end.text) << i << ": the guard text changed nothing";
            EXPECT_FALSE(p["monitor_only"]["events"].empty()) << i;
        }
    }
    // tiny-rwkv7's greedy text collapses into repetition: the collapse trigger fires.
    EXPECT_GE(fired, 1u);
    EXPECT_NEAR(r["summary"]["monitor_only"]["trigger_rate"]["mean"].get<double>(), double(fired) / 3.0, 1e-12);
    EXPECT_NEAR(r["summary"]["monitor_guard"]["insertion_rate"]["mean"].get<double>(), double(fired) / 3.0, 1e-12);
    EXPECT_EQ(r["summary"]["monitor_only"]["insertion_rate"]["mean"].get<double>(), 0.0);
    EXPECT_EQ(r["summary"]["guard_only"]["insertion_rate"]["mean"].get<double>(), 1.0);
    // The flat table: 3 measures per arm plus Δ accuracy for the three non-baseline arms.
    ASSERT_EQ(r["summary_rows"].size(), 4u * 3u + 3u);
    for (const auto& row : r["summary_rows"]) {
        EXPECT_EQ(phasemap::steer::to_json(phasemap::steer::summary_row_from_json(row)), row);   // typed round trip
        if (row["measure"] == "accuracy") {
            EXPECT_EQ(row["mean"], r["summary"][row["arm"].get<std::string>()]["accuracy"]["mean"]) << row.dump();
        }
    }
}

TEST(MonitorEval, CliWritesJsonAndTheResultsDb) {
    NEED(rwkv, "tiny-rwkv7-834K.gguf");
    pmtest::TempDir dir;
    write_monitor_data(rwkv, 40, dir / "qa.csv");
    const std::string model = pmtest::shared_model("tiny-rwkv7-834K.gguf").string();
    const std::string db = (dir / "r.duckdb").string();
    const std::vector<std::string> args = {"monitor-eval", "-m", model, "--data", (dir / "qa.csv").string(), "-n", "40", "--trigger",
                                           "collapse", "--guard-text", kGuard, "--bootstrap", "200", "--db", db, "-o",
                                           (dir / "m.json").string()};
    auto a = args;
    a.insert(a.end(), {"--name", "rwkv-monitor"});
    auto res = pmtest::run_phasemap(a);
    ASSERT_EQ(res.exit_code, 0) << res.err;
    EXPECT_NE(res.out.find("stored monitor_eval 'rwkv-monitor'"), std::string::npos) << res.out;
    const nlohmann::json file = read_json_file(dir / "m.json");
    // Again under the default name, and once more: that one replaces the stored one.
    for (int k = 0; k < 2; ++k) {
        res = pmtest::run_phasemap(args);
        ASSERT_EQ(res.exit_code, 0) << res.err;
    }
    const auto st = store::Store::open(db, {.read_only = true});
    const auto es = st->audits(steer::kMonitorEvalKind);
    ASSERT_EQ(es.size(), 2u);
    EXPECT_TRUE(st->audits(steer::kControlAuditKind).empty());
    const auto& e = es[0].name == "rwkv-monitor" ? es[0] : es[1];
    EXPECT_EQ(es[0].name == "rwkv-monitor" ? es[1].name : es[0].name, "monitor");
    EXPECT_EQ(e.kind, "monitor_eval");
    EXPECT_TRUE(e.ok);
    EXPECT_EQ(e.source, (dir / "qa.csv").string());
    EXPECT_EQ(e.options["guard_text"], kGuard);
    EXPECT_EQ(e.options["n_predict"], 40);
    EXPECT_EQ(e.data["summary"], file["summary"]);
    EXPECT_EQ(e.data["per_prompt"], file["per_prompt"]);
    // Relational tables: one row per prompt, one per arm × measure.
    const std::set<std::string> tables(e.tables.begin(), e.tables.end());
    ASSERT_TRUE(tables.count("monitor_rwkv_monitor_per_prompt")) << ::testing::PrintToString(e.tables);
    ASSERT_TRUE(tables.count("monitor_rwkv_monitor_summary_rows")) << ::testing::PrintToString(e.tables);
    EXPECT_EQ(st->rows("SELECT count(*) FROM monitor_rwkv_monitor_per_prompt"), std::vector<std::string>{"3"});
    EXPECT_EQ(st->rows("SELECT count(*) FROM monitor_rwkv_monitor_summary_rows"), std::vector<std::string>{"15"});
    const auto acc = st->rows("SELECT mean FROM monitor_rwkv_monitor_summary_rows WHERE arm = 'guard_only' AND measure = 'insertion_rate'");
    ASSERT_EQ(acc.size(), 1u);
    EXPECT_DOUBLE_EQ(std::stod(acc[0]), 1.0);
}

TEST(ControlAudit, CliWritesTheResultsDbOnStoriesAndRwkv) {
    pmtest::TempDir dir;
    write_text(dir / "prompts.txt", std::string(kA) + "\n" + kB + "\nThe little dog was sad\n");
    const std::string db = (dir / "r.duckdb").string();
    size_t done = 0;
    const std::vector<std::pair<std::string, std::string>> models = {{"stories260K.gguf", "stories"}, {"tiny-rwkv7-834K.gguf", "rwkv7"}};
    for (const auto& [file, name] : models) {
        auto model = load_shared(file);
        if (!model) GTEST_SKIP() << file << " is not present";
        std::ostringstream v;
        for (float x : random_direction(size_t(model->info().n_embd), 4.0, 42)) v << x << "\n";
        write_text(dir / "v.txt", v.str());
        const auto res = pmtest::run_phasemap({"control-audit", "-m", pmtest::shared_model(file).string(), "--prompts",
                                               (dir / "prompts.txt").string(), "--intervene", "add:block:2:" + (dir / "v.txt").string() + ":1.0",
                                               "-n", "16", "--bootstrap", "200", "--db", db, "--name", name, "-o",
                                               (dir / (name + ".json")).string()});
        ASSERT_EQ(res.exit_code, 0) << file << ": " << res.err;
        EXPECT_NE(res.out.find("stored control_audit '" + name + "'"), std::string::npos) << res.out;
        ++done;
    }
    ASSERT_EQ(done, 2u);
    {
        const auto st = store::Store::open(db, {.read_only = true});
        const auto es = st->audits(steer::kControlAuditKind);
        ASSERT_EQ(es.size(), 2u);
        for (const auto& e : es) {
            SCOPED_TRACE(e.name);
            EXPECT_TRUE(e.name == "stories" || e.name == "rwkv7");
            EXPECT_EQ(e.data, read_json_file(dir / (e.name + ".json")));
            EXPECT_EQ(e.data["arms"], nlohmann::json({"baseline", "intervened", "random", "zero"}));
            EXPECT_EQ(e.source, (dir / "prompts.txt").string());
            EXPECT_EQ(e.options["prompts"], 3);
            EXPECT_EQ(e.options["interventions"].size(), 1u);
            const std::string t = "control_" + e.name;
            const std::set<std::string> tables(e.tables.begin(), e.tables.end());
            ASSERT_TRUE(tables.count(t + "_per_prompt")) << ::testing::PrintToString(e.tables);
            ASSERT_TRUE(tables.count(t + "_summary_rows")) << ::testing::PrintToString(e.tables);
            EXPECT_EQ(st->rows("SELECT count(*) FROM " + t + "_per_prompt"), std::vector<std::string>{"3"});
            EXPECT_EQ(st->rows("SELECT count(*) FROM " + t + "_summary_rows"), std::vector<std::string>{std::to_string(e.data["summary_rows"].size())});
            // The zero-strength control moves nothing (float rounding of twins on other batch rows).
            const auto z = st->rows("SELECT mean FROM " + t + "_summary_rows WHERE arm = 'zero' AND measure = 'delta_mean_ct'");
            ASSERT_EQ(z.size(), 1u);
            EXPECT_LE(std::abs(std::stod(z[0])), 1e-6);
            const auto m = st->rows("SELECT mean FROM " + t + "_summary_rows WHERE arm = 'zero' AND measure = 'token_match_rate'");
            ASSERT_EQ(m.size(), 1u);
            EXPECT_DOUBLE_EQ(std::stod(m[0]), 1.0);
        }
    }
    // A file that is not a results DB is refused before generating.
    const auto res = pmtest::run_phasemap({"control-audit", "-m", pmtest::shared_model("stories260K.gguf").string(), "--prompts",
                                           (dir / "prompts.txt").string(), "--intervene", "scale:block:2:0.5", "--db",
                                           (dir / "prompts.txt").string()});
    EXPECT_EQ(res.exit_code, 1);
    EXPECT_NE(res.err.find("phasemap: error:"), std::string::npos) << res.err;
    EXPECT_EQ(res.out.find("control audit:"), std::string::npos) << res.out;
}

TEST(Steer, VectorsAndStatistics) {
    // mean-diff and PCA on a rank-one difference recover the direction
    const size_t n = 5, d = 4;
    std::vector<float> pos(n * d), neg(n * d, 0.0f);
    const float u[4] = {1, 2, -1, 0.5f};
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < d; ++j) pos[i * d + j] = float(i + 1) * u[j];
    const auto md = steer::build_direction(pos, neg, n, d, steer::VectorMethod::mean_diff);
    const auto pc = steer::build_direction(pos, neg, n, d, steer::VectorMethod::pca);
    for (size_t j = 0; j < d; ++j) {
        EXPECT_NEAR(md[j], 3.0f * u[j], 1e-5);
        EXPECT_NEAR(pc[j], md[j], 1e-4);
    }
    const std::vector<double> xs = {1, 2, 3, 4, 5};
    const auto ci = steer::bootstrap_mean(xs, 1000, 1);
    EXPECT_DOUBLE_EQ(ci.mean, 3.0);
    EXPECT_LT(ci.lo, 3.0);
    EXPECT_GT(ci.hi, 3.0);
    const auto g = steer::token_agreement(std::vector<int32_t>{1, 2, 3, 4}, std::vector<int32_t>{1, 2, 9, 4, 5});
    EXPECT_EQ(g.first_divergence, 2);
    EXPECT_DOUBLE_EQ(g.match_rate, 3.0 / 5.0);
    EXPECT_TRUE(steer::exact_match("  Paris.\nmore", "paris"));
    EXPECT_FALSE(steer::exact_match("Parisian", "Paris"));
}
