// `phasemap generate` (src/cli/cmd_generate.cpp) end to end through the binary: output files,
// printed table, bad input, FILE[:SCALE], -p @file, and --lora FILE[:SCALE] (the run file's
// metadata records each adapter; scale 0 changes nothing; an adapter that does not fit is one error).
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/io/npz.hpp"
#include "phasemap/io/run_file.hpp"
#include "phasemap/capture/version.hpp"
#include "support/paths.hpp"
#include "support/steer_fixtures.hpp"

namespace fs = std::filesystem;
using pmtest::run_phasemap;

namespace {

std::vector<std::string> listing(const fs::path& d) {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(d)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
}

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

TEST(Cli, GeneratePrintsTextAndPerTokenTable) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    const auto r = run_phasemap({"generate", "-m", m.string(), "-p", "Once upon a time", "-n", "10"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Once upon a time, there was a little girl"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("entropy"), std::string::npos);
    EXPECT_NE(r.out.find("' Lily'"), std::string::npos);
    EXPECT_NE(r.out.find("stop: length after 10 tokens"), std::string::npos);
}

TEST(Cli, GenerateWritesNpzWithMetadata) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    {
        std::ofstream(d / "prompt.txt") << "Once upon a time";
    }
    const auto r = run_phasemap({"generate", "-m", m.string(), "-p", fmt::format("@{}", (d / "prompt.txt").string()), "-n", "9",
                                 "--layers", "hf:1-5", "--save-logits", "-o", (d / "run.npz").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(listing(d.path), (std::vector<std::string>{"prompt.txt", "run.npz"}));  // no temporary left
    phasemap::io::NpzReader z(d / "run.npz");
    EXPECT_EQ(z.array("hidden_states").shape, (std::vector<size_t>{9, 5, 64}));
    EXPECT_EQ(z.array("logits").shape, (std::vector<size_t>{9, 512}));
    EXPECT_EQ(z.array("token_ids").dtype, "<i8");
    const auto meta = nlohmann::json::parse(z.bytes("metadata.json"));
    EXPECT_EQ(meta["model"]["sha256"], "047bf46455a544931cff6fef14d7910154c56afbc23ab1c5e56a72e69912c04b");
    EXPECT_EQ(meta["model"]["architecture"], "llama");
    EXPECT_EQ(meta["llama_cpp_commit"], phasemap::llama_commit());
    EXPECT_EQ(meta["prompt_text"], "Once upon a time");
    EXPECT_EQ(meta["layers"][4]["tensor"], "result_norm");
    EXPECT_EQ(meta["layers"][0]["tensor"], "l_out-0");
    EXPECT_EQ(meta["engine"]["precision"], "exact");
    EXPECT_EQ(meta["engine"]["type_k"], "f32");
    EXPECT_EQ(meta["sampling"]["greedy"], true);
    EXPECT_EQ(meta["chat_template_applied"], false);
    EXPECT_EQ(meta["n_generated"], 9);
}

TEST(Cli, SeveralPromptsGiveNumberedFiles) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    {
        std::ofstream(d / "prompts.txt") << "Once upon a time\nThe little dog\n\nTom went\n";
    }
    const auto r = run_phasemap({"generate", "-m", m.string(), "-f", (d / "prompts.txt").string(), "-n", "5",
                                 "--parallel", "2", "-o", (d / "out_{i}.npz").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(listing(d.path), (std::vector<std::string>{"out_0.npz", "out_1.npz", "out_2.npz", "prompts.txt"}));
}

// Each bad input: exit code 1 (not a crash), exactly one line on stderr naming the problem,
// and nothing written to the output directory.
struct BadCase {
    std::string name;
    std::vector<std::string> args;  // "{M}" = stories model, "{D}" = temp dir
    std::string expect;              // substring of the message
    int exit = 1;                    // expected exit status (usage errors: 2)
};

TEST(Cli, BadInputsGiveOneClearErrorAndNoOutput) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    {
        std::ofstream(d / "text.gguf") << "this is a text file, not a model\n";
        std::ifstream in(m, std::ios::binary);
        std::string all((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(d / "half.gguf", std::ios::binary).write(all.data(), std::streamsize(all.size() / 2));
        std::ofstream(d / "copy.gguf", std::ios::binary).write(all.data(), std::streamsize(all.size()));
    }
    const std::vector<BadCase> cases{
        {"missing model", {"-m", "{D}/nope.gguf", "-p", "x"}, "does not exist"},
        {"text renamed .gguf", {"-m", "{D}/text.gguf", "-p", "x"}, "not a GGUF"},
        {"truncated gguf", {"-m", "{D}/half.gguf", "-p", "x"}, "cannot load model"},
        {"empty prompt", {"-m", "{M}", "-p", ""}, "prompt is empty"},
        {"prompt longer than context", {"-m", "{M}", "--ctx", "8", "-p", "Once upon a time there was a big dog and a cat"}, "context holds 8"},
        {"n zero", {"-m", "{M}", "-p", "x", "-n", "0"}, "--n-predict: 0 is outside [1,", 2},
        {"layer out of range", {"-m", "{M}", "-p", "x", "--layers", "hf:0-9"}, "out of range"},
        {"unwritable output", {"-m", "{M}", "-p", "x", "-o", "/proc/phasemap-test.npz"}, "not writable"},
        {"missing output dir", {"-m", "{M}", "-p", "x", "-o", "{D}/no/such/dir/x.npz"}, "does not exist"},
        {"bad precision", {"-m", "{M}", "-p", "x", "--precision", "half"}, "--precision: 'half' is not one of", 2},
        {"nan temperature", {"-m", "{M}", "-p", "x", "--temp", "nan"}, "--temp: nan is not a finite number", 2},
        {"threads past the bound", {"-m", "{M}", "-p", "x", "-t", "100000"}, "--threads: 100000 is outside [0, 4096]", 2},
        {"output is the model", {"-m", "{D}/copy.gguf", "-p", "x", "-o", "{D}/./copy.gguf"}, "is the same file as the input"},
        {"context past training", {"-m", "{M}", "-p", "x", "--ctx", "100000"}, "exceeds the model's training context"},
        {"prompt from a device", {"-m", "{M}", "-p", "@/dev/zero"}, "not a regular file"},
        {"missing prompt file", {"-m", "{M}", "-p", "@{D}/none.txt"}, "cannot read prompt file"},
        {"no prompt", {"-m", "{M}"}, "no prompt given"},
    };
    for (const auto& c : cases) {
        std::vector<std::string> args{"generate"};
        for (std::string a : c.args) {
            for (auto [k, v] : {std::pair<std::string, std::string>{"{M}", m.string()}, {"{D}", d.path.string()}})
                if (auto p = a.find(k); p != std::string::npos) a.replace(p, k.size(), v);
            args.push_back(a);
        }
        if (std::find(args.begin(), args.end(), "-o") == args.end()) {
            args.push_back("-o");
            args.push_back((d / "out.npz").string());
        }
        const auto before = listing(d.path);
        const auto r = run_phasemap(args);
        EXPECT_EQ(r.exit_code, c.exit) << c.name << ": " << r.err;
        EXPECT_EQ(count_lines(r.err), 1) << c.name << ": " << r.err;
        EXPECT_EQ(r.err.rfind("phasemap: error: ", 0), 0u) << c.name << ": " << r.err;
        EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
        EXPECT_EQ(listing(d.path), before) << c.name;
    }
}

TEST(CliUsability, PromptFileLosesOneTrailingNewline) {
    const auto m = pmtest::shared_model("stories260K.gguf");
    if (m.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    pmtest::TempDir d;
    std::ofstream(d / "p.txt") << "Once upon a time\n";
    std::ofstream(d / "two.txt") << "Once upon a time\n\n";
    for (const auto& [file, want] : {std::pair<std::string, std::string>{"p.txt", "Once upon a time"}, {"two.txt", "Once upon a time\n"}}) {
        const auto out = d / (file + ".npz");
        const auto r = pmtest::run_phasemap({"generate", "-m", m.string(), "-p", fmt::format("@{}", (d / file).string()), "-n", "2", "-q", "-o", out.string()});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const auto run = phasemap::io::load_run_npz(out);
        EXPECT_EQ(run.metadata.value("prompt_text", std::string("?")), want) << file;
    }
}

}  // namespace

// FILE[:SCALE] of --control-vector and --lora: the one strict parser (issue 12); a malformed scale
// was taken as part of the file name ("no such file"), now it is one error about the scale.
TEST(Cli, FileScaleOptionsAreParsedStrictly) {
    const fs::path model = pmtest::shared_model("stories260K.gguf");
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf is not present";
    pmtest::TempDir dir;
    const std::string cv = (dir / "cv.gguf").string();
    steertest::write_test_control_vector(phasemap::capture::Model::load(model)->info(), cv);
    for (const char* opt : {"--control-vector", "--lora"})
        for (const auto& [suffix, msg] : steertest::kBadScales) {
            SCOPED_TRACE(std::string(opt) + " " + suffix);
            const std::string out = (dir / "o.npz").string();
            const auto r = run_phasemap({"generate", "-m", model.string(), "-p", "Once", "-n", "2", opt, cv + suffix, "-o", out});
            EXPECT_EQ(r.exit_code, 1) << r.err;
            EXPECT_EQ(r.err.rfind(std::string("phasemap: error: ") + opt + " '" + cv + suffix + "': " + msg, 0), 0u) << r.err;
            EXPECT_EQ(count_lines(r.err), 1) << r.err;
            EXPECT_FALSE(fs::exists(out));
        }
    const auto r = run_phasemap({"generate", "-m", model.string(), "-p", "Once", "-n", "2", "--control-vector", cv + ":0.5", "-q"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

using namespace phasemap;

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
