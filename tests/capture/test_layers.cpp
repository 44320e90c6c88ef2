// Layer-spec grammar: hf/block indexing (METRICS.md §1) and errors.
#include <gtest/gtest.h>

#include "phasemap/layers.hpp"

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

}  // namespace
