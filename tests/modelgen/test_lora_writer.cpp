// The random-weight LoRA adapter writer (modelgen::write_random_lora, make-model --lora-for):
// the metadata and the tensor names and shapes that llama.cpp's adapter loader checks
// (src/llama-adapter.cpp: general.type "adapter", adapter.type "lora", adapter.lora.alpha,
// "<W>.lora_a" {n_in, r} and "<W>.lora_b" {r, n_out} for a weight W of shape {n_in, n_out}),
// written out here from the base file rather than from the writer, plus determinism, the
// initialisation scales and the refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "phasemap/modelgen/modelgen.hpp"
#include "support/gguf_weights.hpp"
#include "support/paths.hpp"

namespace mg = phasemap::modelgen;
namespace fs = std::filesystem;
using pmtest::GgufWeights;
using pmtest::TempDir;

namespace {

fs::path tiny_llama(const TempDir& tmp) {
    const fs::path vd = pmtest::llama_src_dir() / "models";
    if (!fs::is_directory(vd)) return {};
    mg::ModelSpec spec = mg::preset("llama", "tiny");
    spec.tied_embeddings = false;  // an output.weight to adapt
    const fs::path out = tmp / "llama.gguf";
    mg::write_random_model(spec, vd, out);
    return out;
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

double sd(const std::vector<double>& x) {
    double m = 0, s = 0;
    for (double v : x) m += v;
    m /= double(x.size());
    for (double v : x) s += (v - m) * (v - m);
    return std::sqrt(s / double(x.size()));
}

TEST(LoraWriter, LayoutIsWhatLlamaCppChecks) {
    TempDir tmp;
    const fs::path base = tiny_llama(tmp);
    if (base.empty()) GTEST_SKIP() << "llama.cpp vocab files not found";
    mg::LoraSpec spec;
    spec.targets = {"attn_q", "output", "blk.1.ffn_down"};
    spec.rank = 3;
    spec.alpha = 6.0f;
    spec.seed = 5;
    const mg::LoraWriteResult r = mg::write_random_lora(base, spec, tmp / "a.gguf");

    GgufWeights b(base), a(tmp / "a.gguf");
    EXPECT_EQ(a.get_string("general.type"), "adapter");
    EXPECT_EQ(a.get_string("adapter.type"), "lora");
    EXPECT_EQ(a.get_string("general.architecture"), "llama");
    EXPECT_EQ(a.get_float("adapter.lora.alpha"), 6.0);

    // Expected adapted weights: attn_q of every block, output, blk.1.ffn_down.
    std::vector<std::string> want;
    const int64_t L = b.get_int("llama.block_count");
    for (int64_t i = 0; i < L; ++i) want.push_back("blk." + std::to_string(i) + ".attn_q.weight");
    want.push_back("blk.1.ffn_down.weight");
    want.push_back("output.weight");
    std::vector<std::string> got = r.weights;
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want);
    EXPECT_EQ(a.tensors().size(), 2 * want.size());
    uint64_t n = 0;
    for (const std::string& w : want) {
        const auto& bw = b.tensor_info(w);
        const auto& la = a.tensor_info(w + ".lora_a");
        const auto& lb = a.tensor_info(w + ".lora_b");
        EXPECT_EQ(la.n_dims, 2);
        EXPECT_EQ(lb.n_dims, 2);
        EXPECT_EQ(la.ne[0], bw.ne[0]) << w;  // n_in
        EXPECT_EQ(la.ne[1], 3) << w;         // rank
        EXPECT_EQ(lb.ne[0], 3) << w;
        EXPECT_EQ(lb.ne[1], bw.ne[1]) << w;  // n_out
        EXPECT_EQ(la.type_name, "f32");
        n += uint64_t(la.n_elements() + lb.n_elements());
        // A ~ N(0, 1/n_in), B ~ N(0, b_std^2)
        EXPECT_NEAR(sd(a.tensor_data(w + ".lora_a")) * std::sqrt(double(bw.ne[0])), 1.0, 0.25) << w;
        EXPECT_NEAR(sd(a.tensor_data(w + ".lora_b")), spec.b_std, 0.25 * spec.b_std) << w;
    }
    EXPECT_EQ(r.n_params, n);
}

TEST(LoraWriter, DeterministicAndSeeded) {
    TempDir tmp;
    const fs::path base = tiny_llama(tmp);
    if (base.empty()) GTEST_SKIP() << "llama.cpp vocab files not found";
    mg::LoraSpec spec;
    spec.targets = {"output"};
    mg::write_random_lora(base, spec, tmp / "a.gguf");
    mg::write_random_lora(base, spec, tmp / "b.gguf");
    spec.seed = 1;
    mg::write_random_lora(base, spec, tmp / "c.gguf");
    EXPECT_EQ(slurp(tmp / "a.gguf"), slurp(tmp / "b.gguf"));
    EXPECT_NE(slurp(tmp / "a.gguf"), slurp(tmp / "c.gguf"));
    // alpha 0 is written as the rank.
    EXPECT_EQ(GgufWeights(tmp / "a.gguf").get_float("adapter.lora.alpha"), double(spec.rank));
    spec.type = mg::WeightType::f16;
    mg::write_random_lora(base, spec, tmp / "h.gguf");
    EXPECT_EQ(GgufWeights(tmp / "h.gguf").tensor_info("output.weight.lora_b").type_name, "f16");
}

TEST(LoraWriter, RefusesBadSpecsAndWritesNothing) {
    TempDir tmp;
    const fs::path base = tiny_llama(tmp);
    if (base.empty()) GTEST_SKIP() << "llama.cpp vocab files not found";
    const fs::path out = tmp / "x.gguf";
    auto err = [&](mg::LoraSpec s, const fs::path& from) -> std::string {
        try {
            mg::write_random_lora(from, s, out);
        } catch (const std::exception& e) {
            return e.what();
        }
        return "(no error)";
    };
    mg::LoraSpec s;
    s.targets = {"attn_qq"};
    std::string e = err(s, base);
    EXPECT_NE(e.find("'attn_qq' matches no 2-D weight"), std::string::npos) << e;
    EXPECT_NE(e.find("attn_q"), std::string::npos) << e;  // the list of what the base has
    s.targets = {"attn_norm"};  // 1-D
    EXPECT_NE(err(s, base).find("matches no 2-D weight"), std::string::npos);
    s.targets = {"token_embd"};
    EXPECT_NE(err(s, base).find("token_embd"), std::string::npos);
    s.targets = {"output"};
    s.rank = 0;
    EXPECT_NE(err(s, base).find("rank"), std::string::npos);
    s.rank = 4;
    EXPECT_NE(err(s, tmp / "absent.gguf").find("does not exist"), std::string::npos);
    // An adapter is no base model.
    mg::write_random_lora(base, s, tmp / "adapter.gguf");
    EXPECT_NE(err(s, tmp / "adapter.gguf").find("is an adapter"), std::string::npos);
    EXPECT_FALSE(fs::exists(out));
}

TEST(LoraWriter, CliWritesAnAdapter) {
    TempDir tmp;
    const fs::path base = tiny_llama(tmp);
    if (base.empty()) GTEST_SKIP() << "llama.cpp vocab files not found";
    const fs::path out = tmp / "cli.gguf";
    auto r = pmtest::run_phasemap({"make-model", "--lora-for", base.string(), "--rank", "2", "--alpha", "4", "--targets",
                                   "output, attn_v", "--seed", "9", "-o", out.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("rank 2"), std::string::npos) << r.out;
    GgufWeights a(out);
    EXPECT_TRUE(a.has_tensor("output.weight.lora_a"));
    EXPECT_TRUE(a.has_tensor("blk.0.attn_v.weight.lora_b"));
    EXPECT_EQ(a.tensor_info("output.weight.lora_a").ne[1], 2);
    EXPECT_EQ(a.get_float("adapter.lora.alpha"), 4.0);

    r = pmtest::run_phasemap({"make-model", "--lora-for", base.string(), "--targets", "nope", "-o", (tmp / "n.gguf").string()});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("'nope' matches no 2-D weight"), std::string::npos) << r.err;
    r = pmtest::run_phasemap({"make-model", "--lora-for", base.string(), "--arch", "llama", "-o", (tmp / "n.gguf").string()});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--arch"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "n.gguf"));
}

}  // namespace
