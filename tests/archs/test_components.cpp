// Capture points inside the block (layers.hpp: resid_mid / attn_out / ffn_out / tensor:NAME-N)
// on three architectures of the sweep's models (scripts/archs.sh writes them; ctest's
// archs.models fixture runs first):
//   llama (dense, sequential)  hf:N + attn_out:N = resid_mid:N and resid_mid:N + ffn_out:N = block:N
//                              at every block and token (≤ 1e-5 relative), tensor:attn_norm-N is
//                              the RMSNorm of hf:N with the stored weight;
//   phi2 (parallel block)      resid_mid and attn_out are refused naming the architecture;
//                              tensor:attn_norm-N is the LayerNorm of hf:N and ffn_out:N is the
//                              MLP (up, GELU, down, with biases, from the GGUF) of it;
//   qwen3moe (MoE)             resid_mid:N + ffn_out:N = block:N with ffn_out the MoE output.
// Plus the bad inputs: an unknown kind, a tensor the graph lacks, a malformed tensor item.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "phasemap/capture/capture.hpp"
#include "phasemap/capture/layers.hpp"
#include "archs/archs_model.hpp"
#include "support/gguf_weights.hpp"
#include "support/paths.hpp"
#include "support/ref_llama.hpp"

namespace {

namespace fs = std::filesystem;
namespace cap = phasemap::capture;

using pmtest::archs_model;

struct Capture {
    std::vector<phasemap::ResolvedLayer> layers;
    std::vector<std::vector<float>> states;  // per token [L', d]
    size_t d = 0;
    std::map<std::string, size_t> slot;
    std::vector<double> at(size_t t, const std::string& label) const {
        const size_t i = slot.at(label);
        return std::vector<double>(states[t].begin() + long(i * d), states[t].begin() + long((i + 1) * d));
    }
};

class Sink : public cap::RunSink {
public:
    Capture* c;
    explicit Sink(Capture* c) : c(c) {}
    void begin(const cap::RunStart& s) override { c->layers = s.layers; }
    void token(const cap::TokenRecord&, std::span<const float> st, std::span<const float>) override { c->states.emplace_back(st.begin(), st.end()); }
    void end(const cap::RunEnd&) override {}
};

Capture capture(const fs::path& path, const std::string& layers, int n = 5) {
    cap::ModelOptions mo;
    mo.n_threads = 1;
    auto model = cap::Model::load(path, mo);
    cap::EngineOptions eo;
    eo.layers = layers;
    eo.n_threads = 1;
    eo.n_ctx = 64;
    cap::Engine e(model, eo);
    Capture c;
    c.d = size_t(model->info().n_embd);
    Sink sink(&c);
    std::vector<cap::Request> reqs(1);
    reqs[0].prompt = "alpha beta gamma";
    reqs[0].n_predict = n;
    e.generate(reqs, [&](size_t) -> cap::RunSink& { return sink; });
    for (size_t i = 0; i < c.layers.size(); ++i) c.slot[c.layers[i].label] = i;
    return c;
}

double rel(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}
std::vector<double> add(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> x(a.size());
    for (size_t i = 0; i < a.size(); ++i) x[i] = a[i] + b[i];
    return x;
}

// The error message of constructing an engine with `layers` on `path` ("" when it succeeds).
std::string engine_error(const fs::path& path, const std::string& layers) {
    cap::ModelOptions mo;
    mo.n_threads = 1;
    auto model = cap::Model::load(path, mo);
    cap::EngineOptions eo;
    eo.layers = layers;
    eo.n_threads = 1;
    eo.n_ctx = 64;
    try {
        cap::Engine e(model, eo);
    } catch (const std::exception& ex) {
        return ex.what();
    }
    return "";
}

constexpr double kSumTol = 1e-5;
constexpr double kNeeded = 10;

// Sequential blocks: both residual identities at every block and token, and each component is
// needed for them: leaving it out (resid_mid for block, hf for resid_mid) misses by at least kNeeded
// times the identity's own error. Random MoE outputs can be tiny: on the sweep's qwen3moe and llama
// MoE (scripts/archs.sh's fixed seed) the MoE output is ~2e-6 of the block, only ~80× float
// rounding of the sum (~3e-8), so the margin is 10×; a missing or zero component gives ~1×.
void expect_sequential(const Capture& c, int L, bool with_attn) {
    ASSERT_FALSE(c.states.empty());
    for (size_t t = 0; t < c.states.size(); ++t)
        for (int i = 0; i < L; ++i) {
            const std::string n = std::to_string(i);
            const auto hf = c.at(t, "hf:" + n), mid = c.at(t, "resid_mid:" + n), ffn = c.at(t, "ffn_out:" + n),
                       blk = c.at(t, "block:" + n);
            const double e_mlp = rel(add(mid, ffn), blk);
            EXPECT_LE(e_mlp, kSumTol) << "resid_mid + ffn_out vs block:" << n << " @ " << t;
            EXPECT_GT(rel(mid, blk), kNeeded * e_mlp) << "ffn_out:" << n << " is not needed for block:" << n;
            if (with_attn) {
                const auto attn = c.at(t, "attn_out:" + n);
                const double e_attn = rel(add(hf, attn), mid);
                EXPECT_LE(e_attn, kSumTol) << "hf + attn_out vs resid_mid:" << n << " @ " << t;
                EXPECT_GT(rel(hf, mid), kNeeded * e_attn) << "attn_out:" << n << " is not needed for resid_mid:" << n;
            }
        }
}

TEST(BlockComponents, LlamaDenseSequentialIdentities) {
    const fs::path p = archs_model("llama-dense");
    const Capture c = capture(p, "hf:all,block:all,resid_mid:all,attn_out:all,ffn_out:all,tensor:attn_norm-1");
    const int L = int(c.slot.count("hf:2") ? 2 : 0);
    ASSERT_EQ(L, 2);
    EXPECT_EQ(c.layers[c.slot.at("resid_mid:0")].tensor, "ffn_inp-0");
    EXPECT_EQ(c.layers[c.slot.at("attn_out:1")].tensor, "attn_out-1");
    EXPECT_EQ(c.layers[c.slot.at("ffn_out:1")].tensor, "ffn_out-1");
    EXPECT_EQ(c.layers[c.slot.at("tensor:attn_norm-1")].tensor, "attn_norm-1");
    expect_sequential(c, L, true);
    // tensor:attn_norm-1 is the graph's attn_norm-1: RMSNorm of block 1's input with the stored weight.
    pmtest::GgufWeights w(p);
    const auto nw = w.tensor_data("blk.1.attn_norm.weight");
    const double eps = w.get_float("llama.attention.layer_norm_rms_epsilon");
    for (size_t t = 0; t < c.states.size(); ++t)
        EXPECT_LE(rel(pmtest::rms_norm(c.at(t, "hf:1"), nw, eps), c.at(t, "tensor:attn_norm-1")), 1e-5) << t;
}

TEST(BlockComponents, Qwen3MoeFfnOutIsTheMoeOutput) {
    const fs::path p = archs_model("qwen3moe-moe");
    const Capture c = capture(p, "hf:all,block:all,resid_mid:all,ffn_out:all");
    expect_sequential(c, 2, false);
    // attn_out is not named by this graph: refused with the architecture and the component.
    const std::string e = engine_error(p, "attn_out:0");
    EXPECT_NE(e.find("'qwen3moe'"), std::string::npos) << e;
    EXPECT_NE(e.find("attn_out:0"), std::string::npos) << e;
}

TEST(BlockComponents, LlamaMoeFfnOutFallsBackToTheMoeTensor) {
    // llama's MoE branch names its output ffn_moe_out-N (ffn_out-N becomes l_out-N).
    const Capture c = capture(archs_model("llama-moe"), "hf:all,block:all,resid_mid:all,attn_out:all,ffn_out:all");
    EXPECT_EQ(c.layers[c.slot.at("ffn_out:0")].tensor, "ffn_moe_out-0");
    expect_sequential(c, 2, true);
}

double gelu_tanh(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

TEST(BlockComponents, Phi2ParallelBlock) {
    const fs::path p = archs_model("phi2-dense");
    // A parallel block has no residual stream between attention and MLP, and phi2's graph does
    // not name the projected attention output.
    for (const std::string item : {"resid_mid:0", "attn_out:1"}) {
        const std::string e = engine_error(p, item);
        EXPECT_NE(e.find("architecture 'phi2' does not compute " + item), std::string::npos) << e;
    }
    EXPECT_NE(engine_error(p, "resid_mid:0").find("parallel"), std::string::npos);
    // ffn_out:N is the MLP of the block's LayerNorm output: down·GELU(up·x + b_up) + b_down.
    const Capture c = capture(p, "hf:all,ffn_out:all,tensor:attn_norm-0,tensor:attn_norm-1");
    pmtest::GgufWeights w(p);
    const double eps = w.get_float("phi2.attention.layer_norm_epsilon") > 0 ? w.get_float("phi2.attention.layer_norm_epsilon")
                                                                           : w.get_float("phi2.attention.layer_norm_rms_epsilon");
    for (int i = 0; i < 2; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        const auto nw = w.tensor_data(b + "attn_norm.weight"), nb = w.tensor_data(b + "attn_norm.bias");
        const pmtest::GgufTensor up = w.tensor(b + "ffn_up.weight"), down = w.tensor(b + "ffn_down.weight");
        const auto bu = w.tensor_data(b + "ffn_up.bias"), bd = w.tensor_data(b + "ffn_down.bias");
        for (size_t t = 0; t < c.states.size(); ++t) {
            const auto x = c.at(t, "tensor:attn_norm-" + std::to_string(i));
            EXPECT_LE(rel(pmtest::layer_norm(c.at(t, "hf:" + std::to_string(i)), nw, nb, eps), x), 1e-5) << "attn_norm-" << i;
            std::vector<double> h(size_t(up.ne[1]));
            for (int64_t r = 0; r < up.ne[1]; ++r) {
                double acc = bu[size_t(r)];
                for (int64_t j = 0; j < up.ne[0]; ++j) acc += up.at(j, r) * x[size_t(j)];
                h[size_t(r)] = gelu_tanh(acc);
            }
            std::vector<double> y(size_t(down.ne[1]));
            for (int64_t r = 0; r < down.ne[1]; ++r) {
                double acc = bd[size_t(r)];
                for (int64_t j = 0; j < down.ne[0]; ++j) acc += down.at(j, r) * h[size_t(j)];
                y[size_t(r)] = acc;
            }
            // ggml's CPU GELU rounds its input to f16 (docs/architectures.md): ~1e-4, not 1e-7.
            EXPECT_LE(rel(y, c.at(t, "ffn_out:" + std::to_string(i))), 2e-3) << "ffn_out:" << i << " @ " << t;
        }
    }
}

TEST(BlockComponents, BadItemsGiveOneClearError) {
    const fs::path p = archs_model("llama-dense");
    const std::string missing = engine_error(p, "tensor:no_such_tensor-0");
    EXPECT_NE(missing.find("architecture 'llama' does not compute tensor:no_such_tensor-0"), std::string::npos) << missing;
    for (const auto& [item, want] : std::vector<std::pair<std::string, std::string>>{
             {"mlp_out:0", "unknown kind 'mlp_out'"},
             {"tensor:attn_norm", "expected tensor:NAME-N"},
             {"tensor:attn norm-1", "may hold only letters"},
             {"resid_mid:2", "out of range"},
             {"tensor:attn_norm-9", "out of range"}}) {
        try {
            phasemap::resolve_layers(item, 2);
            ADD_FAILURE() << "accepted " << item;
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << item << ": " << e.what();
        }
    }
}

TEST(BlockComponents, CliRefusesAComponentTheArchitectureLacks) {
    pmtest::TempDir tmp;
    const auto r = pmtest::run_phasemap({"generate", "-m", archs_model("phi2-dense").string(), "-p", "alpha", "-n", "2", "-t", "1",
                                         "--layers", "hf:all,resid_mid:0", "-o", (tmp / "run.npz").string()});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("architecture 'phi2' does not compute resid_mid:0"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "run.npz"));
    // The components it has are stored under their labels and analysable like any layer.
    const auto ok = pmtest::run_phasemap({"generate", "-m", archs_model("llama-dense").string(), "-p", "alpha beta", "-n", "6", "-t",
                                          "1", "--layers", "hf:all,attn_out:all", "--analyze", "--metric-layer", "attn_out:1",
                                          "-o", (tmp / "ok.npz").string()});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_TRUE(fs::exists(tmp / "ok.npz"));
    EXPECT_NE(ok.out.find("attn_out:1"), std::string::npos) << ok.out;
}

TEST(BlockComponents, RefusedComponentNamesArchitectureAndRawForm) {
    // gemma3 has post-norms around attention and MLP: its ffn_out-N is not the residual addend.
    const std::string e = engine_error(archs_model("gemma3-dense"), "ffn_out:0");
    EXPECT_NE(e.find("ffn_out:0 is refused for architecture 'gemma3'"), std::string::npos) << e;
    EXPECT_NE(e.find("tensor:"), std::string::npos) << e;
}

}  // namespace
