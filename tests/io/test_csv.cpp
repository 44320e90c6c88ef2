// The one CSV reader (include/phasemap/io/csv.hpp).
#include <gtest/gtest.h>

#include <stdexcept>

#include "phasemap/io/csv.hpp"

using phasemap::io::CsvRow;
using phasemap::io::parse_csv;

namespace {

std::vector<std::vector<std::string>> fields(const std::vector<CsvRow>& rows) {
    std::vector<std::vector<std::string>> out;
    for (const auto& r : rows) out.push_back(r.fields);
    return out;
}

std::string error_of(std::string_view text, const phasemap::io::CsvOptions& o = {}) {
    try {
        parse_csv(text, "f.csv", o);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Csv, Rfc4180QuotingCrlfAndBlankRows) {
    const auto rows = parse_csv("a,b,c\r\n1,\"x, \"\"y\"\"\",\n\n  \n\"two\nlines\",q\"r,3\n", "f.csv");
    EXPECT_EQ(fields(rows), (std::vector<std::vector<std::string>>{
                                {"a", "b", "c"}, {"1", "x, \"y\"", ""}, {"two\nlines", "q\"r", "3"}}));
    EXPECT_EQ(rows[0].line, 1u);
    EXPECT_EQ(rows[1].line, 2u);
    EXPECT_EQ(rows[2].line, 5u);  // after two blank lines
    EXPECT_EQ(fields(parse_csv("x,y", "f.csv")), (std::vector<std::vector<std::string>>{{"x", "y"}}));  // no final newline
}

TEST(Csv, LastFieldTakesTheRestOfTheLineAndCommentsAreSkipped) {
    const phasemap::io::CsvOptions o{.max_fields = 2, .comments = true, .quoted_first = false};
    const auto rows = parse_csv("# note\n\"a,b, c\n\"k\",\"q, \"\"z\"\"\"\r\nnone\n", "f.csv", o);
    EXPECT_EQ(fields(rows), (std::vector<std::vector<std::string>>{{"\"a", "b, c"}, {"\"k\"", "q, \"z\""}, {"none"}}));
    EXPECT_EQ(rows[0].line, 2u);
}

TEST(Csv, ErrorsNameTheSourceAndTheLine) {
    EXPECT_EQ(error_of("a,b\n1,\"open\n2,3\n"), "f.csv:2: unterminated quoted field");
    EXPECT_EQ(error_of("a,b\n\"x\"y,1\n"), "f.csv:2: unexpected text after the closing quote of a field");
    EXPECT_EQ(error_of("k,\"q\" tail\n", {.max_fields = 2}), "f.csv:1: unexpected text after the closing quote of a field");
    EXPECT_EQ(error_of(""), "");
}
