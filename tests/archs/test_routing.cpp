// MoE routing as a channel (EngineOptions::routing, generate --routing) on the sweep's MoE
// models:
//   llama-moe   the captured experts and weights equal an independent recomputation of the
//               router from the GGUF: softmax(ffn_gate_inp · ffn_norm-N), the top-k experts by
//               probability (highest first), their probabilities renormalised to sum 1
//               (llama's build_moe_ffn with norm_w) — ffn_norm-N captured with tensor:;
//   qwen3moe    shapes [M, k], experts distinct and in range, weights positive, descending and
//               summing to 1 (ffn_moe_weights_norm), and the run file's members;
//   llama dense routing refused with one message naming the architecture;
//   make-model's llama MoE (8 experts, k = 2): the same router recomputation, a selection that
//   varies (k < E), and the routing metrics of `analyze` against counts made here from the run
//   file; the bad-input messages (routing metrics of a dense run, MoE options make-model refuses).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <fstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/store/store.hpp"
#include "archs/archs_model.hpp"
#include "support/gguf_weights.hpp"
#include "support/paths.hpp"

namespace {

namespace fs = std::filesystem;
namespace cap = phasemap::capture;

using pmtest::archs_model;

struct RoutedRun {
    cap::RunStart start;
    std::vector<cap::TokenRecord> tokens;
    std::vector<std::vector<float>> states;
};

class Sink : public cap::RunSink {
public:
    RoutedRun* r;
    explicit Sink(RoutedRun* r) : r(r) {}
    void begin(const cap::RunStart& s) override { r->start = s; }
    void token(const cap::TokenRecord& t, std::span<const float> st, std::span<const float>) override {
        r->tokens.push_back(t);
        r->states.emplace_back(st.begin(), st.end());
    }
    void end(const cap::RunEnd&) override {}
};

RoutedRun routed(const fs::path& path, const std::string& layers, int n = 6) {
    cap::ModelOptions mo;
    mo.n_threads = 1;
    auto model = cap::Model::load(path, mo);
    cap::EngineOptions eo;
    eo.layers = layers;
    eo.routing = true;
    eo.n_threads = 1;
    eo.n_ctx = 64;
    cap::Engine e(model, eo);
    RoutedRun r;
    Sink sink(&r);
    std::vector<cap::Request> reqs(1);
    reqs[0].prompt = "the quick brown fox";
    reqs[0].n_predict = n;
    e.generate(reqs, [&](size_t) -> cap::RunSink& { return sink; });
    return r;
}

// The captured experts and weights of a llama (Mixtral-style) MoE against softmax(ffn_gate_inp ·
// ffn_norm-N), top-k by probability, renormalised; the run captured tensor:ffn_norm-N of every MoE
// block. Returns the largest weight difference.
double check_against_router(const fs::path& p, const RoutedRun& r) {
    const cap::RoutingLayout& lay = r.start.routing;
    const size_t k = size_t(lay.n_expert_used), M = lay.blocks.size(), d = size_t(r.start.n_embd);
    pmtest::GgufWeights w(p);
    EXPECT_EQ(int64_t(lay.n_expert), int64_t(w.get_u32("llama.expert_count")));
    EXPECT_EQ(int64_t(k), int64_t(w.get_u32("llama.expert_used_count")));
    double worst = 0;
    for (size_t t = 0; t < r.tokens.size(); ++t) {
        const auto& rec = r.tokens[t];
        EXPECT_EQ(rec.experts.size(), M * k);
        EXPECT_EQ(rec.expert_weights.size(), M * k);
        if (rec.experts.size() != M * k || rec.expert_weights.size() != M * k) return 1e9;
        for (size_t m = 0; m < M; ++m) {
            const pmtest::GgufTensor g = w.tensor("blk." + std::to_string(lay.blocks[m]) + ".ffn_gate_inp.weight");  // [d, E]
            const std::vector<float>& st = r.states[t];
            std::vector<double> logit(size_t(g.ne[1]));
            for (int64_t e = 0; e < g.ne[1]; ++e) {
                double acc = 0;
                for (size_t j = 0; j < d; ++j) acc += g.at(int64_t(j), e) * double(st[m * d + j]);
                logit[size_t(e)] = acc;
            }
            const double mx = *std::max_element(logit.begin(), logit.end());
            std::vector<double> prob(logit.size());
            double z = 0;
            for (size_t e = 0; e < prob.size(); ++e) z += prob[e] = std::exp(logit[e] - mx);
            for (double& v : prob) v /= z;
            std::vector<int> order(prob.size());
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[size_t(a)] > prob[size_t(b)]; });
            double sel = 0;
            for (size_t j = 0; j < k; ++j) sel += prob[size_t(order[j])];
            for (size_t j = 0; j < k; ++j) {
                EXPECT_EQ(rec.experts[m * k + j], order[j]) << "token " << t << " block " << m << " rank " << j;
                const double want = prob[size_t(order[j])] / sel;
                worst = std::max(worst, std::abs(double(rec.expert_weights[m * k + j]) - want));
            }
        }
    }
    return worst;
}

