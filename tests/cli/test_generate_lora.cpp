// `phasemap generate --lora FILE[:SCALE]`: the run file's metadata records each adapter (path,
// sha256, scale), the adapters change the output distribution, scale 0 changes nothing, and an adapter that does not
// fit is one error message naming the file, exit code 1, no run file.
#include <gtest/gtest.h>

#include <cstring>

#include "phasemap/modelgen.hpp"
#include "phasemap/run_file.hpp"
#include "support/paths.hpp"

using namespace phasemap;
namespace fs = std::filesystem;

TEST(GenerateLora, MetadataRecordsAdaptersAndScaleZeroIsTheBase) {
    const fs::path stories = pmtest::shared_model("stories260K.gguf");
    if (stories.empty()) GTEST_SKIP() << "../shared/models/stories260K.gguf is not present";
    pmtest::TempDir d;
    modelgen::LoraSpec ls;
    ls.targets = {"output"};
    ls.rank = 4;
    ls.b_std = 0.5f;
    modelgen::write_random_lora(stories, ls, d / "a.gguf");
    ls.targets = {"attn_v"};
    ls.seed = 2;
    modelgen::write_random_lora(stories, ls, d / "b.gguf");

    auto gen = [&](std::vector<std::string> extra, const fs::path& out) {
        std::vector<std::string> args{"generate", "-m", stories.string(), "-p", "Once upon a time", "-n", "8", "-t", "1",
                                      "--save-logits", "-q", "-o", out.string()};
        args.insert(args.end(), extra.begin(), extra.end());
        return pmtest::run_phasemap(args);
    };
    auto r = gen({}, d / "base.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = gen({"--lora", (d / "a.gguf").string() + ":0.5", "--lora", (d / "b.gguf").string()}, d / "ab.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = gen({"--lora", (d / "a.gguf").string() + ":0"}, d / "zero.npz");
    ASSERT_EQ(r.exit_code, 0) << r.err;

    const io::RunData base = io::load_run_npz(d / "base.npz");
    const io::RunData ab = io::load_run_npz(d / "ab.npz");
    const io::RunData zero = io::load_run_npz(d / "zero.npz");
    EXPECT_FALSE(base.metadata.contains("adapters"));
    const auto& ad = ab.metadata.at("adapters");
    ASSERT_EQ(ad.size(), 2u);
    EXPECT_EQ(ad[0]["path"], fs::absolute(d / "a.gguf").string());
    EXPECT_EQ(ad[0]["sha256"], io::file_sha256(d / "a.gguf"));
    EXPECT_EQ(ad[0]["scale"], 0.5);
    EXPECT_EQ(ad[1]["sha256"], io::file_sha256(d / "b.gguf"));
    EXPECT_EQ(ad[1]["scale"], 1.0);
    EXPECT_EQ(zero.metadata.at("adapters")[0]["scale"], 0.0);

    auto entropies = [](const io::RunData& r) {
        std::vector<double> e;
        for (const auto& s : r.stats) e.push_back(s.entropy);
        return e;
    };
    ASSERT_FALSE(base.states.empty());
    ASSERT_EQ(zero.states.size(), base.states.size());
    EXPECT_EQ(std::memcmp(zero.states.data(), base.states.data(), base.states.size() * sizeof(float)), 0);
    EXPECT_EQ(zero.token_ids, base.token_ids);
    EXPECT_EQ(entropies(zero), entropies(base));
    EXPECT_NE(entropies(ab), entropies(base));

    // Refusals: a model file given as adapter, a missing file.
    r = gen({"--lora", stories.string()}, d / "bad.npz");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("LoRA adapter '" + stories.string() + "'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not an adapter"), std::string::npos) << r.err;
    r = gen({"--lora", (d / "none.gguf").string() + ":2"}, d / "bad.npz");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find((d / "none.gguf").string()), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(d / "bad.npz"));
}
