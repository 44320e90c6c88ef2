// MoE routing as a channel (EngineOptions::routing, generate --routing) on the sweep's MoE
// models:
//   llama-moe   the captured experts and weights equal an independent recomputation of the
//               router from the GGUF: softmax(ffn_gate_inp · ffn_norm-N), the top-k experts by
//               probability (highest first), their probabilities renormalised to sum 1
//               (llama's build_moe_ffn with norm_w) — ffn_norm-N captured with tensor:;
//   qwen3moe    shapes [M, k], experts distinct and in range, weights positive, descending and
//               summing to 1 (ffn_moe_weights_norm), and the run file's members;
//   llama dense routing refused with one message naming the architecture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "phasemap/capture.hpp"
#include "phasemap/npz.hpp"
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

TEST(Routing, LlamaMoeMatchesTheRouterRecomputedFromTheGguf) {
    const fs::path p = archs_model("llama-moe");
    const RoutedRun r = routed(p, "tensor:ffn_norm-0,tensor:ffn_norm-1");
    const cap::RoutingLayout& lay = r.start.routing;
    ASSERT_EQ(lay.blocks, (std::vector<int>{0, 1}));
    const size_t k = size_t(lay.n_expert_used), M = lay.blocks.size(), d = size_t(r.start.n_embd);
    pmtest::GgufWeights w(p);
    ASSERT_EQ(int64_t(lay.n_expert), int64_t(w.get_u32("llama.expert_count")));
    ASSERT_EQ(int64_t(k), int64_t(w.get_u32("llama.expert_used_count")));
    ASSERT_EQ(r.tokens.size(), 6u);
    double worst = 0;
    for (size_t t = 0; t < r.tokens.size(); ++t) {
        const auto& rec = r.tokens[t];
        ASSERT_EQ(rec.experts.size(), M * k);
        ASSERT_EQ(rec.expert_weights.size(), M * k);
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
    EXPECT_LE(worst, 1e-5);
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
                if (j > 0) EXPECT_LE(wv, rec.expert_weights[m * k + j - 1] * (1 + 1e-6f));
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

}  // namespace
