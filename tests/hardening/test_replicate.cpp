// `phasemap replicate`: the comparison module (pure) and the CLI on the shared tiny models,
// which must replicate exactly (greedy and seeded sampling).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "phasemap/io/replicate.hpp"
#include "support/paths.hpp"

namespace io = phasemap::io;
using nlohmann::json;

namespace {

io::Replica replica(std::vector<float> hs, std::vector<int64_t> ids) {
    io::Replica r;
    r.arrays["hidden_states"] = io::ReplicaArray::f32({ids.size(), 1, hs.size() / ids.size()}, hs);
    r.arrays["token_ids"] = io::ReplicaArray::i64({ids.size()}, ids);
    r.fixed_metadata = {{"model_id", "m"}, {"model_sha256", "abc"}};
    r.arrays_sha256 = io::replica_sha256(r);
    return r;
}

TEST(Replicate, IdenticalReplicasAreExact) {
    const auto a = replica({1, 2, 3, 4}, {5, 6});
    const json r = io::replication_report(a, a, {{"prompt", "p"}, {"greedy", true}});
    EXPECT_EQ(r["schema_version"], "limen.replication.v1");
    EXPECT_EQ(r["verdict"], "EXACT_REPLICATION");
    EXPECT_TRUE(r["keys_match"].get<bool>());
    EXPECT_TRUE(r["all_fixed_metadata_equal"].get<bool>());
    EXPECT_EQ(r["arrays"]["hidden_states"]["shape"], json({2, 1, 2}));
    EXPECT_EQ(r["arrays"]["hidden_states"]["dtype"], "float32");
    EXPECT_EQ(r["arrays"]["token_ids"]["max_absolute_difference"], 0.0);
    EXPECT_EQ(r["reference_npz_sha256"], r["replication_npz_sha256"]);
    EXPECT_EQ(r["generation"]["generated_tokens"], 2);
    EXPECT_EQ(r["generation"]["method"], "greedy");
    // The keys of LIMEN's reference file are all present.
    std::ifstream f(pmtest::shared_models_dir().parent_path() / "reference" / "limen-runtime-audit" / "replication.json");
    if (f) {
        const json limen = json::parse(f);
        for (const auto& [k, _] : limen.items()) EXPECT_TRUE(r.contains(k)) << k;
        for (const auto& [k, _] : limen["arrays"]["hidden_states"].items()) EXPECT_TRUE(r["arrays"]["hidden_states"].contains(k)) << k;
    }
}

TEST(Replicate, ValueDifferencesAreDriftTokenDifferencesDivergence) {
    const auto a = replica({1, 2, 3, 4}, {5, 6});
    const auto drift = replica({1, 2, 3, 4.5f}, {5, 6});
    json r = io::replication_report(a, drift, {});
    EXPECT_EQ(r["verdict"], "NUMERICAL_DRIFT");
    EXPECT_FALSE(r["arrays"]["hidden_states"]["array_equal"].get<bool>());
    EXPECT_DOUBLE_EQ(r["arrays"]["hidden_states"]["max_absolute_difference"].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(r["phasemap"]["arrays"]["hidden_states"]["max_relative_difference"].get<double>(), 0.5 / 4.5);
    EXPECT_EQ(r["phasemap"]["arrays"]["hidden_states"]["n_different"], 1);
    EXPECT_NE(r["reference_npz_sha256"], r["replication_npz_sha256"]);

    r = io::replication_report(a, replica({1, 2, 3, 4}, {5, 7}), {});
    EXPECT_EQ(r["verdict"], "DIVERGED");
    r = io::replication_report(a, replica({1, 2, 3, 4, 5, 6}, {5, 6, 7}), {});
    EXPECT_EQ(r["verdict"], "DIVERGED");
    EXPECT_TRUE(r["arrays"]["token_ids"]["max_absolute_difference"].is_null());  // shapes differ: infinite
    auto other_meta = a;
    other_meta.fixed_metadata["model_sha256"] = "def";
    r = io::replication_report(a, other_meta, {});
    EXPECT_EQ(r["verdict"], "DIVERGED");
    EXPECT_EQ(r["phasemap"]["differing_fixed_metadata"], json({"model_sha256"}));
    auto missing = a;
    missing.arrays.erase("hidden_states");
    r = io::replication_report(a, missing, {});
    EXPECT_FALSE(r["keys_match"].get<bool>());
    EXPECT_EQ(r["verdict"], "DIVERGED");
}

TEST(Replicate, NanBitsCompareBitwise) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const auto a = replica({nan, 1, 0.0f, 2}, {1, 2});
    EXPECT_EQ(io::replication_report(a, a, {})["verdict"], "EXACT_REPLICATION");
    const json r = io::replication_report(a, replica({1, 1, -0.0f, 2}, {1, 2}), {});
    EXPECT_EQ(r["verdict"], "NUMERICAL_DRIFT");  // NaN vs 1: infinite; +0 vs -0: bits differ, value equal
    EXPECT_TRUE(r["arrays"]["hidden_states"]["max_absolute_difference"].is_null());
    EXPECT_EQ(r["phasemap"]["arrays"]["hidden_states"]["n_different"], 2);
}

void expect_exact(const std::string& model_file, std::vector<std::string> extra) {
    const auto m = pmtest::shared_model(model_file);
    if (m.empty()) GTEST_SKIP() << model_file << " not present";
    pmtest::TempDir d;
    std::vector<std::string> args{"replicate", "-m", m.string(), "-p", "Once upon a time", "-n", "8",
                                  "-o", (d / "replication.json").string(), "-t", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = pmtest::run_phasemap(args);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("EXACT_REPLICATION"), std::string::npos) << r.out;
    std::ifstream f(d / "replication.json");
    const json j = json::parse(f);
    EXPECT_EQ(j["verdict"], "EXACT_REPLICATION");
    for (const char* k : {"hidden_states", "logits", "token_ids", "entropy", "top1", "margin", "surprisal", "positions", "prompt_ids"}) {
        ASSERT_TRUE(j["arrays"].contains(k)) << k;
        EXPECT_TRUE(j["arrays"][k]["array_equal"].get<bool>()) << k;
    }
    EXPECT_GT(j["arrays"]["token_ids"]["shape"][0].get<int>(), 0);
    EXPECT_EQ(j["arrays"]["hidden_states"]["shape"].size(), 3u);
}

TEST(Replicate, StoriesGreedyReplicatesExactly) { expect_exact("stories260K.gguf", {}); }
TEST(Replicate, StoriesSeededSamplingReplicatesExactly) { expect_exact("stories260K.gguf", {"--temp", "0.8", "--seed", "42"}); }
TEST(Replicate, RecurrentRwkv7ReplicatesExactly) { expect_exact("tiny-rwkv7-834K.gguf", {}); }

}  // namespace
