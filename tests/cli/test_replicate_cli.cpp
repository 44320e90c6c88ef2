// `phasemap replicate` (src/cli/cmd_replicate.cpp): two executions of one protocol compare bit for
// bit, and the protocol runs what `generate` runs for the same options (both build it with
// plan::build_run).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "phasemap/io/run_file.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;

TEST(ReplicateCli, ExactReplicationOfWhatGenerateRuns) {
    const fs::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf is not present";
    pmtest::TempDir dir;
    const std::vector<std::string> common = {"-m", model.string(), "-p", "Once upon", "-n", "9", "--temp", "0.8", "--top-k", "30",
                                             "--seed", "5", "--layers", "hf:last", "-t", "1", "-q"};
    auto rep = common;
    rep.insert(rep.begin(), "replicate");
    rep.insert(rep.end(), {"-o", (dir / "r.json").string()});
    const auto r = pmtest::run_phasemap(rep);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream f(dir / "r.json");
    const nlohmann::json j = nlohmann::json::parse(f);
    EXPECT_EQ(j["verdict"], "EXACT_REPLICATION");
    auto gen = common;
    gen.insert(gen.begin(), "generate");
    gen.insert(gen.end(), {"-o", (dir / "g.npz").string()});
    const auto g = pmtest::run_phasemap(gen);
    ASSERT_EQ(g.exit_code, 0) << g.err;
    const auto run = phasemap::io::load_run_npz(dir / "g.npz");
    const auto& fixed = j["phasemap"]["fixed_metadata"];
    EXPECT_EQ(fixed["generated_text"], run.metadata["generated_text"]);
    EXPECT_EQ(fixed["prompt_text"], run.metadata["prompt_text"]);
    EXPECT_EQ(fixed["n_generated"], run.metadata["n_generated"]);
    EXPECT_EQ(fixed["engine"]["n_ctx"], run.metadata["engine"]["n_ctx"]);
    EXPECT_EQ(j["phasemap"]["protocol"]["provenance"]["model"]["sha256"], run.metadata["model"]["sha256"]);
}

TEST(ReplicateCli, BadOptionsAreOneError) {
    const fs::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf is not present";
    pmtest::TempDir dir;
    const auto r = pmtest::run_phasemap({"replicate", "-m", model.string(), "-p", "Once", "--layers", "hf:99", "-o", (dir / "r.json").string()});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err, "phasemap: error: layer spec item 'hf:99': index 99 out of range (valid 0..5)\n");
    EXPECT_FALSE(fs::exists(dir / "r.json"));
}