TEST(Routing, LlamaMoeMatchesTheRouterRecomputedFromTheGguf) {
    const fs::path p = archs_model("llama-moe");
    const RoutedRun r = routed(p, "tensor:ffn_norm-0,tensor:ffn_norm-1");
    ASSERT_EQ(r.start.routing.blocks, (std::vector<int>{0, 1}));
    ASSERT_EQ(r.tokens.size(), 6u);
    EXPECT_LE(check_against_router(p, r), 1e-5);
    // The comparison is sharp: the weights are not uniform, so a misread order or block would show.
    EXPECT_GT(std::abs(r.tokens[0].expert_weights[0] - r.tokens[0].expert_weights[1]), 1e-3);
}

TEST(Routing, Qwen3MoeShapesRangesAndWeightsAndRunFile) {
    const fs::path p = archs_model("qwen3moe-moe");
    const RoutedRun r = routed(p, "none");
    const cap::RoutingLayout& lay = r.start.routing;
    ASSERT_FALSE(lay.blocks.empty());
    const size_t k = size_t(lay.n_expert_used), M = lay.blocks.size();
    ASSERT_GE(k, 1u);
    for (const std::string& wt : lay.weight_tensors) EXPECT_EQ(wt.rfind("ffn_moe_weights_norm-", 0), 0u) << wt;
    for (const auto& rec : r.tokens) {
        ASSERT_EQ(rec.experts.size(), M * k);
        for (size_t m = 0; m < M; ++m) {
            std::set<int32_t> seen;
            double sum = 0;
            for (size_t j = 0; j < k; ++j) {
                const int32_t e = rec.experts[m * k + j];
                EXPECT_GE(e, 0);
                EXPECT_LT(e, lay.n_expert);
                seen.insert(e);
                const float wv = rec.expert_weights[m * k + j];
                EXPECT_GT(wv, 0.0f);
                if (j > 0) {
                    EXPECT_LE(wv, rec.expert_weights[m * k + j - 1] * (1 + 1e-6f));
                }
                sum += wv;
            }
            EXPECT_EQ(seen.size(), k) << "an expert selected twice";
            EXPECT_NEAR(sum, 1.0, 1e-5) << "normalised weights";
        }
    }
    // generate --routing writes the channel into the run file.
    pmtest::TempDir tmp;
    const auto out = pmtest::run_phasemap({"generate", "-m", p.string(), "-p", "the quick brown fox", "-n", "5", "-t", "1", "-q",
                                           "--routing", "-o", (tmp / "run.npz").string()});
    ASSERT_EQ(out.exit_code, 0) << out.err;
    phasemap::io::NpzReader npz(tmp / "run.npz");
    const auto ex = npz.array("routing_experts");
    const auto wt = npz.array("routing_weights");
    EXPECT_EQ(ex.shape, (std::vector<size_t>{5, M, k}));
    EXPECT_EQ(wt.shape, (std::vector<size_t>{5, M, k}));
    EXPECT_NE(npz.bytes("metadata.json").find("\"routing\""), std::string::npos);
}

TEST(Routing, DenseModelIsOneClearError) {
    cap::ModelOptions mo;
    mo.n_threads = 1;
    auto model = cap::Model::load(archs_model("llama-dense"), mo);
    cap::EngineOptions eo;
    eo.routing = true;
    eo.n_threads = 1;
    eo.n_ctx = 64;
    try {
        cap::Engine e(model, eo);
        FAIL() << "routing accepted on a dense model";
    } catch (const std::invalid_argument& ex) {
        EXPECT_NE(std::string(ex.what()).find("architecture 'llama' has no MoE block"), std::string::npos) << ex.what();
    }
    pmtest::TempDir tmp;
    const auto out = pmtest::run_phasemap({"generate", "-m", archs_model("llama-dense").string(), "-p", "x", "-n", "2", "-t", "1",
                                           "--routing", "-o", (tmp / "run.npz").string()});
    EXPECT_NE(out.exit_code, 0);
    EXPECT_NE(out.err.find("routing needs an MoE model"), std::string::npos) << out.err;
    EXPECT_FALSE(fs::exists(tmp / "run.npz"));
}


