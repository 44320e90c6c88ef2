// Model files the capture engine must accept or refuse with a clear message; chat templates.
#include <gguf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "phasemap/capture/capture.hpp"
#include "phasemap/modelgen/modelgen.hpp"
#include "phasemap/capture/run_sinks.hpp"
#include "support/paths.hpp"

using namespace phasemap;

namespace {

TEST(ModelFiles, UnknownArchitectureIsRefusedByName) {
    pmtest::TempDir d;
    gguf_context* g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "nosucharch");
    gguf_set_val_u32(g, "general.alignment", 32);
    ASSERT_TRUE(gguf_write_to_file(g, (d / "x.gguf").c_str(), false));
    gguf_free(g);
    try {
        capture::Model::load(d / "x.gguf");
        FAIL() << "loaded a model of an unknown architecture";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("nosucharch"), std::string::npos) << e.what();
    }
}

TEST(ModelFiles, DirectoryAndEmptyFileAreRefused) {
    pmtest::TempDir d;
    EXPECT_THROW(capture::Model::load(d.path), std::runtime_error);
    { std::ofstream(d / "empty.gguf"); }
    try {
        capture::Model::load(d / "empty.gguf");
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("not a GGUF"), std::string::npos) << e.what();
    }
}

TEST(ModelFiles, ChatTemplateIsAppliedWithSpecialTokens) {
    const auto vocab = pmtest::llama_src_dir() / "models";
    if (!std::filesystem::exists(vocab / "ggml-vocab-qwen2.gguf")) GTEST_SKIP() << "llama.cpp vocab files not found";
    pmtest::TempDir d;
    modelgen::write_random_model(modelgen::preset("qwen2", "tiny"), vocab, d / "q.gguf");
    auto m = capture::Model::load(d / "q.gguf");
    ASSERT_TRUE(m->info().has_chat_template);
    capture::EngineOptions o;
    o.layers = "hf:last";
    capture::Engine e(m, o);
    capture::Request r;
    r.prompt = "What is the capital of France?";
    r.chat = true;
    r.n_predict = 3;
    capture::RecordingSink s;
    e.generate(std::vector<capture::Request>{r}, [&](size_t) -> capture::RunSink& { return s; });
    const auto& st = s.record.start;
    EXPECT_NE(st.prompt_text.find("<|im_start|>user\nWhat is the capital of France?<|im_end|>"), std::string::npos)
        << st.prompt_text;
    EXPECT_EQ(st.prompt_text.substr(st.prompt_text.size() - std::string("<|im_start|>assistant\n").size()),
              "<|im_start|>assistant\n");
    // <|im_start|> is one special token, not its characters.
    const auto im_start = m->tokenize("<|im_start|>", false, true);
    ASSERT_EQ(im_start.size(), 1u);
    EXPECT_EQ(std::count(st.prompt_ids.begin(), st.prompt_ids.end(), im_start[0]), 2);
    // Without --chat the same words are plain text.
    r.chat = false;
    e.generate(std::vector<capture::Request>{r}, [&](size_t) -> capture::RunSink& { return s; });
    EXPECT_EQ(std::count(s.record.start.prompt_ids.begin(), s.record.start.prompt_ids.end(), im_start[0]), 0);
}

TEST(ModelFiles, ChatWithoutTemplateIsAClearError) {
    const auto p = pmtest::shared_model("stories260K.gguf");
    if (p.empty()) GTEST_SKIP() << "stories260K.gguf not present";
    auto m = capture::Model::load(p);
    capture::Engine e(m, capture::EngineOptions{});
    capture::Request r;
    r.prompt = "Once";
    r.chat = true;
    capture::RecordingSink s;
    try {
        e.generate(std::vector<capture::Request>{r}, [&](size_t) -> capture::RunSink& { return s; });
        FAIL();
    } catch (const std::runtime_error& ex) {
        EXPECT_NE(std::string(ex.what()).find("no chat template"), std::string::npos) << ex.what();
    }
}

}  // namespace
