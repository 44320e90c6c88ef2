// A panel with a base model and the same model with a LoRA adapter, end to end through the CLI:
// the models table records the adapter (path, sha256, scale), the adapted runs get their own
// run ids, an output-head adapter changes the generated text's logits-based metrics, and a
// scale-0 adapter reproduces the base model's texts exactly. A missing adapter is reported
// before any DB is written.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/store/store.hpp"
#include "support/paths.hpp"

using namespace phasemap;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> rows(const fs::path& db, const std::string& sql) {
    return store::Store::open(db, {.read_only = true})->rows(sql);
}

}  // namespace

TEST(PanelLora, AdapterModelsAreRecordedAndIdentified) {
    const fs::path stories = pmtest::shared_model("stories260K.gguf");
    if (stories.empty()) GTEST_SKIP() << "../shared/models/stories260K.gguf is not present";
    pmtest::TempDir d;
    modelgen::LoraSpec ls;
    ls.targets = {"output", "attn_q"};
    ls.rank = 4;
    ls.b_std = 0.5f;
    const fs::path adapter = d / "head.gguf";
    modelgen::write_random_lora(stories, ls, adapter);
    const std::string sha = io::file_sha256(adapter);

    const std::string text = "name = \"lora\"\n[generation]\nn_predict = 6\nseeds = [1]\n"
                             "[[models]]\nlabel = \"base\"\npath = \"" + stories.string() + "\"\n"
                             "[[models]]\nlabel = \"tuned\"\npath = \"" + stories.string() + "\"\nvariant_of = \"base\"\n"
                             "adapters = [{ path = \"head.gguf\", scale = 1.5 }]\n"
                             "[[models]]\nlabel = \"zero\"\npath = \"" + stories.string() + "\"\nvariant_of = \"base\"\n"
                             "adapters = [{ path = \"head.gguf\", scale = 0.0 }]\n"
                             "[[prompts]]\nbuiltin = \"stories\"\ncategories = [\"animals\"]\nlimit = 2\n";
    const fs::path man = d / "panel.toml";
    std::ofstream(man) << text;
    const fs::path db = d / "r.duckdb";
    auto r = pmtest::run_phasemap({"panel", "run", man.string(), "--db", db.string(), "-t", "1", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;

    const auto ad = rows(db, "SELECT adapters FROM models ORDER BY label");
    ASSERT_EQ(ad.size(), 3u);
    EXPECT_EQ(ad[0], "[]");  // base
    const auto tuned = nlohmann::json::parse(ad[1]);
    ASSERT_EQ(tuned.size(), 1u);
    EXPECT_EQ(tuned[0]["path"], (d / "head.gguf").string());
    EXPECT_EQ(tuned[0]["sha256"], sha);
    EXPECT_EQ(tuned[0]["scale"], 1.5);
    EXPECT_EQ(nlohmann::json::parse(ad[2])[0]["scale"], 0.0);

    // 3 models × 2 prompts, each its own run id.
    EXPECT_EQ(rows(db, "SELECT count(DISTINCT run_id) FROM runs")[0], "6");
    // Scale 0 reproduces the base model exactly; the adapted model generates differently.
    const auto zero_diff = rows(db,
        "SELECT count(*) FROM runs b JOIN runs z ON b.prompt = z.prompt AND b.norm = z.norm "
        "WHERE b.model = 'base' AND z.model = 'zero' AND (b.text <> z.text OR b.median_entropy <> z.median_entropy)");
    EXPECT_EQ(zero_diff[0], "0");
    const auto tuned_same = rows(db,
        "SELECT count(*) FROM runs b JOIN runs t ON b.prompt = t.prompt AND b.norm = t.norm "
        "WHERE b.model = 'base' AND t.model = 'tuned' AND b.median_entropy = t.median_entropy");
    EXPECT_EQ(tuned_same[0], "0");

    // Rerun: nothing to do (the adapter runs are found by their ids).
    r = pmtest::run_phasemap({"panel", "run", man.string(), "--db", db.string(), "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(rows(db, "SELECT count(*) FROM runs")[0], "6");

    // A missing adapter file: reported with its position, nothing written.
    std::string bad = text;
    bad.replace(bad.find("head.gguf"), 9, "gone.gguf");
    const fs::path man2 = d / "bad.toml";
    std::ofstream(man2) << bad;
    r = pmtest::run_phasemap({"panel", "run", man2.string(), "--db", (d / "bad.duckdb").string(), "-q"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("bad.toml:12:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("adapter file '" + (d / "gone.gguf").string() + "' does not exist"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(d / "bad.duckdb"));

    // An adapter that does not fit the model: one clear error naming the file (when that model is loaded).
    const fs::path vocab = pmtest::llama_src_dir() / "models";
    if (fs::is_directory(vocab)) {
        modelgen::ModelSpec q = modelgen::preset("qwen2", "tiny");
        modelgen::write_random_model(q, vocab, d / "q.gguf");
        modelgen::LoraSpec qs;
        qs.targets = {"attn_q"};
        modelgen::write_random_lora(d / "q.gguf", qs, d / "q-lora.gguf");
        std::string wrong = text;
        wrong.replace(wrong.find("head.gguf"), 9, "q-lora.gguf");
        std::ofstream(d / "wrong.toml") << wrong;
        r = pmtest::run_phasemap({"panel", "run", (d / "wrong.toml").string(), "--db", (d / "w.duckdb").string(), "-q", "-t", "1"});
        EXPECT_NE(r.exit_code, 0);
        EXPECT_NE(r.err.find("q-lora.gguf"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("architecture \"qwen2\""), std::string::npos) << r.err;
    }
}