namespace mg = phasemap::modelgen;

// make-model's llama MoE: tiny preset (d 64, 4 blocks) with E experts, k selected.
fs::path make_moe(const pmtest::TempDir& tmp, uint32_t E, uint32_t k) {
    const fs::path vocab_dir = pmtest::llama_src_dir() / "models";
    mg::ModelSpec spec = mg::preset("llama", "tiny");
    spec.n_expert = E;
    spec.n_expert_used = k;
    spec.seed = 11;
    const fs::path p = tmp / "llama-moe-8x2.gguf";
    mg::write_random_model(spec, vocab_dir, p);
    return p;
}

nlohmann::json read_json(const fs::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

TEST(Routing, MakeModelMoeSelectsTwoOfEightAsTheRouterDoes) {
    pmtest::TempDir tmp;
    const fs::path p = make_moe(tmp, 8, 2);
    const RoutedRun r = routed(p, "tensor:ffn_norm-0,tensor:ffn_norm-1,tensor:ffn_norm-2,tensor:ffn_norm-3", 16);
    const cap::RoutingLayout& lay = r.start.routing;
    ASSERT_EQ(lay.blocks, (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(lay.n_expert, 8);
    EXPECT_EQ(lay.n_expert_used, 2);
    for (const std::string& wt : lay.weight_tensors) EXPECT_EQ(wt.rfind("ffn_moe_weights_norm-", 0), 0u) << wt;
    ASSERT_EQ(r.tokens.size(), 16u);
    EXPECT_LE(check_against_router(p, r), 1e-5);
    // Selection is exercised: more than k experts appear in a block over the run, and some
    // token's set differs from the previous one's.
    size_t most = 0, switches = 0;
    for (size_t m = 0; m < 4; ++m) {
        std::set<int32_t> used;
        for (size_t t = 0; t < r.tokens.size(); ++t) {
            used.insert(r.tokens[t].experts.begin() + std::ptrdiff_t(2 * m), r.tokens[t].experts.begin() + std::ptrdiff_t(2 * m + 2));
            if (t > 0) {
                std::set<int32_t> a(r.tokens[t].experts.begin() + std::ptrdiff_t(2 * m), r.tokens[t].experts.begin() + std::ptrdiff_t(2 * m + 2));
                std::set<int32_t> b(r.tokens[t - 1].experts.begin() + std::ptrdiff_t(2 * m),
                                    r.tokens[t - 1].experts.begin() + std::ptrdiff_t(2 * m + 2));
                switches += a != b;
            }
        }
        most = std::max(most, used.size());
    }
    EXPECT_GT(most, 2u);
    EXPECT_GT(switches, 0u);
}

TEST(Routing, AnalyzeRoutingMetricsOnAMakeModelMoe) {
    pmtest::TempDir tmp;
    // Through the CLI options this time.
    const fs::path model = tmp / "moe.gguf", run = tmp / "run.npz", js = tmp / "s.json";
    auto mk = pmtest::run_phasemap({"make-model", "--arch", "llama", "--experts", "8", "--experts-used", "2", "--seed", "5",
                                    "-o", model.string()});
    ASSERT_EQ(mk.exit_code, 0) << mk.err;
    EXPECT_NE(mk.out.find("8 experts, k=2"), std::string::npos) << mk.out;
    const size_t T = 12;
    // Sampled (greedy decoding of a random-weight model repeats one token, and its routing with it).
    auto g = pmtest::run_phasemap({"generate", "-m", model.string(), "-p", "the quick brown fox", "-n", std::to_string(T), "-t", "1",
                                   "--temp", "1.0", "--seed", "3", "-q", "--routing", "-o", run.string()});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    auto a = pmtest::run_phasemap({"analyze", run.string(), "--routing", "-q", "--json", js.string()});
    ASSERT_EQ(a.exit_code, 0) << a.err;

    phasemap::io::NpzReader npz(run);
    const auto exa = npz.array("routing_experts");
    const auto wta = npz.array("routing_weights");
    ASSERT_EQ(exa.shape, (std::vector<size_t>{T, 4, 2}));
    const std::vector<int64_t> ex = exa.as_int64();
    const std::vector<float> wt = wta.as_float();
    const size_t M = 4, k = 2, E = 8;
    auto id = [&](size_t t, size_t m, size_t j) { return ex[(t * M + m) * k + j]; };
    // Weights renormalised over the top k (llama's norm_w): each (t, m) sums to 1.
    for (size_t i = 0; i < T * M; ++i) EXPECT_NEAR(double(wt[2 * i]) + double(wt[2 * i + 1]), 1.0, 1e-6);

    const nlohmann::json j = read_json(js);
    const nlohmann::json& ro = j.at("routing");
    EXPECT_EQ(ro.at("n_expert"), 8);
    EXPECT_EQ(ro.at("n_expert_used"), 2);
    EXPECT_EQ(ro.at("moe_blocks"), 4);
    ASSERT_EQ(ro.at("blocks").size(), M);
    // Loads and the pooled switch rate, counted here from the run file.
    size_t switches = 0;
    for (size_t m = 0; m < M; ++m) {
        std::vector<double> load(E, 0.0);
        for (size_t t = 0; t < T; ++t) {
            for (size_t jj = 0; jj < k; ++jj) {
                ASSERT_GE(id(t, m, jj), 0);
                ASSERT_LT(id(t, m, jj), int64_t(E));
                load[size_t(id(t, m, jj))] += 1.0 / double(T * k);
            }
            if (t > 0) {
                const std::set<int64_t> now{id(t, m, 0), id(t, m, 1)}, before{id(t - 1, m, 0), id(t - 1, m, 1)};
                switches += now != before;
            }
        }
        const auto& jl = ro.at("blocks")[m].at("expert_load");
        ASSERT_EQ(jl.size(), E);
        for (size_t e = 0; e < E; ++e) EXPECT_NEAR(jl[e].get<double>(), load[e], 1e-12) << "block " << m << " expert " << e;
    }
    EXPECT_NEAR(ro.at("expert_switch_rate").get<double>(), double(switches) / double(M * (T - 1)), 1e-12);
    // Per-token routing entropy of two renormalised weights lies in [0, ln 2].
    const auto& pe = j.at("per_token").at("routing_entropy");
    ASSERT_EQ(pe.size(), T);
    for (const auto& v : pe) {
        EXPECT_GE(v.get<double>(), 0.0);
        EXPECT_LE(v.get<double>(), std::log(2.0) + 1e-9);
    }
    EXPECT_EQ(j.at("summary").at("routing_entropy").at("n"), T);
    for (const char* name : {"expert_load_entropy", "expert_load_imbalance", "routing_layer_nmi"}) {
        ASSERT_TRUE(ro.at(name).is_number()) << name << ": " << ro.dump();
        EXPECT_GE(ro.at(name).get<double>(), name == std::string("expert_load_imbalance") ? 1.0 : 0.0) << name;
        EXPECT_LE(ro.at(name).get<double>(), name == std::string("expert_load_imbalance") ? 4.0 : 1.0) << name;
    }
    // The printed summary has the routing line.
    auto shown = pmtest::run_phasemap({"analyze", run.string()});
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_NE(shown.out.find("routing (4 MoE blocks, 2 of 8 experts)"), std::string::npos) << shown.out;
}

TEST(Routing, RoutingMetricsOfADenseRunAndBadMoeOptionsAreOneClearErrorEach) {
    pmtest::TempDir tmp;
    const fs::path dense = archs_model("llama-dense"), run = tmp / "dense.npz", js = tmp / "d.json";
    auto g = pmtest::run_phasemap({"generate", "-m", dense.string(), "-p", "x y", "-n", "4", "-t", "1", "-q", "-o", run.string()});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    auto a = pmtest::run_phasemap({"analyze", run.string(), "--routing", "-q"});
    EXPECT_NE(a.exit_code, 0);
    EXPECT_NE(a.err.find("the run has no MoE routing"), std::string::npos) << a.err;
    // Not asked for: the routing metrics are missing with the reason, the rest unchanged.
    auto b = pmtest::run_phasemap({"analyze", run.string(), "-q", "--json", js.string()});
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const nlohmann::json j = read_json(js);
    EXPECT_NE(j.at("routing").at("missing_reason").get<std::string>().find("generate --routing on an MoE model"), std::string::npos);
    EXPECT_FALSE(j.at("per_token").contains("routing_entropy"));

    struct Bad {
        std::vector<std::string> args;
        std::string says;
    };
    const std::vector<Bad> bad = {
        {{"--arch", "qwen2", "--experts", "8"}, "llama only"},
        {{"--arch", "llama", "--experts", "1"}, "--experts"},
        {{"--arch", "llama", "--experts", "4", "--experts-used", "5"}, "n_expert_used 5 must be between 1 and n_expert 4"},
        {{"--arch", "llama", "--experts-used", "2"}, "--experts-used needs --experts"},
    };
    for (const Bad& x : bad) {
        std::vector<std::string> args{"make-model"};
        args.insert(args.end(), x.args.begin(), x.args.end());
        args.insert(args.end(), {"-o", (tmp / "bad.gguf").string()});
        const auto r = pmtest::run_phasemap(args);
        EXPECT_NE(r.exit_code, 0) << x.says;
        EXPECT_NE(r.err.find(x.says), std::string::npos) << r.err;
        EXPECT_FALSE(fs::exists(tmp / "bad.gguf"));
    }
}

TEST(Routing, PanelOfAMoeStoresTheRoutingColumnsAndTheAuditReadsThem) {
    pmtest::TempDir tmp;
    const fs::path moe = make_moe(tmp, 8, 2), dense = archs_model("llama-dense");
    auto write = [&](const std::string& name, bool with_moe) {
        std::string s = "name = \"moe\"\n[generation]\ntemperatures = [0.0, 0.8]\nseeds = [1, 2]\nn_predict = 8\n";
        if (with_moe) s += "[[models]]\nlabel = \"moe\"\npath = \"" + moe.string() + "\"\n";
        s += "[[models]]\nlabel = \"dense\"\npath = \"" + dense.string() + "\"\n";
        s += "[[prompts]]\nbuiltin = \"stories\"\ncategories = [\"animals\"]\nlimit = 1\n";
        std::ofstream(tmp / name) << s;
        return (tmp / name).string();
    };
    const fs::path db = tmp / "r.duckdb";
    auto r = pmtest::run_phasemap({"panel", "run", write("p.toml", true), "--db", db.string(), "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto q = [&](const std::string& sql) { return phasemap::store::Store::open(db, {.read_only = true})->rows(sql); };
    // MoE runs: the routing columns set; dense runs: NULL, with no routing entry in missing_reasons.
    EXPECT_EQ(q("SELECT model, count(*), count(expert_switch_rate), count(expert_load_entropy), count(expert_load_imbalance), "
                "count(median_routing_entropy), count(median_expert_switch) FROM runs GROUP BY model ORDER BY model"),
              (std::vector<std::string>{"dense\t4\t0\t0\t0\t0\t0", "moe\t4\t4\t4\t4\t4\t4"}));
    EXPECT_EQ(q("SELECT count(*) FROM runs WHERE model = 'dense' AND (missing_reasons LIKE '%routing%' OR missing_reasons LIKE '%expert%')")[0], "0");
    // The sampled MoE runs have a top-1 NMI; a greedy one may repeat one token (a constant top-1
    // expert): then it is NULL with its reason.
    EXPECT_EQ(q("SELECT count(routing_layer_nmi) FROM runs WHERE model = 'moe' AND temperature > 0")[0], "2");
    EXPECT_EQ(q("SELECT count(*) FROM runs WHERE model = 'moe' AND routing_layer_nmi IS NULL AND "
                "missing_reasons NOT LIKE '%routing_layer_nmi%is the same at every token%'")[0], "0");
    EXPECT_EQ(q("SELECT count(*) FROM tokens k JOIN runs r USING (run_id) WHERE r.model = 'moe' AND k.routing_entropy IS NULL")[0], "0");
    EXPECT_EQ(q("SELECT count(*) FROM tokens k JOIN runs r USING (run_id) WHERE r.model = 'moe' AND k.t > 0 AND "
                "(k.expert_switch < 0 OR k.expert_switch > 1 OR k.expert_switch IS NULL)")[0], "0");
    EXPECT_EQ(q("SELECT count(*) FROM runs WHERE model = 'moe' AND NOT (expert_switch_rate BETWEEN 0 AND 1 AND "
                "expert_load_imbalance BETWEEN 1 AND 4)")[0], "0");
    // The audit takes a routing metric like any run metric.
    auto a = pmtest::run_phasemap({"audit", db.string(), "--metric", "expert_switch_rate", "--section", "variance", "--no-store",
                                   "--json", (tmp / "a.json").string(), "-q"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_NE(read_json(tmp / "a.json").dump().find("expert_switch_rate"), std::string::npos);
    // A routing metric of a panel with dense models only: one clear message.
    const fs::path db2 = tmp / "dense.duckdb";
    r = pmtest::run_phasemap({"panel", "run", write("d.toml", false), "--db", db2.string(), "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    a = pmtest::run_phasemap({"audit", db2.string(), "--metric", "routing_layer_nmi", "--no-store", "-q"});
    EXPECT_NE(a.exit_code, 0);
    EXPECT_NE(a.err.find("audit --metric routing_layer_nmi: no run in the panel has MoE routing"), std::string::npos) << a.err;
}

}  // namespace
