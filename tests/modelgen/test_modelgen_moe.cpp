// make-model's Mixtral-style MoE (ModelSpec::n_expert / n_expert_used, llama only): the tensor
// table written out by hand from llama.cpp's llama loader (src/models/llama.cpp: with
// n_expert > 0 each block has ffn_gate_inp {d, E} and ffn_{gate,down,up}_exps {d, ff, E} /
// {ff, d, E} instead of ffn_gate/up/down), the expert keys in the file, and the refused specs.
#include <gguf.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "phasemap/modelgen/modelgen.hpp"
#include "support/paths.hpp"

namespace mg = phasemap::modelgen;
namespace fs = std::filesystem;

namespace {

mg::ModelSpec moe(uint32_t E, uint32_t k) {
    mg::ModelSpec s = mg::preset("llama", "tiny");
    s.n_expert = E;
    s.n_expert_used = k;
    return s;
}

}  // namespace

TEST(ModelgenMoe, BlockTensorsAreTheExpertsAndTheRouter) {
    const mg::ModelSpec s = moe(8, 2);  // tiny: d 64, ff 128, 4 blocks
    std::map<std::string, std::vector<int64_t>> got;
    for (const auto& t : mg::tensor_layout(s, 100)) got[t.name] = t.shape;
    const int64_t d = s.n_embd, ff = s.n_ff;
    for (int i = 0; i < 4; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        EXPECT_EQ(got.at(b + "ffn_gate_inp.weight"), (std::vector<int64_t>{d, 8}));
        EXPECT_EQ(got.at(b + "ffn_gate_exps.weight"), (std::vector<int64_t>{d, ff, 8}));
        EXPECT_EQ(got.at(b + "ffn_down_exps.weight"), (std::vector<int64_t>{ff, d, 8}));
        EXPECT_EQ(got.at(b + "ffn_up_exps.weight"), (std::vector<int64_t>{d, ff, 8}));
        EXPECT_EQ(got.count(b + "ffn_gate.weight"), 0u);
        EXPECT_EQ(got.count(b + "ffn_up.weight"), 0u);
        EXPECT_EQ(got.count(b + "ffn_down.weight"), 0u);
        EXPECT_EQ(got.count(b + "ffn_norm.weight"), 1u);
    }
    // Dense stays dense.
    std::map<std::string, std::vector<int64_t>> dense;
    for (const auto& t : mg::tensor_layout(mg::preset("llama", "tiny"), 100)) dense[t.name] = t.shape;
    EXPECT_EQ(dense.count("blk.0.ffn_gate_inp.weight"), 0u);
    EXPECT_EQ(dense.at("blk.0.ffn_gate.weight"), (std::vector<int64_t>{d, ff}));
}

TEST(ModelgenMoe, FileCarriesTheExpertCounts) {
    const fs::path vocab_dir = pmtest::llama_src_dir() / "models";
    if (!fs::is_directory(vocab_dir)) GTEST_SKIP() << "llama.cpp vocab files not found in " << vocab_dir.string();
    pmtest::TempDir tmp;
    const fs::path p = tmp / "moe.gguf";
    mg::write_random_model(moe(8, 2), vocab_dir, p);
    gguf_init_params ip{true, nullptr};
    gguf_context* g = gguf_init_from_file(p.c_str(), ip);
    ASSERT_NE(g, nullptr);
    const int64_t ke = gguf_find_key(g, "llama.expert_count"), ku = gguf_find_key(g, "llama.expert_used_count");
    ASSERT_GE(ke, 0);
    ASSERT_GE(ku, 0);
    EXPECT_EQ(gguf_get_val_u32(g, ke), 8u);
    EXPECT_EQ(gguf_get_val_u32(g, ku), 2u);
    EXPECT_GE(gguf_find_tensor(g, "blk.3.ffn_down_exps.weight"), 0);
    gguf_free(g);
}

TEST(ModelgenMoe, RefusedSpecs) {
    auto refused = [](const mg::ModelSpec& s, const std::string& says) {
        try {
            mg::validate(s);
            ADD_FAILURE() << "accepted: " << says;
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
        }
    };
    refused(moe(8, 0), "n_expert_used 0 must be between 1 and n_expert 8");
    refused(moe(8, 9), "n_expert_used 9 must be between 1 and n_expert 8");
    refused(moe(1, 1), "n_expert 1 is outside 2 … 1024");
    refused(moe(2048, 2), "n_expert 2048 is outside 2 … 1024");
    mg::ModelSpec q = mg::preset("qwen2", "tiny");
    q.n_expert = 8;
    q.n_expert_used = 2;
    refused(q, "llama only");
    EXPECT_NO_THROW(mg::validate(moe(8, 8)));  // k = E is a valid (if degenerate) router
    EXPECT_NO_THROW(mg::validate(moe(2, 1)));
}
