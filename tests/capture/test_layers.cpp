// Layer-spec grammar: hf/block indexing (METRICS.md §1) and errors.
#include <gtest/gtest.h>

#include "phasemap/capture/layers.hpp"

using phasemap::resolve_layers;

namespace {

std::vector<std::string> labels(const std::string& spec, int L) {
    std::vector<std::string> out;
    for (const auto& r : resolve_layers(spec, L)) out.push_back(r.label + "=" + r.tensor);
    return out;
}

TEST(LayerSpec, HfAllMapsToEmbeddingBlocksAndFinalNorm) {
    EXPECT_EQ(labels("hf:all", 3), (std::vector<std::string>{"hf:0=embd", "hf:1=l_out-0", "hf:2=l_out-1", "hf:3=result_norm"}));
    EXPECT_EQ(labels("all", 3), labels("hf:all", 3));
}

TEST(LayerSpec, ABareIntegerIsHfNAndEveryLayerCarriesItsLayerId) {
    // The integer rule of metrics/layer_id.hpp: N is hf:N, in --layers as in --metric-layer.
    EXPECT_EQ(labels("2,block:0", 3), (std::vector<std::string>{"hf:2=l_out-1", "block:0=l_out-0"}));
    EXPECT_THROW(resolve_layers("4", 3), std::invalid_argument);
    for (const auto& r : resolve_layers("hf:all,block:all,resid_mid:1,attn_out:1,ffn_out:1,tensor:attn_norm-2", 3))
        EXPECT_EQ(r.id.label(), r.label);
    EXPECT_EQ(resolve_layers("ffn_out:1", 3)[0].id.kind, phasemap::metrics::LayerKind::ffn_out);
}

TEST(LayerSpec, BlockIndexingIsRawBlockOutput) {
    EXPECT_EQ(labels("block:all", 3), (std::vector<std::string>{"block:0=l_out-0", "block:1=l_out-1", "block:2=l_out-2"}));
    const auto r = resolve_layers("block:2,block:0", 3);
    EXPECT_EQ(r[0].hf_index, -1);  // block:L-1 is not an hf state (hf:L is post-norm)
    EXPECT_EQ(r[1].hf_index, 1);
}

TEST(LayerSpec, RangesNegativeLastAndDuplicates) {
    EXPECT_EQ(labels("hf:1-2,hf:2,hf:-1", 4), (std::vector<std::string>{"hf:1=l_out-0", "hf:2=l_out-1", "hf:4=result_norm"}));
    EXPECT_EQ(labels("block:last", 5), (std::vector<std::string>{"block:4=l_out-4"}));
    EXPECT_EQ(labels(" hf:0 , block:1 ", 2), (std::vector<std::string>{"hf:0=embd", "block:1=l_out-1"}));
    EXPECT_TRUE(resolve_layers("none", 3).empty());
}

TEST(LayerSpec, ErrorsNameTheItem) {
    for (const std::string bad : {"hf:9", "block:3", "hf:x", "foo:1", "hf:3-1", "hf:1,,hf:2", "hf:-9", "5"}) {
        try {
            resolve_layers(bad, 3);
            FAIL() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_FALSE(std::string(e.what()).empty());
        }
    }
    try {
        resolve_layers("hf:7", 3);
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    }
}

TEST(LayerSpec, BlockComponentsResolveToLlamaCppNames) {
    EXPECT_EQ(labels("resid_mid:all", 2), (std::vector<std::string>{"resid_mid:0=ffn_inp-0", "resid_mid:1=ffn_inp-1"}));
    EXPECT_EQ(labels("attn_out:last,ffn_out:0-1", 3),
              (std::vector<std::string>{"attn_out:2=attn_out-2", "ffn_out:0=ffn_out-0", "ffn_out:1=ffn_out-1"}));
    EXPECT_EQ(labels("attn_out:-1", 4), (std::vector<std::string>{"attn_out:3=attn_out-3"}));
    const auto f = resolve_layers("ffn_out:1", 2);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].alternatives, (std::vector<std::string>{"ffn_moe_out-1"}));
    EXPECT_EQ(f[0].block, 1);
    EXPECT_EQ(f[0].hf_index, -1);
    EXPECT_TRUE(f[0].component());
    EXPECT_FALSE(resolve_layers("hf:1", 2)[0].component());
    // tensor:NAME-N, where NAME may itself hold '-'-free names with '_' and '.'; the last '-' splits.
    EXPECT_EQ(labels("tensor:ffn_moe_out-1,tensor:attn_norm-0,tensor:attn_norm-0", 2),
              (std::vector<std::string>{"tensor:ffn_moe_out-1=ffn_moe_out-1", "tensor:attn_norm-0=attn_norm-0"}));
    EXPECT_EQ(resolve_layers("tensor:x.y-0", 1)[0].block, 0);
}

TEST(LayerSpec, BlockComponentErrorsNameTheItem) {
    for (const auto& [bad, want] : std::vector<std::pair<std::string, std::string>>{
             {"resid_mid:2", "out of range"},
             {"attn_out:x", "not an integer"},
             {"mlp:0", "unknown kind 'mlp' (use hf, block, resid_mid, attn_out, ffn_out or tensor)"},
             {"tensor:-1", "expected tensor:NAME-N"},
             {"tensor:attn_norm-", "expected tensor:NAME-N"},
             {"tensor:a/b-0", "may hold only letters"},
             {"tensor:attn_norm-2", "out of range"}}) {
        try {
            resolve_layers(bad, 2);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << bad << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << bad << ": " << e.what();
        }
    }
}

}  // namespace
