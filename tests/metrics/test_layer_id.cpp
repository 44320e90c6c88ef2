// The layer type shared by every module (include/phasemap/metrics/layer_id.hpp).
#include <gtest/gtest.h>

#include <stdexcept>

#include "phasemap/metrics/layer_id.hpp"

using phasemap::metrics::LayerId;
using phasemap::metrics::LayerKind;

TEST(LayerId, ParsesEveryKindAndPrintsTheCanonicalLabel) {
    EXPECT_EQ(LayerId::parse("hf:3"), (LayerId{LayerKind::hf, 3, {}}));
    EXPECT_EQ(LayerId::parse("7"), (LayerId{LayerKind::hf, 7, {}}));  // an integer N is hf:N
    EXPECT_EQ(LayerId::parse(" block:0 "), (LayerId{LayerKind::block, 0, {}}));
    EXPECT_EQ(LayerId::parse("resid_mid:2").kind, LayerKind::resid_mid);
    EXPECT_EQ(LayerId::parse("attn_out:2").kind, LayerKind::attn_out);
    EXPECT_EQ(LayerId::parse("ffn_out:2").kind, LayerKind::ffn_out);
    const LayerId t = LayerId::parse("tensor:attn_norm.x-4");
    EXPECT_EQ(t.kind, LayerKind::tensor);
    EXPECT_EQ(t.index, 4);
    for (const char* s : {"hf:3", "block:0", "resid_mid:1", "attn_out:5", "ffn_out:9", "tensor:attn_norm-3"})
        EXPECT_EQ(LayerId::parse(s).label(), s);
    EXPECT_EQ(LayerId::parse("12").label(), "hf:12");
    EXPECT_TRUE(LayerId::parse("ffn_out:1").component());
    EXPECT_FALSE(LayerId::parse("block:1").component());
}

TEST(LayerId, RefusesWhatIsNotOneLayer) {
    for (const char* s : {"", "hf", "hf:", "hf:-1", "hf:1-3", "hf:all", "block:x", "mlp:1", "tensor:-3", "tensor:a b-1",
                          "tensor:x-", "-1", "+2", "layer[0]"}) {
        EXPECT_FALSE(LayerId::try_parse(s).has_value()) << s;
        EXPECT_THROW(LayerId::parse(s), std::invalid_argument) << s;
    }
}

TEST(LayerId, DepthOrdersEveryKindOnTheResidualStream) {
    const int L = 4;
    EXPECT_EQ(LayerId::parse("hf:0").depth(L), 0);
    EXPECT_EQ(LayerId::parse("hf:2").depth(L), 2);
    EXPECT_EQ(LayerId::parse("block:1").depth(L), 2);  // the same state as hf:2 (l_out-1)
    // block:L-1 (pre-norm) and hf:L (post final norm) are different states: different depths.
    EXPECT_EQ(LayerId::parse("block:3").depth(L), 4);
    EXPECT_EQ(LayerId::parse("hf:4").depth(L), 4.5);
    EXPECT_LT(LayerId::parse("hf:1").depth(L), LayerId::parse("attn_out:1").depth(L));
    EXPECT_LT(LayerId::parse("attn_out:1").depth(L), LayerId::parse("resid_mid:1").depth(L));
    EXPECT_LT(LayerId::parse("resid_mid:1").depth(L), LayerId::parse("ffn_out:1").depth(L));
    EXPECT_LT(LayerId::parse("ffn_out:1").depth(L), LayerId::parse("block:1").depth(L));
    EXPECT_EQ(LayerId::parse("tensor:attn_norm-1").depth(L), 1.5);
}
