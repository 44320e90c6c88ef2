// FILE[:SCALE] (steer/spec.cpp parse_file_scale): the one parser of --control-vector and --lora.
#include <gtest/gtest.h>

#include <string>

#include "phasemap/steer/spec.hpp"

using phasemap::steer::parse_file_scale;

TEST(FileScale, FileAloneOrWithANumberAfterTheLastColon) {
    auto a = parse_file_scale("cv.gguf", "--control-vector");
    EXPECT_EQ(a.path, "cv.gguf");
    EXPECT_EQ(a.scale, 1.0f);
    a = parse_file_scale("dir/cv.gguf:1.5", "--control-vector");
    EXPECT_EQ(a.path, "dir/cv.gguf");
    EXPECT_EQ(a.scale, 1.5f);
    a = parse_file_scale("cv.gguf:-0.25", "--lora");
    EXPECT_EQ(a.scale, -0.25f);
    a = parse_file_scale("cv.gguf:+2", "--lora");
    EXPECT_EQ(a.scale, 2.0f);
    a = parse_file_scale("cv.gguf:0", "--lora");
    EXPECT_EQ(a.scale, 0.0f);
    // A file name with ':' keeps it when the scale is explicit.
    a = parse_file_scale("a:b.gguf:1", "--lora");
    EXPECT_EQ(a.path, "a:b.gguf");
    EXPECT_EQ(a.scale, 1.0f);
}

TEST(FileScale, AnythingElseIsOneErrorNamingTheOptionAndTheSpec) {
    const struct {
        const char* spec;
        const char* why;
    } bad[] = {
        {"cv.gguf:1.5x", "'1.5x' is not a number"}, {"cv.gguf:", "empty"},          {"cv.gguf:abc", "'abc' is not a number"},
        {"cv.gguf:1e999", "out of float range"},    {"cv.gguf:nan", "not a finite"}, {"cv.gguf:inf", "not a finite"},
        {":1.5", "file name is empty"},             {"", "file name is empty"},      {"cv.gguf:2e6", "outside"},
        {"cv.gguf: 1", "not a number"},             {"cv.gguf:1,5", "not a number"}, {"cv.gguf:+-1", "not a number"},
    };
    for (const auto& b : bad) {
        SCOPED_TRACE(b.spec);
        try {
            parse_file_scale(b.spec, "--control-vector");
            ADD_FAILURE() << "accepted";
        } catch (const std::invalid_argument& e) {
            const std::string m = e.what();
            EXPECT_EQ(m.rfind("--control-vector '" + std::string(b.spec) + "': ", 0), 0u) << m;
            EXPECT_NE(m.find(b.why), std::string::npos) << m;
        }
    }
}
